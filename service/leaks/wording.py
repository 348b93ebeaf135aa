"""How a refusal of an ingest names the options that would change the answer.

The rules (jobs/ingest/checks.py and the runs that call them) are one; the faces that show
their refusals are two: the CLI, whose operator types ``--format csv``, and the staff
site's upload form, whose user ticks a box. A refusal that names an option is raised with
a function of ``OptionWords`` (``Worded.saying``): its message (``str``) is the CLI's
wording, and ``words_of`` renders it in another face's words, with no second copy of the
rule. Other refusals that name a CLI option (a test send's ``--to``) bring words of their
own kind: ``saying(say, CLI words of that kind)``. No Flask.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Self, TypeVar


@dataclass(frozen=True, slots=True)
class OptionWords:
    """The phrases a refusal uses for the ingest's options, in one face's terms."""

    format_given: str  # why the format is what it is when the operator chose it
    format_choice: str  # one format, ``{}`` the format's name
    accept_invalid: str  # what to do to ingest a file of mostly non-addresses anyway
    also_as_new_leak: str  # what to do to record a file another leak has, as this one too
    another_slug: str  # what to do when the leak was retracted
    resume_single: str  # how to resume a file a single-process run started
    resume_parts: str  # how to resume a file the workers ingest in parts

    def choice(self, fmt: str) -> str:
        return self.format_choice.format(fmt)


CLI_WORDS = OptionWords(
    format_given="given with --format",
    format_choice="--format {}",
    accept_invalid="add --accept-invalid to ingest it anyway",
    also_as_new_leak="add --also-as-new-leak",
    another_slug="ingest under another --leak slug",
    resume_single="run `leakguard ingest` again without --enqueue to resume it",
    resume_parts="run the same `leakguard ingest ... --enqueue` again to resume it",
)

Say = Callable[[OptionWords], str]
W = TypeVar("W")


class Worded(Exception):
    """A refusal whose message names options: ``say`` renders it in any face's words (of
    the kind the refusal was raised with: ``OptionWords`` unless it said otherwise)."""

    say: Callable[[Any], str] | None = None
    words_kind: type = OptionWords

    @classmethod
    def saying(cls, say: Callable[[W], str], cli_words: W | None = None) -> Self:
        """The refusal with the CLI's words as its message (``cli_words``, default
        ``CLI_WORDS``), and ``say`` kept for the other faces."""
        words: Any = CLI_WORDS if cli_words is None else cli_words
        refusal = cls(say(words))
        refusal.say = say
        refusal.words_kind = type(words)
        return refusal


def words_of(exc: BaseException, words: object) -> str:
    """``exc``'s message in ``words`` (its own message if it names no option, or options
    of another kind than ``words`` names)."""
    if isinstance(exc, Worded) and exc.say is not None and isinstance(words, exc.words_kind):
        return exc.say(words)
    detail = getattr(exc, "detail", None)
    return detail if isinstance(detail, str) and detail else str(exc)
