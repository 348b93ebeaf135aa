"""Log-safe forms of addresses: ``j***@example.com``, never the local part."""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import unquote

from service.addresses.canonical import MAX_INPUT_CHARS, clean_address

_MASK: Final = "***"
_MASK_DOMAIN: Final = re.compile(r"[^\W_][\w-]*(?:\.[^\W_][\w-]*)+")
_MASK_MAX_DOMAIN: Final = 253
# No "/" in the local part, unlike RFC 5322: a URL path before an address must survive.
# No "*" either: "j***@example.com" is masked already, and masking is then idempotent.
# Any character of a URL may be percent-encoded (RFC 3986 section 2.1), the "@" ("%40", or
# "%2540" encoded twice) and the dots ("%2E") included: "%XX" counts as a character.
_PCT: Final = r"%[0-9A-Fa-f]{2}"
_ADDRESS: Final = re.compile(
    rf"(?:[\w.!#$&'+=?^`{{|}}~-]|{_PCT})+(?:@|%40|%2540)(?:[\w-]|{_PCT})+"
    rf"(?:(?:\.|%2[Ee])(?:[\w-]|{_PCT})+)+"
)


def mask_email(text: str) -> str:
    """Return a log-safe form of ``text``: "john@example.com" -> "j***@example.com".

    Anything not shaped like local@host.name gives "***". The result never contains the local
    part unless it happens to occur in "***@" + domain (a one-character local part is dropped
    entirely). Never raises.
    """
    if not isinstance(text, str) or len(text) > MAX_INPUT_CHARS:
        return _MASK
    local, at, domain = clean_address(text).rpartition("@")
    if (
        not at
        or not local
        or "@" in local
        or len(domain) > _MASK_MAX_DOMAIN
        or _MASK_DOMAIN.fullmatch(domain) is None
    ):
        return _MASK
    hidden = f"{_MASK}@{domain}"
    first = local[0]
    if len(local) < 2 or not first.isprintable() or first.isspace():
        return hidden
    masked = first + hidden
    # "a*" would survive as the prefix of "a***"; fall back rather than leak it.
    return hidden if local in masked else masked


def mask_addresses(text: str) -> str:
    """Return ``text`` with every address-shaped token masked (for log lines)."""
    return _ADDRESS.sub(lambda match: mask_email(_decoded(match.group(0))), text)


def _decoded(text: str) -> str:
    for _ in range(2):  # at most doubly encoded, as above
        if "%" not in text:
            break
        text = unquote(text)
    return text
