"""The poll side of the outbox (RFC 8936): rows of the ``poll`` receiver wait until the
receiver acknowledges them by ``jti`` (or reports an error for them).

A SET returned but not acknowledged is returned again by the next poll (RFC 8936 section
2.4: the transmitter may re-send what was not acknowledged); a receiver that lost a
response loses nothing, and ignores a ``jti`` it has seen (RFC 8417 section 2.2).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from service.addresses import mask_addresses
from service.db import rowcount
from service.models import EventReceiver, EventState, SecurityEvent

MAX_EVENTS = 1000  # per poll
JTI = re.compile(r"[0-9A-Za-z_-]{1,64}")
DEFAULT_EVENTS = 100
POLL = EventReceiver.POLL


@dataclass(frozen=True, slots=True)
class SetError:
    """A receiver's error for one SET (RFC 8936 section 2.6): ``err`` and ``description``."""

    err: str
    description: str = ""


def acknowledge(session: Session, jtis: Sequence[str], *, now: datetime) -> int:
    """Mark these SETs received (``ack``); unknown or settled ``jti`` are ignored. Returns
    how many rows changed. Does not commit."""
    if not jtis:
        return 0
    result = session.execute(
        update(SecurityEvent)
        .where(
            SecurityEvent.receiver == POLL,
            SecurityEvent.jti.in_(list(jtis)),
            SecurityEvent.state == EventState.PENDING,
        )
        .values(state=EventState.DELIVERED, delivered_at=now)
        .execution_options(synchronize_session=False)
    )
    return rowcount(result)


def record_errors(session: Session, errors: Mapping[str, SetError], *, now: datetime) -> int:
    """Drop the SETs the receiver refused (``setErrs``), keeping its code and description."""
    changed = 0
    for jti, error in errors.items():
        if not JTI.fullmatch(jti):
            continue  # names no SET of ours
        reason = f"{error.err}: {error.description}" if error.description else error.err
        # What a receiver wrote: no NUL or lone surrogate reaches the database.
        reason = reason.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")
        result = session.execute(
            update(SecurityEvent)
            .where(
                SecurityEvent.receiver == POLL,
                SecurityEvent.jti == jti,
                SecurityEvent.state == EventState.PENDING,
            )
            .values(
                state=EventState.DROPPED,
                delivered_at=now,
                last_error=mask_addresses(reason)[:500],
            )
            .execution_options(synchronize_session=False)
        )
        changed += rowcount(result)
    return changed


def waiting_sets(
    session: Session, *, limit: int, now: datetime
) -> tuple[list[tuple[str, dict[str, Any]]], bool]:
    """The oldest ``limit`` SETs not acknowledged, as (jti, stored claims), in the order
    they were recorded, and whether more wait."""
    rows = session.execute(
        select(SecurityEvent.jti, SecurityEvent.claims)
        .where(
            SecurityEvent.receiver == POLL,
            SecurityEvent.state == EventState.PENDING,
            or_(SecurityEvent.not_before.is_(None), SecurityEvent.not_before <= now),
        )
        .order_by(SecurityEvent.id)
        .limit(limit + 1)
    ).all()
    return [(row.jti, row.claims) for row in rows[:limit]], len(rows) > limit
