"""Log-safe forms of addresses: ``j***@example.com``, never the local part.

Every addr-spec form RFC 5322 section 3.4.1 and RFC 6531 allow is found in free text: dot-atoms
of any atext (``/`` and ``*`` included), quoted local parts (spaces, ``\\"`` and ``\\\\``),
non-ASCII local parts and domains, IDN A-labels, domain literals (``[192.0.2.1]``,
``[IPv6:2001:db8::1]``), and the way text around them spells them: ``<...>``, ``mailto:``,
percent-encoding in a URL (``%40``, ``%22``, ``%20``, twice encoded ``%2540``), and a quoted
local part escaped inside a JSON string (``\\"jane doe\\"@example.org``).
"""

from __future__ import annotations

import json
import re
from typing import Final
from urllib.parse import unquote

from service.addresses.canonical import MAX_INPUT_CHARS, clean_address

_MASK: Final = "***"
_MASK_MAX_DOMAIN: Final = 253
_MASK_HOST: Final = re.compile(r"[^\W_][\w-]*(?:\.[^\W_][\w-]*)+")
# Only address literals show (RFC 5321 section 4.1.3); a general literal's text could be anything.
_MASK_LITERAL: Final = re.compile(
    r"\[(?:\d{1,3}(?:\.\d{1,3}){3}|IPv6:[0-9A-Fa-f:.]{2,45})\]", re.IGNORECASE
)
# A local part already masked ("j***"): kept, so that masking twice changes nothing.
_MASKED_LOCAL: Final = re.compile(r"[^\W_]?\*\*\*")

# Bounds keep the search linear on long runs without an "@" (each start position reads at
# most this far); RFC 5321 allows 64 octets of local part, leaks and free text hold more.
_MAX_RUN: Final = 256
_PCT: Final = r"%[0-9A-Fa-f]{2}"
_AT: Final = r"(?:@|%40|%2540)"
_ANY_AT: Final = re.compile(_AT)
# One character of a dot-atom but the dot: ASCII atext, or any non-ASCII character but space,
# the general punctuation block (bidi and zero-width controls, curly quotes) and the BOM
# (RFC 6531 UTF8-non-ascii). "%" is atext, so "%20" and "%40" read as atext too; "%22", an
# encoded quote, ends an atom: it opens or closes a quoted word.
_ATOM: Final = (
    r"[A-Za-z0-9!#$&'*+/=?^_`{|}~-]|%(?!22|40|2540)|[^\x00-\x7f\s\u00a0\u2000-\u206f\u3000\ufeff]"
)
# A quoted string as written, and as a JSON string spells it (\"...\", "\\" for "\").
_QUOTED: Final = rf'"(?:[^"\\\r\n]|\\[^\r\n]){{0,{_MAX_RUN}}}"'
_JSON_QUOTED: Final = (
    rf'\\"(?:[^"\\\r\n]|\\\\\\["\\]|\\\\[^"\\\r\n]|\\[^"\\\r\n]){{0,{_MAX_RUN}}}\\"'
)
# A word is an atom or a quoted string (RFC 5322 obs-local-part: words between dots). A quoted
# string stands only between dots and the "@": 'a": "b", "c' in a JSON line is no local part.
# Percent-encoded ("%22jane@doe%22" in a URL): an "@" inside the quotes may stay raw.
_PCT_QUOTED: Final = rf'%22(?:[^\s%"\\]|%(?!22)[0-9A-Fa-f]{{2}}|%5[Cc]%22){{0,{_MAX_RUN}}}%22'
_WORD: Final = rf"(?:{_PCT_QUOTED}|(?:{_ATOM}){{1,{_MAX_RUN}}}+|{_JSON_QUOTED}|{_QUOTED})"
_DOT: Final = r"(?:\.|%2[Ee])"
# A domain's percent-encoded characters: letters, digits, "-" and the bytes of UTF-8 (an
# IDN); a "%22" or "%40" ends the domain.
_PCT_HOST: Final = r"%(?:[89A-Fa-f][0-9A-Fa-f]|2[Dd]|3[0-9]|[46][1-9A-Fa-f]|[57][0-9Aa])"
_LABEL: Final = rf"(?:[^\W_]|{_PCT_HOST})(?:[\w-]|{_PCT_HOST}){{0,62}}"
_LITERAL: Final = r"(?:\[|%5[Bb])(?:[A-Za-z0-9:.]|%3[Aa]){1,64}(?:\]|%5[Dd])"
# Never from inside a "%XX" escape: "%22bob@x" is a quote, then bob@x.
_ADDRESS: Final = re.compile(
    rf"(?<!%)(?<!%[0-9A-Fa-f])\.{{0,8}}{_WORD}(?:\.{{1,8}}{_WORD}){{0,32}}\.{{0,8}}{_AT}"
    rf"(?:{_LITERAL}|{_LABEL}(?:{_DOT}{_LABEL}){{0,126}})"
)
# A URL path before the local part ("/v1/accounts/" + "alice@x"), kept for the log's reader,
# also as a rendered log field ("path=/v1/accounts/j***@x" stays as it is): plain segments
# only, so "/G=Jo/S=Do/@x" (X.400 through a gateway) is masked whole.
_PATH: Final = re.compile(r"(?:[A-Za-z_]{1,32}=)?(?:/[A-Za-z0-9_.~-]*)*/")
_LOCAL_START: Final = re.compile(rf"(?!{_AT})[^@]")


def mask_email(text: str) -> str:
    """Return a log-safe form of ``text``: "john@example.com" -> "j***@example.com".

    Quoted local parts lose their quotes ('"john doe"@x' -> "j***@x"); the first character
    shows only if it is a letter or digit. Anything not shaped like local@host.name or
    local@[address literal] gives "***". The result never contains a local part of two
    characters or more (a one-character local part is dropped entirely). Never raises.
    """
    if not isinstance(text, str) or len(text) > MAX_INPUT_CHARS:
        return _MASK
    shown_local, at, shown_domain = text.rpartition("@")
    if at and _MASKED_LOCAL.fullmatch(shown_local) and len(shown_domain) <= _MASK_MAX_DOMAIN:
        return text  # masked already ("***@0" from "0@0@0"): as it is, domain unmapped
    local, at, domain = clean_address(text).rpartition("@")
    quoted = len(local) >= 2 and local[0] == local[-1] == '"'
    # An "@" is text only inside quotes: "a@b@c.com" is no address.
    if not at or not local or ("@" in local and not quoted) or not _showable_domain(domain):
        return _MASK
    hidden = f"{_MASK}@{domain}"
    bare = _unquoted(local)
    first = bare[:1]
    if len(bare) < 2 or not first.isalnum():
        return hidden
    masked = first + hidden
    # "a*" would survive as the prefix of "a***"; fall back rather than leak it.
    return hidden if bare in masked else masked


def mask_addresses(text: str) -> str:
    """Return ``text`` with every address-shaped token masked (for log lines and stored
    free text). Idempotent; linear in the length of ``text``."""
    # Each start position may read up to _MAX_RUN characters: text with no at-sign at all
    # (nearly every log line) skips the search.
    if "@" not in text and _ANY_AT.search(text) is None:
        return text
    return _ADDRESS.sub(_masked_token, text)


def _masked_token(match: re.Match[str]) -> str:
    token = match.group(0)
    kept = ""
    if "/" in token:
        path = _PATH.match(token)
        rest = token[path.end() :] if path else ""
        if path and _LOCAL_START.match(rest):
            kept, token = path.group(0), rest
    if token.startswith('\\"'):
        token = _json_unescaped(token)
    return kept + mask_email(_decoded(token))


def _unquoted(local: str) -> str:
    """The text of a quoted local part ('"a\\"b"' -> 'a"b'); any other one as it is."""
    if len(local) >= 2 and local[0] == local[-1] == '"':
        return re.sub(r"\\(.)", r"\1", local[1:-1], flags=re.S)
    return local


def _showable_domain(domain: str) -> bool:
    if len(domain) > _MASK_MAX_DOMAIN:
        return False
    return bool(_MASK_HOST.fullmatch(domain) or _MASK_LITERAL.fullmatch(domain))


def _json_unescaped(token: str) -> str:
    try:
        unescaped = json.loads(f'"{token}"')
    except ValueError:
        return token.replace('\\"', '"')
    return unescaped if isinstance(unescaped, str) else token


def _decoded(text: str) -> str:
    for _ in range(2):  # at most doubly encoded ("%2540")
        if "%" not in text:
            break
        text = unquote(text)
    return text
