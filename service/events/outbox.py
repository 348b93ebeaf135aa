"""The push outbox of security events: one row per SET, delivered in order per account.

The same life as a notice (service/notices/outbox.py), for the same reason: the row, not
the queue, is the truth until the receiver answered (rq/rq #1461, #2015: a killed worker's
job can vanish). pending -> queued -> sending -> delivered | dropped, and back to pending
after a network error or a 5xx (with a backoff), after a worker died (its lease ended) or
after a queued job was lost with Redis (queued too long).

What differs from notices:

- Order per account (RFC 8935 leaves it to the transmitter; a login service that applies
  ``account-enabled`` before the ``account-disabled`` it follows would be wrong). A row is
  relayed, and claimed, only while no other row of its account is in a worker's hands,
  queued, or waiting to be retried; the rows of one account go in one job, in id order.
  Relays and claims take one lock (a PostgreSQL transaction advisory lock; SQLite's one
  writer), so two of them cannot split an account.
- No giving up: a receiver down for a day gets every event when it is back (backoff at
  most ``BACKOFF_MAX``). Only a 400 with an SSF error code (RFC 8935 section 2.3) drops an
  event, with its code and description recorded; any other refusal (401, 403, 404, 429,
  a 400 without a code) is the deployment's to fix, and the event waits for it.
- A scheduled row (``not_before``, never tried: a lock's end) holds nobody back until due.

The one window left, as for notices: a worker killed after the receiver accepted a SET and
before its row is marked delivered sends it again after the lease. The receiver sees the
same ``jti`` twice and must ignore the second (RFC 8417 section 2.2: ``jti`` is unique).
Each outcome is committed at once, so the window is one SET per killed worker.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, exists, func, or_, select, text, true, update
from sqlalchemy.orm import Session, aliased

from service.db import rowcount
from service.events.types import EventType
from service.models import Account, EventReceiver, EventState, SecurityEvent

SEND_LEASE = timedelta(minutes=2)
QUEUED_TIMEOUT = timedelta(minutes=30)
BACKOFF_BASE = timedelta(seconds=10)
BACKOFF_MAX = timedelta(minutes=15)
LOCK_NAMESPACE = 0x4C47  # "LG": Leakguard's advisory locks
LOCK_KEY = 0x5345  # "SE": the push outbox
PUSH = EventReceiver.PUSH


def serialize(session: Session) -> None:
    """Take the push outbox's lock for this transaction (relays and claims, one at a time)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(LOCK_NAMESPACE, LOCK_KEY)))
    else:
        # SQLite: become the one writer now, not at the first write after the reads.
        session.execute(text("UPDATE security_event SET id = id WHERE 0"))


def _held_back(now: datetime, batch: Sequence[int] = ()) -> Any:
    """True for a push row whose account has a row queued, in a worker's hands, or waiting
    to be retried, other than the rows of ``batch``: its later rows wait (a subquery on
    ``SecurityEvent``)."""
    other = aliased(SecurityEvent)
    return exists().where(
        other.account_id == SecurityEvent.account_id,
        other.receiver == PUSH,
        other.id != SecurityEvent.id,
        other.id.not_in(batch) if batch else true(),
        or_(
            other.state.in_((EventState.QUEUED, EventState.SENDING)),
            and_(
                other.state == EventState.PENDING,
                other.attempts > 0,
                other.not_before > now,
                other.id < SecurityEvent.id,
            ),
        ),
    )


def _due(now: datetime) -> Any:
    return and_(
        SecurityEvent.receiver == PUSH,
        SecurityEvent.state == EventState.PENDING,
        or_(SecurityEvent.not_before.is_(None), SecurityEvent.not_before <= now),
    )


def due_events(session: Session, *, limit: int, now: datetime) -> list[tuple[int, int]]:
    """Push rows that may go now, as (id, account id), in id order; at most ``limit``.

    Call ``serialize`` first in the same transaction.
    """
    query = (
        select(SecurityEvent.id, SecurityEvent.account_id)
        .where(_due(now), ~_held_back(now))
        .order_by(SecurityEvent.id)
        .limit(limit)
    )
    return [(row.id, row.account_id) for row in session.execute(query)]


def mark_queued(session: Session, event_ids: Sequence[int], *, now: datetime) -> None:
    session.execute(
        update(SecurityEvent)
        .where(SecurityEvent.id.in_(event_ids), SecurityEvent.state == EventState.PENDING)
        .values(state=EventState.QUEUED, queued_at=now)
        .execution_options(synchronize_session=False)
    )


@dataclass(frozen=True, slots=True)
class ClaimedEvent:
    id: int
    account_id: int
    jti: str
    claims: dict[str, Any]
    attempts: int


def claim_events(
    session: Session, event_ids: Sequence[int], *, now: datetime
) -> list[ClaimedEvent]:
    """Take the rows of ``event_ids`` still waiting (pending or queued) and not held back
    by an earlier row of their account; mark them ``sending`` under a lease. Idempotent: a
    row another worker holds, or delivered, is not returned. Does not commit; in id order.
    """
    serialize(session)
    waiting = and_(
        SecurityEvent.id.in_(event_ids),
        SecurityEvent.receiver == PUSH,
        SecurityEvent.state.in_((EventState.PENDING, EventState.QUEUED)),
    )
    rows = session.execute(
        select(
            SecurityEvent.id,
            SecurityEvent.account_id,
            SecurityEvent.jti,
            SecurityEvent.claims,
            SecurityEvent.attempts,
        )
        .where(waiting, ~_held_back(now, event_ids))
        .order_by(SecurityEvent.id)
    ).all()
    # The batch's own rows do not hold each other back: a job sends an account's rows one
    # after another itself.
    claimed = [ClaimedEvent(*row) for row in rows]
    if claimed:
        session.execute(
            update(SecurityEvent)
            .where(SecurityEvent.id.in_([event.id for event in claimed]))
            .values(state=EventState.SENDING, lease_until=now + SEND_LEASE)
            .execution_options(synchronize_session=False)
        )
    return claimed


def record_delivered(session: Session, event_id: int, *, status: int, now: datetime) -> None:
    session.execute(
        update(SecurityEvent)
        .where(SecurityEvent.id == event_id, SecurityEvent.state == EventState.SENDING)
        .values(
            state=EventState.DELIVERED,
            delivered_at=now,
            status_code=status,
            last_error=None,
            lease_until=None,
            attempts=SecurityEvent.attempts + 1,
        )
        .execution_options(synchronize_session=False)
    )


def record_dropped(
    session: Session, event_id: int, *, status: int, error: str, now: datetime
) -> None:
    """The receiver refused the SET for good (RFC 8935 section 2.3): keep why, never resend."""
    session.execute(
        update(SecurityEvent)
        .where(SecurityEvent.id == event_id, SecurityEvent.state == EventState.SENDING)
        .values(
            state=EventState.DROPPED,
            status_code=status,
            last_error=error[:500],
            lease_until=None,
            delivered_at=now,
            attempts=SecurityEvent.attempts + 1,
        )
        .execution_options(synchronize_session=False)
    )


def record_retry(
    session: Session,
    event_id: int,
    *,
    attempts: int,
    status: int | None,
    error: str,
    now: datetime,
) -> datetime:
    """A network error or a refusal to try again: back to pending after a backoff (the
    account's later rows wait). ``attempts``: tries before this one. Returns when."""
    when = now + backoff(attempts + 1)
    session.execute(
        update(SecurityEvent)
        .where(SecurityEvent.id == event_id, SecurityEvent.state == EventState.SENDING)
        .values(
            state=EventState.PENDING,
            status_code=status,
            last_error=error[:500],
            lease_until=None,
            not_before=when,
            attempts=SecurityEvent.attempts + 1,
        )
        .execution_options(synchronize_session=False)
    )
    return when


def release(session: Session, event_ids: Sequence[int]) -> None:
    """Give back rows this worker claimed and did not try (their turn comes again)."""
    if event_ids:
        session.execute(
            update(SecurityEvent)
            .where(SecurityEvent.id.in_(event_ids), SecurityEvent.state == EventState.SENDING)
            .values(state=EventState.PENDING, lease_until=None)
            .execution_options(synchronize_session=False)
        )


def extend_lease(session: Session, event_ids: Sequence[int], *, now: datetime) -> None:
    session.execute(
        update(SecurityEvent)
        .where(SecurityEvent.id.in_(event_ids), SecurityEvent.state == EventState.SENDING)
        .values(lease_until=now + SEND_LEASE)
        .execution_options(synchronize_session=False)
    )


def backoff(attempts: int) -> timedelta:
    """Exponential: 10 s, 20 s, 40 s ... at most 15 min."""
    delay: timedelta = BACKOFF_BASE * (2 ** max(attempts - 1, 0))
    return min(delay, BACKOFF_MAX)


def release_stale(session: Session, *, now: datetime) -> int:
    """Put back push rows whose worker died (lease over) or whose job was lost."""
    result = session.execute(
        update(SecurityEvent)
        .where(
            SecurityEvent.receiver == PUSH,
            or_(
                and_(SecurityEvent.state == EventState.SENDING, SecurityEvent.lease_until < now),
                and_(
                    SecurityEvent.state == EventState.QUEUED,
                    SecurityEvent.queued_at < now - QUEUED_TIMEOUT,
                ),
            ),
        )
        .values(state=EventState.PENDING, lease_until=None)
        .execution_options(synchronize_session=False)
    )
    return rowcount(result)


@dataclass(frozen=True, slots=True)
class DroppedEvent:
    """An event a receiver refused for good, as an operator sees it (no claims, no address)."""

    jti: str
    receiver: str
    account: str  # the login service's id
    event_type: str
    reason: str | None
    at: datetime | None

    def to_json(self) -> dict[str, Any]:
        return {
            "jti": self.jti,
            "receiver": self.receiver,
            "account": self.account,
            "event_type": self.event_type,
            "reason": self.reason,
            "at": self.at.isoformat() if self.at else None,
        }


def dropped_events(session: Session, *, limit: int = 100) -> list[DroppedEvent]:
    """The latest events refused for good, newest first."""
    rows = session.execute(
        select(
            SecurityEvent.jti,
            SecurityEvent.receiver,
            Account.external_id,
            SecurityEvent.event_type,
            SecurityEvent.last_error,
            SecurityEvent.delivered_at,
        )
        .join(Account, Account.id == SecurityEvent.account_id)
        .where(SecurityEvent.state == EventState.DROPPED)
        .order_by(SecurityEvent.id.desc())
        .limit(limit)
    ).all()
    return [DroppedEvent(r[0], str(r[1]), r[2], r[3], r[4], r[5]) for r in rows]


def event_counts(session: Session) -> dict[str, dict[str, int]]:
    """How many rows each receiver has in each state: {"push": {"delivered": 3, ...}}."""
    counts: dict[str, dict[str, int]] = {}
    for receiver, state, count in session.execute(
        select(SecurityEvent.receiver, SecurityEvent.state, func.count()).group_by(
            SecurityEvent.receiver, SecurityEvent.state
        )
    ):
        counts.setdefault(str(receiver), {})[str(state)] = count
    return counts


SETTLED = (EventState.DELIVERED, EventState.DROPPED, EventState.CANCELLED)
REMEMBERED = (
    EventType.RISK_LEVEL_CHANGE.value,
    EventType.ACCOUNT_DISABLED.value,
    EventType.ACCOUNT_ENABLED.value,
)


def purge_settled(session: Session, *, before: datetime, limit: int = 10_000) -> int:
    """Delete up to ``limit`` rows settled (delivered, dropped, cancelled) and created
    before ``before``; return how many. For housekeeping: call until it returns 0.

    Each account's latest risk-level-change, account-disabled and account-enabled stay:
    they are what the login service was last told (service/events/emit.py compares with
    them). Does not commit.
    """
    keep = (
        select(func.max(SecurityEvent.id))
        .where(
            SecurityEvent.event_type.in_(REMEMBERED),
            SecurityEvent.state != EventState.CANCELLED,
        )
        .group_by(SecurityEvent.account_id, SecurityEvent.event_type)
    )
    doomed = list(
        session.scalars(
            select(SecurityEvent.id)
            .where(
                SecurityEvent.state.in_(SETTLED),
                SecurityEvent.created_at < before,
                SecurityEvent.id.not_in(keep),
            )
            .order_by(SecurityEvent.id)
            .limit(limit)
        )
    )
    if doomed:
        session.execute(
            delete(SecurityEvent)
            .where(SecurityEvent.id.in_(doomed))
            .execution_options(synchronize_session=False)
        )
    return len(doomed)
