"""Text that people read (a leak's name in a warning, its source in `leaks show`): checked
once, in the domain, before it reaches a bounded column, the same on SQLite and PostgreSQL.

SQLite stores a string of any length in a String(n) column, PostgreSQL refuses it with a
trace: the bound is checked here, where every face (CLI option, API field, staff form, CSV
column) passes, so each gets the same one-line refusal. A name of spaces or of invisible
characters alone would make a warning read "at another company:  ." and a newline would
break the sentence or a log line: both are refused, not cleaned up behind the operator's back.
"""

from __future__ import annotations

import unicodedata

from service.errors import ValidationFailed

# Characters that change how the text after them reads (bidirectional embeddings, overrides
# and isolates): a name holding one can make a warning show another name than it stores.
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# Categories never allowed: control characters (newline, tab, NUL, which PostgreSQL also
# refuses), line and paragraph separators, lone surrogates (a non-UTF-8 command-line byte
# as Python decodes it: it cannot be stored), unassigned and private-use code points.
REFUSED_CATEGORIES = frozenset({"Cc", "Zl", "Zp", "Cs", "Cn", "Co"})
# Categories that show nothing by themselves: spaces and format characters (zero-width
# space, joiners, soft hyphen), combining marks with nothing to combine with.
INVISIBLE_CATEGORIES = frozenset({"Zs", "Cf", "Mn", "Me"})


def check_readable_text(value: str, *, what: str, limit: int) -> str:
    """Return ``value`` as stored: trimmed, runs of spaces made one; raise ValidationFailed.

    Refused: nothing visible (empty, spaces, zero-width characters only), a control
    character (a newline, a tab), a bidirectional override, a character that cannot be
    stored, and more than ``limit`` characters (a column's width, as PostgreSQL counts
    them: code points) once trimmed. ``what`` names the field in the one-line message
    ("--name", "the leak's source").
    """
    bad = next((c for c in value if _refused(c)), None)
    if bad is not None:
        raise ValidationFailed(
            f"{what} may not hold a control or invisible formatting character "
            f"(U+{ord(bad):04X}): write it on one line, in plain characters"
        )
    text = " ".join(value.split())
    if not any(unicodedata.category(c) not in INVISIBLE_CATEGORIES for c in text):
        raise ValidationFailed(f"{what} is blank: give visible text, or leave the option out")
    if len(text) > limit:
        raise ValidationFailed(f"{what} is {len(text)} characters long; at most {limit}")
    return text


def _refused(char: str) -> bool:
    return char in BIDI_CONTROLS or unicodedata.category(char) in REFUSED_CATEGORIES
