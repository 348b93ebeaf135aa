"""One bare mailbox from a value that names an address: what an account's address is stored as.

An address the login service sends may come dressed as it appears in a header or a link
(``Alice <a@example.org>``, ``"a@example.org"``, ``mailto:a@example.org``, a trailing
``;``, a comment). Leakguard mails that person, one message to one address, so it stores
the bare addr-spec (RFC 5322 section 3.4.1) the value names, never the dressing: a
dressed value as RCPT TO or in a To header is either refused by the mail server or, worse,
names someone else. A value naming two or more mailboxes (an address list, a ``mailto:``
with ``cc=``, two addresses side by side) is refused: which one is the person's is not
ours to guess.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import unquote

from service.addresses.canonical import (
    CanonicalAddress,
    CanonicalRules,
    InvalidAddress,
    canonicalize_email,
    clean_address,
    decode_encoded_words,
    strip_comments,
)

_QUOTED: Final = re.compile(r'"(?:[^"\\]|\\.)*"(@?)', re.S)
_MAILTO: Final = "mailto:"

SEVERAL_ADDRESSES: Final = InvalidAddress("several_addresses")
# What stands between two mailboxes of one value: a list's "," or ";", a space, angle
# brackets (RFC 5322 address-list and group syntax), or an encoded word hiding them. A
# value with two "@" and none of these ("a@b@example.org") is one malformed address.
_BETWEEN_MAILBOXES: Final = re.compile(r"[\s,;<>]|=\?")

# A value that is already one bare dot-atom addr-spec, as nearly every account's address
# is: no dressing to take off (no quotes, brackets, comments, spaces, "mailto:", encoded
# word or trailing punctuation), so it names one mailbox and cleans to itself.
_PLAIN_ADDR_SPEC: Final = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9.-]*[A-Za-z0-9]")
# The same shape for a run of values joined by newlines: one C pass over a whole batch finds
# where the first value that is not plain starts (neither class holds a newline).
_PLAIN_RUN: Final = re.compile(rf"(?:{_PLAIN_ADDR_SPEC.pattern}\n)*")
_MAX_CLEANING_PASSES: Final = 4


def mailboxes_named(text: str) -> int:
    """Count the mailboxes ``text`` names: its "@" signs outside display names and comments.

    An "@" can stand outside an addr-spec only in a quoted display name or a comment; a
    ``mailto:`` URI (RFC 6068) names one mailbox per address in its path and in its
    ``to``, ``cc`` and ``bcc`` fields, percent-encoded or not.
    """
    value = text.strip().lstrip("<").strip()
    if "=?" in value:  # an RFC 2047 encoded word can hide "<a@x>, <b@y>" (base64 too)
        value = decode_encoded_words(value)
    if value[: len(_MAILTO)].lower() == _MAILTO:
        value = unquote(value)
    # A quoted string followed by "@" is a quoted local part: its address's "@" counts once.
    value = _QUOTED.sub(lambda match: "q" + match.group(1), strip_comments(value))
    return value.count("@")


@dataclass(frozen=True, slots=True)
class Mailbox:
    """One mailbox: the addr-spec as written, and its canonical form (what is hashed)."""

    bare: str
    canonical: CanonicalAddress


def bare_mailbox(text: str, rules: CanonicalRules) -> Mailbox | InvalidAddress:
    """Return the one addr-spec ``text`` names, as written, with its canonical form.

    Never raises. InvalidAddress("several_addresses") for a value naming more than one
    mailbox; otherwise whatever ``canonicalize_email`` says of an invalid one. ``bare`` is
    exactly what the canonical form of ``text`` is cleaned from, so both hash alike.
    """
    if not isinstance(text, str):
        return InvalidAddress("not_a_string")
    if "=?" not in text and _PLAIN_ADDR_SPEC.fullmatch(text):
        canonical = canonicalize_email(text, rules)
        return canonical if isinstance(canonical, InvalidAddress) else Mailbox(text, canonical)
    return _bare_mailbox_dressed(text, rules)


def dressed_positions(values: Sequence[str]) -> list[int]:
    """Return, ascending, the positions of the ``values`` ``bare_mailbox`` does not take as
    one plain addr-spec (dressed, several, or no address at all).

    For the others ``bare_mailbox(value)`` is ``canonicalize_email(value)`` as a Mailbox
    whose ``bare`` is the value itself. One regular expression over the whole batch rather
    than one call per value: an import checks a chunk of thousands at a time.
    """
    joined = "\n".join(values) + "\n"
    if joined.count("\n") != len(values) or "=?" in joined:
        # A value holding a newline would shift the positions; an encoded word is dressing
        # inside the plain shape. Both are rare: ask value by value.
        return [
            position
            for position, value in enumerate(values)
            if "=?" in value or not _PLAIN_ADDR_SPEC.fullmatch(value)
        ]
    positions: list[int] = []
    position = offset = 0
    end = len(joined)
    while True:
        match = _PLAIN_RUN.match(joined, offset)  # a starred pattern: always a match
        stop = match.end() if match else offset
        if stop == end:
            return positions
        position += joined.count("\n", offset, stop)
        positions.append(position)
        # The value that is not plain ends at the next newline; the scan resumes after it.
        offset = joined.index("\n", stop) + 1
        position += 1


def _bare_mailbox_dressed(text: str, rules: CanonicalRules) -> Mailbox | InvalidAddress:
    """``bare_mailbox`` for any value: count its mailboxes, take the dressing off."""
    if mailboxes_named(text) > 1:
        separated = _BETWEEN_MAILBOXES.search(text.strip())
        mailto = text.strip()[: len(_MAILTO)].lower() == _MAILTO  # its fields: ?cc=b@y
        return SEVERAL_ADDRESSES if separated or mailto else InvalidAddress("syntax")
    bare = clean_address(text)
    # Taking one layer of dressing off may leave another that reads as dressing only now
    # ('"(")a@example.org': the outer quotes go, then "(\")" is a comment): clean until
    # nothing changes, so that what is stored as bare cleans to itself. Each pass only
    # shortens the text; the bound keeps a hostile value linear.
    for _ in range(_MAX_CLEANING_PASSES):
        again = clean_address(bare)
        if again == bare:
            break
        bare = again
    canonical = canonicalize_email(bare, rules)
    if isinstance(canonical, InvalidAddress):
        return canonical
    return Mailbox(bare, canonical)
