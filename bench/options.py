"""The benches' command lines: argument types that refuse a bad value in one line.

argparse turns an ``ArgumentTypeError`` into ``PROG: error: argument --lines: MESSAGE``
and exit 2, before anything is generated, created or started: a zero, a negative count
or an empty list would otherwise run a bench into a traceback (a division by zero, an
empty ``max``) or into nothing at all, minutes later.

Each bench runs as a script (``python bench/<name>.py``), so this module is imported by
its plain name from the bench folder.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from typing import Any


def summary(doc: str | None) -> str:
    """The first paragraph of a module docstring, as one line (``--help``'s description)."""
    first = (doc or "").strip().split("\n\n", 1)[0]
    return " ".join(first.split())


class BenchParser(argparse.ArgumentParser):
    """An ArgumentParser whose ``--help`` shows every option's default, with or without a
    help text of its own (argparse's ArgumentDefaultsHelpFormatter skips the ones without)."""

    def add_argument(self, *names: Any, **options: Any) -> argparse.Action:
        default = options.get("default")
        # Identity, not equality: a default of 0 is shown (0 == False).
        shown = all(default is not hidden for hidden in (None, False, argparse.SUPPRESS))
        if shown and options.get("help") is not argparse.SUPPRESS:
            text = options.get("help") or ""
            options["help"] = f"{text} (default: %(default)s)".strip()
        return super().add_argument(*names, **options)


def make_parser(doc: str | None) -> BenchParser:
    """A bench's parser: its docstring's first paragraph, and every default in ``--help``."""
    return BenchParser(description=summary(doc))


def at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number >= ``minimum``.

    ``at_least(1)("0")`` raises ``ArgumentTypeError("must be a whole number >= 1, not '0'")``.
    """

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"must be a whole number >= {minimum}, not {text!r}")
        return value

    parse.__name__ = f"whole number >= {minimum}"
    return parse


def names_of(choices: Iterable[str]) -> Callable[[str], list[str]]:
    """An argparse type: a comma-separated list of at least one of ``choices``, each once,
    in the order given (``"postgres, sqlite,postgres"`` -> ``["postgres", "sqlite"]``)."""
    allowed = tuple(choices)

    def parse(text: str) -> list[str]:
        names = list(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
        unknown = [name for name in names if name not in allowed]
        if unknown or not names:
            raise argparse.ArgumentTypeError(
                f"expected a comma-separated list of {', '.join(allowed)}, not {text!r}"
            )
        return names

    parse.__name__ = "list"
    return parse


def counts_of(minimum: int) -> Callable[[str], list[int]]:
    """An argparse type: a comma-separated list of at least one whole number >= ``minimum``,
    each once, in the order given (``"16,64"`` -> ``[16, 64]``)."""

    def parse(text: str) -> list[int]:
        words = [word.strip() for word in text.split(",") if word.strip()]
        try:
            values = [int(word) for word in words]
        except ValueError:
            values = []
        if not values or min(values) < minimum:
            raise argparse.ArgumentTypeError(
                f"expected a comma-separated list of whole numbers >= {minimum}, not {text!r}"
            )
        return list(dict.fromkeys(values))

    parse.__name__ = "list"
    return parse
