"""Refuse to work with an address hash key other than the one the database was keyed with.

Every stored address is a keyed hash (the accounts, the watch list, leaked passwords'
accounts), and the same key derives the step-up secrets and the link tokens. A process
started with another key (LEAKGUARD_DATABASE_URL set, run from a directory whose
``./instance`` holds another ``hash_key``) silently matches nothing: every leaked address
differs from every stored one. The database therefore keeps a fingerprint of its key (an
HMAC-SHA-256 of a fixed label under the key: it names the key without revealing it) and
every command that works on keyed data compares its own against it.

A database keyed before the fingerprint existed has none: the first command that writes
keys records it, but only once the key re-hashes a stored account's address to the key
stored with it (a database of accounts keyed otherwise is refused, not re-labelled).
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.addresses import AddressKeys
from service.db import bulk
from service.errors import JobError
from service.models import Account, KeyFingerprint
from service.runtime import Runtime

HASH_KEY: Final = "hash_key"
_LABEL: Final = b"leakguard key fingerprint v1: the address hash key"
# Accounts re-hashed to vouch for a key when no fingerprint is stored yet: one suffices
# (a wrong key matches none); a few more allow for an address the canonical form of an
# older release read otherwise.
ACCOUNT_SAMPLE: Final = 20


class HashKeyMismatch(JobError):
    """The process's address hash key is not the one the database was keyed with."""


def key_fingerprint(key: bytes) -> bytes:
    """The fingerprint of ``key`` as stored: 32 bytes, from which the key cannot be had."""
    return hmac.new(key, _LABEL, hashlib.sha256).digest()


def check_hash_key(
    session: Session,
    keys: AddressKeys,
    key: bytes,
    *,
    source: str,
    record: bool,
    now: datetime,
) -> None:
    """Raise HashKeyMismatch unless ``key`` is the database's hash key.

    ``keys`` hash with ``key``; ``source`` says where the key came from (for the message).
    Without a stored fingerprint, ``key`` must re-hash a sample of the stored accounts
    (any key will do for a database without accounts); ``record`` then stores its
    fingerprint (two first writers at once: the first to commit wins, the other is
    compared with it). Does not commit.
    """
    mine = key_fingerprint(key)
    stored = session.get(KeyFingerprint, HASH_KEY)
    if stored is None:
        if not _rehashes_accounts(session, keys):
            raise HashKeyMismatch(
                _refusal(source, "it re-hashes none of the stored accounts' addresses")
            )
        if not record:
            return
        bulk.insert_ignore(
            session,
            KeyFingerprint.__table__,  # type: ignore[arg-type]
            [{"name": HASH_KEY, "fingerprint": mine, "recorded_at": now}],
        )
        session.expire_all()
        stored = session.get(KeyFingerprint, HASH_KEY)
    if stored is None or not hmac.compare_digest(stored.fingerprint, mine):
        raise HashKeyMismatch(_refusal(source, "its fingerprint differs from the stored one"))


def verify_runtime_key(runtime: Runtime, *, record: bool, now: datetime) -> None:
    """``check_hash_key`` for the process's own key, in a transaction of its own (commits
    the fingerprint it records). Raises HashKeyMismatch."""
    settings = runtime.settings
    with runtime.db.transaction() as session:
        check_hash_key(
            session,
            runtime.keys,
            settings.hash_key_bytes(),
            source=settings.hash_key_source(),
            record=record,
            now=now,
        )


def _rehashes_accounts(session: Session, keys: AddressKeys) -> bool:
    sample = session.execute(
        select(Account.email, Account.email_key).order_by(Account.id).limit(ACCOUNT_SAMPLE)
    ).all()
    return not sample or any(keys.key(email) == email_key for email, email_key in sample)


def _refusal(source: str, why: str) -> str:
    return (
        f"the address hash key from {source} is not the one this database was keyed with "
        f"({why}): every address would match nothing stored. Use the instance whose "
        "hash_key keyed this database (LEAKGUARD_INSTANCE_DIR) or its key "
        "(LEAKGUARD_HASH_KEY); nothing was changed"
    )
