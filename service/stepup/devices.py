"""Trusted devices: a passed step-up vouches for the pair (account, device) for a while.

The login service names a device with an opaque id of its own choosing
(``context.device_id`` in the risk check and in verify). Leakguard keeps only a keyed
digest of it (HMAC-SHA256 under a key derived from ``LEAKGUARD_SECRET_KEY``, per account,
so a database copy neither reveals the ids nor links one device across accounts). While
the trust lasts (``LEAKGUARD_TRUSTED_DEVICE_DAYS``, default 30) the risk check answers
``allow`` with reason ``trusted_device`` for that device; any other device still steps
up. A new leak of the address, a credential exposure or an address change ends every
trust of the account (``end_trust``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import Connection, delete, exists, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from service.db import bulk, rowcount
from service.models import TrustedDevice
from service.stepup.secret_box import keyed_digest

MAX_DEVICE_ID_CHARS = 200
DEVICE_KEY_CONTEXT = b"leakguard/trusted-device/v1"


def device_key(secret: bytes, account_id: int, device_id: str) -> bytes:
    """The stored digest of ``device_id`` for the account: 32 bytes, HMAC-SHA256."""
    return keyed_digest(
        secret, DEVICE_KEY_CONTEXT, str(account_id).encode(), device_id.encode("utf-8")
    )


def trust_device(
    session: Session, account_id: int, key: bytes, *, ttl: timedelta, now: datetime
) -> datetime:
    """Trust the device ``key`` for the account until ``now + ttl``; return that moment.

    A device trusted already has its trust renewed. Does not commit.
    """
    expires_at = now + ttl
    values = {"account_id": account_id, "device_key": key, "trusted_at": now}
    renew = {"trusted_at": now, "expires_at": expires_at}
    keys = ["account_id", "device_key"]
    if bulk.is_postgres(session):
        pg = postgresql.insert(TrustedDevice).values(**values, expires_at=expires_at)
        session.execute(pg.on_conflict_do_update(index_elements=keys, set_=renew))
    else:
        lite = sqlite.insert(TrustedDevice).values(**values, expires_at=expires_at)
        session.execute(lite.on_conflict_do_update(index_elements=keys, set_=renew))
    return expires_at


def is_trusted(
    connection: Connection | Session, account_id: int, key: bytes, *, now: datetime
) -> bool:
    """Whether the device holds a trust of the account that has not run out."""
    return bool(
        connection.execute(
            select(
                exists().where(
                    TrustedDevice.account_id == account_id,
                    TrustedDevice.device_key == key,
                    TrustedDevice.expires_at > now,
                )
            )
        ).scalar()
    )


def end_trust(session: Session, account_ids: Sequence[int]) -> int:
    """End every trusted device of the accounts; return how many. Does not commit."""
    ended = 0
    for condition in bulk.in_batches(session, TrustedDevice.account_id, list(account_ids)):
        ended += rowcount(session.execute(delete(TrustedDevice).where(condition)))
    return ended


def purge_expired(session: Session, *, now: datetime) -> int:
    """Delete trusts past their end; return how many. Does not commit."""
    return rowcount(session.execute(delete(TrustedDevice).where(TrustedDevice.expires_at <= now)))
