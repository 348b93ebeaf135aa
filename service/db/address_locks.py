"""One writer at a time per canonical address (issue 14, fault 1).

An email change is confirmed only if no other account holds the new address; two
confirmations of one address for two accounts (different spellings that fold to one key)
would each check before the other commits and both win. So every step that gives an
account an address takes the address's lock first, by its key (the keyed hash of the
canonical form), until its transaction ends: the confirmation, the revert's restore, and
the paths of the login service (``PUT /v1/accounts/{id}``, the batch endpoint, the import)
that create accounts or move them. The second confirmation then waits, reads what the
first committed, and is refused with 409 ``address_in_use``; a sync that runs first is
seen by a confirmation that runs after it.

PostgreSQL: a transaction advisory lock per slot (namespace ``ADDRESS_LOCKS``, the key's
first four bytes folded into ``LOCK_SLOTS`` slots: a collision only makes two addresses
wait for each other), taken in slot order so two holders of several cannot deadlock. The
slots bound what one transaction holds: PostgreSQL's shared lock table has room for
``max_locks_per_transaction`` (64) x ``max_connections`` (100) locks for all sessions
together, and a lock per key made an import chunk of 20,000 rows fail with "out of shared
memory"; a chunk now holds at most ``LOCK_SLOTS``, one API write one. SQLite has one
writer at a time already: the transaction's first write waits for the other's commit.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import text
from sqlalchemy.orm import Session

ADDRESS_LOCKS = 0x4C41  # "LA": the advisory-lock namespace of canonical addresses
LOCK_SLOTS = 1024  # advisory locks one transaction may hold per namespace, at most


def lock_addresses(session: Session, email_keys: Iterable[bytes]) -> None:
    """Hold the lock of each canonical address key until the transaction ends."""
    if session.get_bind().dialect.name != "postgresql":
        return
    ids = sorted({int.from_bytes(key[:4], "big") % LOCK_SLOTS for key in email_keys})
    if not ids:
        return
    session.execute(
        text(
            "SELECT count(pg_advisory_xact_lock(:namespace, key)) "
            "FROM (SELECT unnest(CAST(:keys AS integer[])) AS key ORDER BY 1) AS ordered"
        ),
        {"namespace": ADDRESS_LOCKS, "keys": ids},
    )
