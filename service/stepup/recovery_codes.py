"""Recovery codes (look-up secrets, NIST SP 800-63B 5.1.2): their shape, making and checking.

A code is 20 base32 characters shown as ``XXXX-XXXX-XXXX-XXXX-XXXX``. The first four are a
public ``lookup`` that finds the code's row, so that a guess costs one argon2 verify and
not ten; the other sixteen (80 bits) are the secret. Only the argon2id hash is stored.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from service.stepup.typed import typed_code

BASE32_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
CODES_PER_SET = 10
LOOKUP_CHARS = 4
SECRET_CHARS = 16  # 80 bits: the part only the person knows
# OWASP's argon2id minimum (19 MiB, 2 passes, ~25 ms here). The codes carry 80 bits, so the
# hash is not what stops guessing; it keeps a database dump from being a list of codes.
HASHER = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1, type=Type.ID)


@dataclass(frozen=True, slots=True)
class NewCode:
    shown: str  # formatted for the person, once
    lookup: str
    code_hash: str


def new_code() -> NewCode:
    lookup = _base32(LOOKUP_CHARS)
    code = lookup + _base32(SECRET_CHARS)
    return NewCode(shown=format_code(code), lookup=lookup, code_hash=HASHER.hash(code))


def format_code(code: str) -> str:
    return "-".join(code[i : i + 4] for i in range(0, len(code), 4))


def normalize_code(text: str) -> str | None:
    """Undo what people do to codes: case, spaces, dashes, 0/O and 1/I mix-ups, and what
    keyboards and clipboards add (``typed_code``: en dashes, no-break spaces, line breaks)."""
    cleaned = typed_code(text).upper()
    cleaned = cleaned.translate(str.maketrans("018", "OIB"))
    if len(cleaned) != LOOKUP_CHARS + SECRET_CHARS or not set(cleaned) <= set(BASE32_ALPHABET):
        return None
    return cleaned


def matches(code_hash: str, normalized: str) -> bool:
    try:
        return HASHER.verify(code_hash, normalized)
    except (VerificationError, InvalidHashError):
        return False


def _base32(chars: int) -> str:
    return "".join(secrets.choice(BASE32_ALPHABET) for _ in range(chars))
