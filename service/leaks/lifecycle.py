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

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from service.audit import AuditRow, record_events
from service.db import bulk, rowcount
from service.errors import LeakguardError, NotFound
from service.events.emit import record_risk_level
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
    NoticeState,
)

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
    check_reason(reason)  # refused before the look-ups; end_exposures stores it masked
    account_id = _account_id(session, external_id)
    leak = find_leak(session, slug)
    [ended] = end_exposures(
        session,
        Ending(leak.id, slug, action),
        [(account_id, external_id)],
        reason=reason,
        actor=actor,
        now=now,
    )
    return ended


@dataclass(frozen=True, slots=True)
class Ending:
    """What support ends: the exposures to leak ``leak_id`` (slug ``slug``), by ``action``
    (a key of SUPPORT_ENDINGS)."""

    leak_id: int
    slug: str
    action: str


def end_exposures(
    session: Session,
    ending: Ending,
    accounts: Sequence[tuple[int, str]],
    *,
    reason: str,
    actor: str,
    now: datetime,
) -> list[ExposureView]:
    """End the open exposure to the leak of each of ``accounts`` ((account id, external
    id), in the order they are to end) as ``end_exposure`` ends one, and return their
    views in that order.

    Set-based: a handful of statements for any number of accounts (a bulk verdict of
    5,000 ran 5,000 times the statements of one and outlived the worker timeout), with the
    same rows as ending them one by one in that order: each exposure's fields, the unsent
    warnings cancelled, each account's security events (``record_risk_level``, as one by
    one, one account's after another's), one audit row each in ``accounts`` order, saying
    how many of its warnings were cancelled. Does not commit.

    Raises ValidationFailed (reason), NoOpenExposure (naming the first account, in order,
    without an open exposure to the leak, even one another transaction ended after the
    caller read it: its lock is waited for); nothing is written then.
    """
    state, cause = SUPPORT_ENDINGS[ending.action]
    reason = check_reason(reason)
    if not accounts:
        return []
    account_ids = [account_id for account_id, _ in accounts]
    # Locked in id order, as one by one would lock them one at a time: a transaction that
    # ended one meanwhile is waited for, and its exposure then no longer reads as open.
    locked: dict[int, tuple[int, ExposureKind, datetime]] = {}
    for condition in bulk.in_batches(session, Exposure.account_id, account_ids):
        locked.update(
            (row.account_id, (row.id, row.kind, row.created_at))
            for row in session.execute(
                select(Exposure.id, Exposure.account_id, Exposure.kind, Exposure.created_at)
                .where(
                    condition,
                    Exposure.leak_id == ending.leak_id,
                    Exposure.state == ExposureState.OPEN,
                )
                .order_by(Exposure.id)
                .with_for_update()
            )
        )
    for account_id, external_id in accounts:
        if account_id not in locked:
            raise NoOpenExposure(
                f"account {external_id!r} has no open exposure to leak {ending.slug!r}"
            )
    exposure_ids = [locked[account_id][0] for account_id in account_ids]
    for condition in bulk.in_batches(session, Exposure.id, exposure_ids):
        session.execute(
            update(Exposure)
            .where(condition)
            .values(
                state=state,
                end_cause=cause,
                resolved_at=now,
                resolved_by=actor,
                resolution=reason,
            ),
            # Exposures the caller's session holds read as ended, as when ended one by one.
            execution_options={"synchronize_session": "fetch"},
        )
    record_risk_level(session, account_ids, reason=cause.value, now=now)
    cancelled: Counter[int] = Counter()
    if state is ExposureState.DISMISSED:
        cancelled = cancel_unsent_warnings(session, ending.leak_id, account_ids)
    record_events(
        session,
        [
            AuditRow(
                f"exposure.{state.value}",
                f"account:{external_id}",
                {"leak": ending.slug, "reason": reason, "warnings_cancelled": cancelled[a]},
            )
            for a, external_id in accounts
        ],
        actor=actor,
        now=now,
    )
    return [
        ExposureView(
            leak=ending.slug,
            kind=locked[account_id][1],
            state=state,
            since=locked[account_id][2],
            ended_at=now,
            end_cause=cause,
            ended_by=actor,
            reason=reason,
        )
        for account_id in account_ids
    ]


def cancel_unsent_warnings(
    session: Session, leak_id: int, account_ids: Sequence[int]
) -> Counter[int]:
    """Cancel the accounts' warnings of the leak not sent yet (pending, queued, failed);
    return how many each account had. Does not commit.

    One UPDATE ... RETURNING per ``bulk.in_batches`` batch: the executemany by (account,
    leak) the other endings use cannot say which rows it changed, and an audit row says
    how many of its account's warnings a dismissal cancelled.
    """
    cancelled: Counter[int] = Counter()
    for condition in bulk.in_batches(session, NOTICE_TABLE.c.account_id, list(account_ids)):
        cancelled.update(
            session.scalars(
                update(NOTICE_TABLE)
                .where(condition, NOTICE_TABLE.c.leak_id == leak_id, UNSENT_WARNING)
                .values(state=NoticeState.CANCELLED.value, lease_until=None, not_before=None)
                .returning(NOTICE_TABLE.c.account_id)
            )
        )
    return cancelled


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
