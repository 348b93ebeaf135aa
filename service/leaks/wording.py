"""How a refusal of an ingest names the options that would change the answer.

The rules (jobs/ingest/checks.py and the runs that call them) are one; the faces that show
their refusals are two: the CLI, whose operator types ``--format csv``, and the staff
site's upload form, whose user ticks a box. A refusal that names an option is raised with
a function of ``OptionWords`` (``Worded.saying``): its message (``str``) is the CLI's
wording, and ``words_of`` renders it in another face's words, with no second copy of the
rule. No Flask.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Self


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


class Worded(Exception):
    """A refusal whose message names options: ``say`` renders it in any face's words."""

    say: Say | None = None

    @classmethod
    def saying(cls, say: Say) -> Self:
        """The refusal with the CLI's words as its message, and ``say`` kept for others."""
        refusal = cls(say(CLI_WORDS))
        refusal.say = say
        return refusal


def words_of(exc: BaseException, words: OptionWords) -> str:
    """``exc``'s message in ``words`` (its own message if it names no option)."""
    if isinstance(exc, Worded) and exc.say is not None:
        return exc.say(words)
    detail = getattr(exc, "detail", None)
    return detail if isinstance(detail, str) and detail else str(exc)
