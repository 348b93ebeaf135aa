"""``leakguard housekeeping``: end what has run out, forget what is past use.

Each task is a bounded batch in its own transaction, repeated until none is left: no
long transaction holds locks behind the serving API, and a run killed at any point has
committed whole batches only. Every task is idempotent and reads the clock once, so two
runs at once (cron at any frequency, overlapping) do the work once between them and count
it once: a row the other run took is no longer there to take.

| task                  | what                                                                  |
|-----------------------|-----------------------------------------------------------------------|
| exposures_expired     | open exposures older than LEAKGUARD_EXPOSURE_TTL_DAYS: ``expired``    |
| challenges_purged     | emailed-code challenges past their expiry (their code notices go too) |
| devices_purged        | trusted devices past LEAKGUARD_TRUSTED_DEVICE_DAYS                    |
| throttles_purged      | step-up throttle rows that no longer change a decision                |
| email_changes_expired | email-change requests whose confirmation link ran out: ``expired``    |
| events_purged         | security events settled (delivered, dropped, cancelled) over 30 days  |
|                       | ago; each account's last level and lock state stay (what was told)    |
| staff_sessions_purged | staff sessions ended or timed out (service/staff/sessions.py)         |

Assurance tokens are signed, not stored (service/stepup/assurance.py): nothing to purge.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, or_, select
from sqlalchemy.orm import Session

from service.db import Database, rowcount
from service.email_change.request import expire_requests
from service.events.outbox import purge_settled
from service.leaks.lifecycle import expire_exposures
from service.models import StepUpChallenge, StepUpThrottle, TrustedDevice
from service.staff.sessions import purge_staff_sessions
from service.stepup.throttle import ThrottlePolicy

BATCH = 5_000  # rows per transaction
# Settled events are kept this long for `leakguard events dropped` and for an audit of what
# the login service was told.
EVENT_RETENTION = timedelta(days=30)


@dataclass(frozen=True, slots=True)
class HousekeepingReport:
    """Rows each task changed in this run."""

    exposures_expired: int
    challenges_purged: int
    devices_purged: int
    throttles_purged: int
    email_changes_expired: int = 0
    events_purged: int = 0
    staff_sessions_purged: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        return (
            f"{self.exposures_expired} exposures expired; {self.challenges_purged} expired "
            f"challenges, {self.devices_purged} trusted devices and {self.throttles_purged} "
            f"throttle rows purged; {self.email_changes_expired} email changes expired; "
            f"{self.events_purged} settled security events purged; "
            f"{self.staff_sessions_purged} dead staff sessions purged"
        )


def run_housekeeping(
    db: Database,
    *,
    exposure_ttl: timedelta,
    throttle: ThrottlePolicy,
    now: datetime,
    batch: int = BATCH,
) -> HousekeepingReport:
    """Run every task to the end at ``now``; commits one transaction per batch."""
    return HousekeepingReport(
        exposures_expired=_drain(
            db, lambda s: expire_exposures(s, ttl=exposure_ttl, now=now, limit=batch)
        ),
        challenges_purged=_drain(db, lambda s: _purge_challenges(s, now=now, limit=batch)),
        devices_purged=_drain(db, lambda s: _purge_devices(s, now=now, limit=batch)),
        throttles_purged=_drain(
            db, lambda s: _purge_throttles(s, policy=throttle, now=now, limit=batch)
        ),
        email_changes_expired=_drain(db, lambda s: expire_requests(s, now=now, limit=batch)),
        events_purged=_drain(
            db, lambda s: purge_settled(s, before=now - EVENT_RETENTION, limit=batch)
        ),
        staff_sessions_purged=_drain(db, lambda s: purge_staff_sessions(s, now=now, limit=batch)),
    )


def _drain(db: Database, step: Callable[[Session], int]) -> int:
    total = 0
    while True:
        with db.transaction() as session:
            done = step(session)
        total += done
        if done == 0:
            return total


def _purge_challenges(session: Session, *, now: datetime, limit: int) -> int:
    """Challenges past expiry answer nothing but "wrong code" already: forget them."""
    ids = list(
        session.scalars(
            select(StepUpChallenge.id).where(StepUpChallenge.expires_at <= now).limit(limit)
        )
    )
    if not ids:
        return 0
    return rowcount(session.execute(delete(StepUpChallenge).where(StepUpChallenge.id.in_(ids))))


def _purge_devices(session: Session, *, now: datetime, limit: int) -> int:
    keys = session.execute(
        select(TrustedDevice.account_id, TrustedDevice.device_key)
        .where(TrustedDevice.expires_at <= now)
        .limit(limit)
    ).all()
    purged = 0
    for account_id, device_key in keys:
        purged += rowcount(
            session.execute(
                delete(TrustedDevice).where(
                    TrustedDevice.account_id == account_id,
                    TrustedDevice.device_key == device_key,
                    TrustedDevice.expires_at <= now,
                )
            )
        )
    return purged


def _purge_throttles(session: Session, *, policy: ThrottlePolicy, now: datetime, limit: int) -> int:
    """A throttle row that is not blocked, holds no lock still running and whose last
    failure (or send window's start) is older than every window the policy remembers
    (the quiet period, the ceiling's window, the send window) decides nothing a missing
    row would not: the throttle reads both alike (service/stepup/throttle.py)."""
    horizon = now - max(policy.quiet, policy.ceiling_window, policy.email_send_window)
    past_use = and_(
        StepUpThrottle.blocked_at.is_(None),
        or_(StepUpThrottle.locked_until.is_(None), StepUpThrottle.locked_until <= now),
        or_(StepUpThrottle.last_failed_at.is_(None), StepUpThrottle.last_failed_at < horizon),
    )
    keys = session.execute(
        select(StepUpThrottle.subject, StepUpThrottle.scope).where(past_use).limit(limit)
    ).all()
    purged = 0
    for subject, scope in keys:
        purged += rowcount(
            session.execute(
                delete(StepUpThrottle).where(
                    StepUpThrottle.subject == subject, StepUpThrottle.scope == scope, past_use
                )
            )
        )
    return purged
