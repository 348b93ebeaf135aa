"""A code as the person meant to type it, whatever their keyboard and clipboard added.

People read a code in one place and type or paste it in another: a phone with a Japanese or
Chinese input method writes full-width digits (U+FF11 for 1), an Arabic or Persian keyboard
its own digits (U+0661 for 1), a word processor or mail program turns the dashes of
``ABCD-EFGH`` into en dashes and its spaces into no-break spaces, a copy across a line
break brings the newline, and a web page may hold zero-width spaces. None of these is a
different code, and refusing one counts as a wrong guess against the owner's budget.
"""

from __future__ import annotations

import unicodedata

# Dash punctuation (Pd: hyphen, en and em dash, ...) and the minus sign, which is Sm.
_MINUS_SIGN = "\u2212"


def _kept(char: str) -> str:
    if char.isspace() or char == _MINUS_SIGN:
        return ""
    category = unicodedata.category(char)
    if category in ("Pd", "Cf"):  # dashes; invisible format characters (ZWSP, soft hyphen)
        return ""
    digit = unicodedata.decimal(char, None)  # any script's digit, as its ASCII one
    return str(digit) if digit is not None else char


def typed_code(text: str) -> str:
    """``text`` in NFKC (full-width forms as ASCII), every decimal digit as ASCII, without
    whitespace, dashes or invisible format characters. Case is left to the caller."""
    return "".join(_kept(char) for char in unicodedata.normalize("NFKC", text))
