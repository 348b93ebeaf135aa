"""The exposure lifecycle for support: list an account's exposures, resolve or dismiss one,
and expire the ones past their time to live.

States (``ExposureState``): ``open`` until it ends; ``resolved`` when the account's address
changed (cause ``address_changed``, service/accounts.py) or support resolved it with a
reason (``support_resolved``); ``dismissed`` when support found it a false match
(``dismissed``); ``expired`` after ``LEAKGUARD_EXPOSURE_TTL_DAYS`` (``expired``, by
``leakguard housekeeping``); ``retracted`` when its leak was (service/leaks/retract.py).
Only ``open`` counts in the risk check. Every support change is an audit event, with the
reason's addresses masked.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from service.audit import record_event
from service.db import rowcount
from service.errors import LeakguardError, NotFound
from service.events.emit import record_risk_level, record_risk_lowered
from service.events.types import LoweredBecause
from service.leaks.catalogue import find_leak
from service.leaks.exposures import NOTICE_TABLE, UNSENT_WARNING
from service.leaks.retract import check_reason
from service.models import (
    Account,
    Exposure,
    ExposureEndCause,
    ExposureKind,
    ExposureState,
    Leak,
    Notice,
    NoticeKind,
    NoticeState,
)
from service.notices.outbox import UNSENT

# The state and cause each support action ends an exposure with.
SUPPORT_ENDINGS = {
    "resolve": (ExposureState.RESOLVED, ExposureEndCause.SUPPORT_RESOLVED),
    "dismiss": (ExposureState.DISMISSED, ExposureEndCause.DISMISSED),
}


class NoOpenExposure(LeakguardError):
    status = 409
    code = "no_open_exposure"
    title = "The account has no open exposure to this leak"


@dataclass(frozen=True, slots=True)
class ExposureView:
    """One exposure of an account, as support and the login service see it."""

    leak: str
    kind: ExposureKind
    state: ExposureState
    since: datetime  # when it was opened
    ended_at: datetime | None
    end_cause: ExposureEndCause | None
    ended_by: str | None
    reason: str | None  # addresses masked

    def to_json(self) -> dict[str, Any]:
        return {
            "leak": self.leak,
            "kind": self.kind.value,
            "state": self.state.value,
            "since": self.since.isoformat(),
            "ended_at": self.ended_at.isoformat() if self.ended_at else None,
            "end_cause": self.end_cause.value if self.end_cause else None,
            "ended_by": self.ended_by,
            "reason": self.reason,
        }


def _account_id(session: Session, external_id: str) -> int:
    account_id = session.scalar(select(Account.id).where(Account.external_id == external_id))
    if account_id is None:
        raise NotFound(f"no account with external_id {external_id!r}")
    return account_id


def list_exposures(session: Session, external_id: str) -> list[ExposureView]:
    """Every exposure of the account, oldest first; raise NotFound for an unknown account."""
    account_id = _account_id(session, external_id)
    rows = session.execute(
        select(Exposure, Leak.slug)
        .join(Leak, Leak.id == Exposure.leak_id)
        .where(Exposure.account_id == account_id)
        .order_by(Exposure.created_at, Exposure.id)
    ).all()
    return [_view(exposure, slug) for exposure, slug in rows]


def end_exposure(
    session: Session,
    external_id: str,
    slug: str,
    *,
    action: str,
    reason: str,
    actor: str,
    now: datetime,
) -> ExposureView:
    """Support ends the account's open exposure to leak ``slug``: ``action`` is "resolve"
    (``resolved``, cause ``support_resolved``) or "dismiss" (a false match: ``dismissed``,
    and its unsent warning is cancelled: what it would say is not true). Audited
    (``exposure.resolved`` / ``exposure.dismissed``). Does not commit.

    Raises ValidationFailed (empty or over-long reason), NotFound (unknown account or
    leak), NoOpenExposure; nothing changes then.
    """
    state, cause = SUPPORT_ENDINGS[action]
    reason = check_reason(reason)
    account_id = _account_id(session, external_id)
    leak = find_leak(session, slug)
    exposure = session.scalars(
        select(Exposure)
        .where(
            Exposure.account_id == account_id,
            Exposure.leak_id == leak.id,
            Exposure.state == ExposureState.OPEN,
        )
        .with_for_update()
    ).one_or_none()
    if exposure is None:
        raise NoOpenExposure(f"account {external_id!r} has no open exposure to leak {slug!r}")
    exposure.state, exposure.end_cause = state, cause
    exposure.resolved_at, exposure.resolved_by, exposure.resolution = now, actor, reason
    session.flush()  # the risk level below reads the exposure as ended
    record_risk_lowered(session, account_id, reason=cause.value, now=now)
    cancelled = 0
    if state is ExposureState.DISMISSED:
        cancelled = rowcount(
            session.execute(
                update(Notice)
                .where(
                    Notice.account_id == account_id,
                    Notice.leak_id == leak.id,
                    Notice.kind == NoticeKind.LEAK_WARNING,
                    Notice.state.in_(UNSENT),
                )
                .values(state=NoticeState.CANCELLED, lease_until=None, not_before=None)
            )
        )
    record_event(
        session,
        actor=actor,
        action=f"exposure.{state.value}",
        target=f"account:{external_id}",
        detail={"leak": slug, "reason": reason, "warnings_cancelled": cancelled},
        now=now,
    )
    session.flush()
    return _view(exposure, slug)


def expire_exposures(session: Session, *, ttl: timedelta, now: datetime, limit: int) -> int:
    """Expire up to ``limit`` open exposures opened more than ``ttl`` ago, cancelling their
    unsent warnings (months old, no longer news); return how many. Does not commit."""
    ids = list(
        session.scalars(
            select(Exposure.id)
            .where(Exposure.state == ExposureState.OPEN, Exposure.created_at < now - ttl)
            .order_by(Exposure.created_at)
            .limit(limit)
        )
    )
    if not ids:
        return 0
    pairs = session.execute(
        select(Exposure.account_id, Exposure.leak_id).where(Exposure.id.in_(ids))
    ).all()
    ended = rowcount(
        session.execute(
            update(Exposure)
            .where(Exposure.id.in_(ids), Exposure.state == ExposureState.OPEN)
            .values(
                state=ExposureState.EXPIRED,
                end_cause=ExposureEndCause.EXPIRED,
                resolved_at=now,
                resolved_by="housekeeping",
                resolution=f"open for more than {ttl.days} days",
            ),
            execution_options={"synchronize_session": False},
        )
    )
    session.execute(
        update(NOTICE_TABLE)
        .where(
            NOTICE_TABLE.c.account_id == bindparam("account"),
            NOTICE_TABLE.c.leak_id == bindparam("leak"),
            UNSENT_WARNING,
        )
        .values(state=NoticeState.CANCELLED.value, lease_until=None, not_before=None),
        [{"account": account_id, "leak": leak_id} for account_id, leak_id in pairs],
    )
    accounts = sorted({account_id for account_id, _ in pairs})
    record_risk_level(session, accounts, reason=LoweredBecause.EXPIRED, now=now)
    return ended


def _view(exposure: Exposure, slug: str) -> ExposureView:
    return ExposureView(
        leak=slug,
        kind=exposure.kind,
        state=exposure.state,
        since=exposure.created_at,
        ended_at=exposure.resolved_at,
        end_cause=exposure.end_cause,
        ended_by=exposure.resolved_by,
        reason=exposure.resolution,
    )
