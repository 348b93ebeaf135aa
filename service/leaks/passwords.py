"""Leaked passwords, kept only as argon2id hashes and only for matched accounts.

The parameters are deliberately light (256 KiB, one pass: about 0.12 ms a hash here,
against ~90-185 ms for argon2-cffi's defaults). The secret is already public: whoever holds
the leak holds it in the clear. The hash only keeps our database from becoming a second,
cleaner copy of that leak and an index from our accounts to their passwords; its one use
is to recognise that exact password at sign-in. Heavy parameters would buy no protection
and would dominate the ingest: bench/ingest.py measured 4 MiB (3.4 ms a hash) costing 172
CPU seconds for the 50,000 matches of a 1M-line combo list, ten times the rest of the work.
At 256 KiB those hashes take about 6 CPU seconds, on threads beside the reader.
"""

from __future__ import annotations

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

LEAKED_PASSWORD_HASHER = PasswordHasher(
    time_cost=1, memory_cost=256, parallelism=1, hash_len=16, salt_len=16, type=Type.ID
)
MAX_PASSWORD_CHARS = 1024


def hash_leaked_password(password: str) -> str:
    """Return the argon2id hash of a leaked password (truncated to a sane length)."""
    return LEAKED_PASSWORD_HASHER.hash(_password_bytes(password))


def is_leaked_password(password_hash: str, password: str) -> bool:
    """Tell whether ``password`` is the leaked one. Never raises on a malformed hash."""
    try:
        return LEAKED_PASSWORD_HASHER.verify(password_hash, _password_bytes(password))
    except (VerificationError, InvalidHashError):
        return False


def _password_bytes(password: str) -> bytes:
    # surrogatepass: a JSON leak can carry lone surrogates; they must hash, not raise.
    return password[:MAX_PASSWORD_CHARS].encode("utf-8", "surrogatepass")
