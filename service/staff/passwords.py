"""Staff passwords: NIST SP 800-63B 5.1.1.2 (at least 15 characters for a single-factor
memorized secret used as one of two factors here too, no composition rules, no periodic
change) and argon2id hashes (OWASP's minimum parameters, as recovery codes use)."""

from __future__ import annotations

import unicodedata

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from service.errors import ValidationFailed

MIN_PASSWORD_CHARS = 15
# Long enough for any passphrase; bounded so that one request cannot make argon2 hash
# megabytes.
MAX_PASSWORD_CHARS = 256
HASHER = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1, type=Type.ID)
# Verified against when the email names no staff user, so that a login for an unknown
# address costs what one for a known address costs.
_DUMMY_HASH = HASHER.hash("leakguard-no-such-staff-user")


class PasswordRefused(ValidationFailed):
    code = "password_refused"
    title = "The password is not acceptable"


def normalized(password: str) -> str:
    """The password as hashed and compared: Unicode NFKC (SP 800-63B 5.1.1.2 says SHOULD),
    so the same passphrase typed on another keyboard or OS (composed or decomposed
    accents, full-width forms) is the same secret."""
    return unicodedata.normalize("NFKC", password)


def check_password_policy(password: str) -> None:
    """Raise PasswordRefused, saying why, unless ``password`` may be chosen (counted in
    characters after normalization)."""
    length = len(normalized(password))
    if length < MIN_PASSWORD_CHARS:
        raise PasswordRefused(f"the password must have at least {MIN_PASSWORD_CHARS} characters")
    if length > MAX_PASSWORD_CHARS:
        raise PasswordRefused(f"the password must have at most {MAX_PASSWORD_CHARS} characters")


def hash_password(password: str) -> str:
    return HASHER.hash(normalized(password))


def password_matches(password_hash: str | None, password: str) -> bool:
    """Whether ``password`` is the one hashed; with no hash, spend the same time and say no."""
    if len(password) > MAX_PASSWORD_CHARS:
        return False
    try:
        secret = normalized(password)
        return HASHER.verify(password_hash or _DUMMY_HASH, secret) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False
