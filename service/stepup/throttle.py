"""The guess budget of step-up: per method, and for all methods of one subject together.

NIST SP 800-63B section 5.2.2 asks for a bound on failed attempts that an attacker cannot
turn against the owner. So the budget is kept per verification method: ten wrong TOTP
codes lock TOTP for 15 minutes (twice as long on each lock in a row, at most a day, the
doubling forgotten after a quiet day), and the emailed code or a recovery code stays open
to the owner meanwhile. Across methods, at most ``ceiling`` failures in a row within 30
days; past that only support unlocks. A success resets both counts of its subject.

The subject is a keyed digest of the external id as the login service sent it, whether an
account has it or not: an unknown id is throttled, and locked, exactly like a known one.
Failures recorded before the account existed (``since``: its creation) do not count against
it: otherwise anyone could spend a future account's budget, or block it, in advance.

Every verification of a subject first takes the lock of its "all methods" row (an UPDATE
on PostgreSQL, the one writer on SQLite), so verifications of one subject run one after
another and concurrent guesses meet the limits exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Connection, Row, Table, delete, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session

from service.db import bulk
from service.models import THROTTLE_ALL_METHODS, StepUpThrottle


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    method_failures: int = 10  # wrong codes in a row before a method locks
    lock_base: timedelta = timedelta(minutes=15)
    max_lock: timedelta = timedelta(days=1)
    quiet: timedelta = timedelta(days=1)  # after this without a failure, locks start short
    ceiling: int = 100  # wrong codes in a row over all methods before support must unlock
    ceiling_window: timedelta = timedelta(days=30)
    email_sends: int = 5  # emailed codes per subject and window, against mail bombing
    email_send_window: timedelta = timedelta(minutes=15)


@dataclass(frozen=True, slots=True)
class Reservation:
    """One failure reserved for a verification; given back if the code proves right."""

    subject: bytes
    method: str
    failures: int  # of the method, this one included
    lock_count: int
    total: int  # over all methods, this one included
    # What the rows said before: ``release`` puts it back.
    last_failed_at: datetime | None = None
    total_last_failed_at: datetime | None = None
    blocked_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Locked:
    """The method is locked until ``until``; None: blocked for every method, until support."""

    until: datetime | None


@dataclass(frozen=True, slots=True)
class ThrottleState:
    """What a subject may try now: the locks in force, by method, and the support block."""

    locked: dict[str, datetime]
    blocked: bool

    def locked_until(self, method: str) -> datetime | None:
        """When ``method`` opens again, or None if it is open; the emailed code is also
        closed while its send budget is spent."""
        ends = [self.locked.get(method)]
        if method == EMAIL_METHOD:
            ends.append(self.locked.get(EMAIL_SENDS))
        present = [end for end in ends if end is not None]
        return max(present) if present else None


EMAIL_METHOD = "email_code"
EMAIL_SENDS = "email_sends"  # the scope of the send budget's row


TABLE = cast(Table, StepUpThrottle.__table__)


def reserve(
    session: Session,
    subject: bytes,
    method: str,
    policy: ThrottlePolicy,
    *,
    now: datetime,
    since: datetime | None = None,
) -> Reservation | Locked:
    """Count one failure in advance, or say which lock stands in the way. Does not commit.

    ``since``: when the account was created; what the subject's rows recorded before that
    is forgotten (see the module docstring).
    """
    # Taking the subject's row lock first serializes its verifications (see the docstring).
    everything = _lock_row(
        session,
        subject,
        THROTTLE_ALL_METHODS,
        StepUpThrottle.failures,
        StepUpThrottle.last_failed_at,
        StepUpThrottle.blocked_at,
    )
    planted = _before(everything.last_failed_at, since)
    if everything.blocked_at is not None and not planted:
        return Locked(None)
    row = _lock_row(
        session,
        subject,
        method,
        StepUpThrottle.failures,
        StepUpThrottle.last_failed_at,
        StepUpThrottle.locked_until,
        StepUpThrottle.lock_count,
    )
    failures, lock_count, locked_until = row.failures, row.lock_count, row.locked_until
    if _before(row.last_failed_at, since):
        failures, lock_count, locked_until = 0, 0, None
    if locked_until is not None and locked_until > now:
        return Locked(locked_until)
    if failures >= policy.method_failures:
        failures = 0  # a lock that ended gives a fresh budget
    if row.last_failed_at is not None and now - row.last_failed_at > policy.quiet:
        failures, lock_count = 0, 0
    total = everything.failures
    if planted or (
        everything.last_failed_at is not None
        and now - everything.last_failed_at > policy.ceiling_window
    ):
        total = 0
    _set(
        session,
        subject,
        method,
        failures=failures + 1,
        last_failed_at=now,
        lock_count=lock_count,
        locked_until=locked_until,
    )
    _set(
        session,
        subject,
        THROTTLE_ALL_METHODS,
        failures=total + 1,
        last_failed_at=now,
        blocked_at=None if planted else everything.blocked_at,
    )
    return Reservation(
        subject,
        method,
        failures + 1,
        lock_count,
        total + 1,
        last_failed_at=row.last_failed_at,
        total_last_failed_at=everything.last_failed_at,
        blocked_at=everything.blocked_at,
    )


def _lock_row(
    session: Session, subject: bytes, scope: str, *columns: InstrumentedAttribute[Any]
) -> Row[Any]:
    """Make sure the (subject, scope) row exists, take its row lock and read ``columns``.

    ``leakguard housekeeping`` may delete a row past use between the insert that found it
    there and the lock: then it is inserted again (a deleted row is an empty one). Once
    locked, housekeeping's delete waits and finds the row in use.
    """
    while True:
        bulk.insert_ignore(session, TABLE, [_empty(subject, scope)])
        row = session.execute(
            update(StepUpThrottle)
            .where(StepUpThrottle.subject == subject, StepUpThrottle.scope == scope)
            .values(failures=StepUpThrottle.failures)
            .returning(*columns)
            .execution_options(synchronize_session=False)
        ).one_or_none()
        if row is not None:
            return row


def spend_email_send(
    session: Session,
    subject: bytes,
    policy: ThrottlePolicy,
    *,
    now: datetime,
    since: datetime | None = None,
) -> datetime | None:
    """Count one emailed code; return when sending opens again if the budget is spent.

    Kept here, beside the guess budget, rather than as a rate limit answering 429: the risk
    check then sees it, leaves the emailed code out and says when it opens
    (``retry_after``), instead of offering a method that would fail. ``failures`` counts
    the window's sends, ``last_failed_at`` is the window's start. Does not commit.
    """
    row = _lock_row(
        session,
        subject,
        EMAIL_SENDS,
        StepUpThrottle.failures,
        StepUpThrottle.last_failed_at,
        StepUpThrottle.locked_until,
    )
    spent_until: datetime | None = row.locked_until
    count, start = row.failures, row.last_failed_at
    if _before(start, since):
        spent_until, count, start = None, 0, None
    if spent_until is not None and spent_until > now:
        return spent_until
    if start is None or now - start >= policy.email_send_window:
        count, start = 0, now
    count += 1
    spent = start + policy.email_send_window if count >= policy.email_sends else None
    _set(session, subject, EMAIL_SENDS, failures=count, last_failed_at=start, locked_until=spent)
    return None


def succeed(session: Session, reservation: Reservation) -> None:
    """The code was right: the reserved failure and the method's lock history are forgotten."""
    _set(session, reservation.subject, reservation.method, failures=0, lock_count=0)
    _set(session, reservation.subject, THROTTLE_ALL_METHODS, failures=0)


def release(session: Session, reservation: Reservation) -> None:
    """Neither right nor wrong: a replay of a code accepted already (RFC 6238 section 5.2
    refuses it, but it is no guess). The rows are as if the attempt had not been made: no
    failure counted, and no success either (that would forget the failures before it)."""
    _set(
        session,
        reservation.subject,
        reservation.method,
        failures=reservation.failures - 1,
        last_failed_at=reservation.last_failed_at,
    )
    _set(
        session,
        reservation.subject,
        THROTTLE_ALL_METHODS,
        failures=reservation.total - 1,
        last_failed_at=reservation.total_last_failed_at,
        blocked_at=reservation.blocked_at,
    )


def fail(
    session: Session, reservation: Reservation, policy: ThrottlePolicy, *, now: datetime
) -> Locked | None:
    """The code was wrong: lock the method, or block the subject, when a limit is met."""
    if reservation.total >= policy.ceiling:
        _set(session, reservation.subject, THROTTLE_ALL_METHODS, blocked_at=now)
        return Locked(None)
    if reservation.failures < policy.method_failures:
        return None
    until = now + min(policy.lock_base * 2**reservation.lock_count, policy.max_lock)
    _set(
        session,
        reservation.subject,
        reservation.method,
        locked_until=until,
        lock_count=reservation.lock_count + 1,
    )
    return Locked(until)


def state(
    session: Session | Connection,
    subject: bytes,
    *,
    now: datetime,
    since: datetime | None = None,
) -> ThrottleState:
    """The subject's locks in force and whether it is blocked, leaving out what was recorded
    before ``since`` (the account's creation). One read."""
    locked: dict[str, datetime] = {}
    blocked = False
    for scope, locked_until, blocked_at, last_failed_at in session.execute(
        select(
            StepUpThrottle.scope,
            StepUpThrottle.locked_until,
            StepUpThrottle.blocked_at,
            StepUpThrottle.last_failed_at,
        ).where(StepUpThrottle.subject == subject)
    ):
        if _before(last_failed_at, since):
            continue
        if blocked_at is not None:
            blocked = True
        if locked_until is not None and locked_until > now:
            locked[scope] = locked_until
    return ThrottleState(locked, blocked)


def clear(session: Session, subject: bytes) -> bool:
    """Support's override: forget every failure, lock and block; return whether one stood."""
    rows = session.execute(
        delete(StepUpThrottle)
        .where(StepUpThrottle.subject == subject)
        .returning(StepUpThrottle.locked_until, StepUpThrottle.blocked_at)
    ).all()
    return any(row.locked_until is not None or row.blocked_at is not None for row in rows)


def block(session: Session, subject: bytes, *, now: datetime) -> bool:
    """Support's lock: block every method of the subject until support unlocks (``clear``);
    return False if it was blocked already. Does not commit.

    The block is dated ``now``, so ``state`` never takes it for one planted before the
    account existed.
    """
    row = _lock_row(session, subject, THROTTLE_ALL_METHODS, StepUpThrottle.blocked_at)
    if row.blocked_at is not None:
        return False
    _set(session, subject, THROTTLE_ALL_METHODS, blocked_at=now, last_failed_at=now)
    return True


def _before(moment: datetime | None, since: datetime | None) -> bool:
    """Whether a row's last record came before ``since`` (then it was planted: forget it)."""
    return moment is not None and since is not None and moment < since


def _empty(subject: bytes, scope: str) -> dict[str, object]:
    return {"subject": subject, "scope": scope, "failures": 0, "lock_count": 0}


def _set(session: Session, subject: bytes, scope: str, **values: object) -> None:
    session.execute(
        update(StepUpThrottle)
        .where(StepUpThrottle.subject == subject, StepUpThrottle.scope == scope)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
