"""Exposures: which accounts are in which leak, created by ingest and by the watch list."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import Table, and_, bindparam, or_, select, update
from sqlalchemy.orm import Session

from service.audit import record_event
from service.db import bulk, rowcount
from service.events.emit import Flags, policy_of, record_flags, record_risk_level
from service.events.types import LoweredBecause
from service.models import (
    Account,
    Exposure,
    ExposureEndCause,
    ExposureKind,
    ExposureState,
    Leak,
    LeakEntry,
    Notice,
    NoticeKind,
    NoticeState,
)
from service.notices.outbox import UNSENT, create_leak_warnings
from service.stepup.devices import end_trust
from service.stepup.services import drop_pending_enrolments

# The Core table: an executemany UPDATE by (account, leak), which ORM bulk update cannot do.
EXPOSURE_TABLE = cast(Table, Exposure.__table__)
NOTICE_TABLE = cast(Table, Notice.__table__)
# A warning not sent yet, spelled without IN: an expanding IN cannot go in an executemany.
UNSENT_WARNING = and_(
    NOTICE_TABLE.c.kind == NoticeKind.LEAK_WARNING.value,
    or_(*(NOTICE_TABLE.c.state == state.value for state in UNSENT)),
)


@dataclass(frozen=True, slots=True)
class NewExposure:
    account_id: int
    kind: ExposureKind = ExposureKind.EMAIL
    password_hash: str | None = None


@dataclass(frozen=True, slots=True)
class ExposureOutcome:
    flagged: int  # accounts newly exposed to this leak
    notices: int  # warnings newly put in the outbox


def record_exposures(
    session: Session, leak_id: int, candidates: Sequence[NewExposure], *, now: datetime
) -> ExposureOutcome:
    """Open an exposure and queue one warning per account not yet exposed to the leak, and
    record the security events of the accounts whose risk so rose.

    Idempotent (unique per account and leak) and safe against a concurrent writer: a row
    another transaction inserted first is skipped, not doubled. Does not commit.
    """
    outcome, flags = _open_exposures(session, leak_id, candidates, now=now)
    record_flags(session, [flags], now=now)
    return outcome


def late_accounts(
    session: Session, leak_id: int, *, since: datetime, accounts_xmin: int | None = None
) -> list[int]:
    """Accounts created or given a new address since ``since`` whose key is in the leak's
    watch list and that have no exposure to it, in id order.

    An ingest looks up only the keys its account filter, built when the run began, lets
    through; an account that got its address later and read the watch list before the
    chunk with its key committed is found by nobody else. One pass over the accounts.
    ``accounts_xmin`` (PostgreSQL: ``bulk.snapshot_xmin`` when the file was opened, before
    any run's filter) leaves out the accounts whose row is older: every filter held them.
    """
    found = bulk.late_accounts(session, leak_id, since=since, accounts_xmin=accounts_xmin)
    if found is not None:
        return found
    return list(
        session.scalars(
            select(Account.id)
            .join(LeakEntry, LeakEntry.email_key == Account.email_key)
            .where(
                LeakEntry.leak_id == leak_id,
                Account.updated_at >= since,
                ~select(Exposure.id)
                .where(Exposure.account_id == Account.id, Exposure.leak_id == leak_id)
                .exists(),
            )
            .order_by(Account.id)
        )
    )


def _open_exposures(
    session: Session, leak_id: int, candidates: Sequence[NewExposure], *, now: datetime
) -> tuple[ExposureOutcome, Flags]:
    """``record_exposures`` but its events: what they are to say comes back as ``Flags``."""
    if not candidates:
        return ExposureOutcome(0, 0), Flags(leak_id, [], [])
    unique = list({c.account_id: c for c in reversed(candidates)}.values())[::-1]
    flagged = bulk.insert_exposures(
        session,
        EXPOSURE_TABLE,
        [(c.account_id, c.kind.value, c.password_hash) for c in unique],
        leak_id=leak_id,
        state=ExposureState.OPEN.value,
        now=now,
    )
    new = set(flagged)
    upgraded = _add_leaked_passwords(session, leak_id, candidates, skip=new)
    drop_pending_enrolments(session, flagged)
    # A new leak of the address (or its password) is what a trusted device was not
    # vouched against: every trust of those accounts ends.
    end_trust(session, flagged + [c.account_id for c in candidates if c.password_hash])
    notices = create_leak_warnings(session, flagged, leak_id=leak_id, now=now)
    credential = [
        c.account_id for c in unique if c.password_hash is not None and c.account_id in new
    ]
    flags = Flags(leak_id, [*flagged, *upgraded], [*credential, *upgraded])
    return ExposureOutcome(len(flagged), notices), flags


def _add_leaked_passwords(
    session: Session, leak_id: int, candidates: Sequence[NewExposure], *, skip: set[int]
) -> list[int]:
    """Give an exposure opened without a password the one a later record of the leak holds;
    return the accounts whose open exposure so became a credential one (their risk rises).

    Without this, whether a credential is kept would depend on which file, or which chunk,
    named the address first.
    """
    rows = [
        {"account": c.account_id, "hash": c.password_hash}
        for c in candidates
        if c.password_hash is not None and c.account_id not in skip
    ]
    upgraded: list[int] = []
    if rows and policy_of(session).receivers:
        # Read before the update: an executemany UPDATE cannot say which rows it changed.
        accounts = [row["account"] for row in rows]
        for condition in bulk.in_batches(session, Exposure.account_id, accounts):
            upgraded.extend(
                session.scalars(
                    select(Exposure.account_id).where(
                        condition,
                        Exposure.leak_id == leak_id,
                        Exposure.state == ExposureState.OPEN,
                        Exposure.password_hash.is_(None),
                    )
                )
            )
    if rows:
        session.execute(
            update(EXPOSURE_TABLE)
            .where(
                EXPOSURE_TABLE.c.account_id == bindparam("account"),
                EXPOSURE_TABLE.c.leak_id == leak_id,
                EXPOSURE_TABLE.c.password_hash.is_(None),
            )
            .values(kind=ExposureKind.CREDENTIAL, password_hash=bindparam("hash")),
            rows,
        )
    return sorted(set(upgraded))


def flag_from_watchlist(
    session: Session,
    account_ids: Sequence[int],
    *,
    now: datetime,
    reopened: Sequence[tuple[int, int]] = (),
) -> ExposureOutcome:
    """Expose accounts (just created, or given a new address) whose address is in any leak.

    One set-based read of the watch list for all ``account_ids``. ``reopened``: (account,
    leak) pairs whose ended exposure ``end_old_address_exposures`` opened again; their
    risk level is told with the others' (no row or warning is added for them). Does not
    commit.
    """
    pairs: list[tuple[int, int]] = []
    for condition in bulk.in_batches(session, Account.id, account_ids):
        pairs.extend(
            (account_id, leak_id)
            for account_id, leak_id in session.execute(
                select(Account.id, LeakEntry.leak_id)
                .join(LeakEntry, LeakEntry.email_key == Account.email_key)
                # A retracted leak's entries may outlive it for the minutes their removal
                # takes (service/leaks/retract.py): they flag nobody.
                .join(Leak, and_(Leak.id == LeakEntry.leak_id, Leak.retracted_at.is_(None)))
                .where(condition)
            )
        )
    by_leak: dict[int, list[NewExposure]] = {}
    for account_id, leak_id in pairs:
        by_leak.setdefault(leak_id, []).append(NewExposure(account_id))
    flagged = notices = 0
    every: list[Flags] = []
    again: dict[int, list[int]] = {}
    for account_id, leak_id in reopened:
        again.setdefault(leak_id, []).append(account_id)
    for leak_id, candidates in sorted(by_leak.items()):
        outcome, flags = _open_exposures(session, leak_id, candidates, now=now)
        flagged += outcome.flagged
        notices += outcome.notices
        every.append(flags)
        if leak_id in again:
            every.append(Flags(leak_id, again[leak_id], []))
    # One recording for every leak: an account's events are decided once, under one lock.
    record_flags(session, every, now=now)
    return ExposureOutcome(flagged, notices)


@dataclass(frozen=True, slots=True)
class EndedByAddressChange:
    exposures_ended: int  # open exposures of the old address, now resolved
    warnings_cancelled: int  # their warnings not sent yet, never mailed to the new address
    reopened: tuple[tuple[int, int], ...] = ()  # (account, leak) of ended ones opened again


def end_old_address_exposures(
    session: Session, account_ids: Sequence[int], *, actor: str, now: datetime
) -> EndedByAddressChange:
    """End what the accounts' previous addresses were exposed to; call once the new
    address (and its ``email_key``) is stored, before ``flag_from_watchlist``.

    An exposure belongs to the address it was matched on. Each open exposure of these
    accounts ends (``resolved``, cause ``address_changed``) and its unsent warning is
    cancelled, except in a leak the *new* address is in too: that one stays open, now the
    new address's (kind ``email``: the old address's leaked password is not the new one's).

    An ended exposure of a leak the new address is in (a revert, or a move back) is
    re-opened in place, kind ``email``: the row and every warning row of it stay, so the
    history is kept (what it was and how it had ended goes to the audit trail,
    ``exposure.reopened``) and an address warned about the leak already is not warned
    again. Only a warning that was cancelled unsent (the address moved before it went) is
    put back to pending: that address was never told. The re-opened pairs come back in
    ``reopened``, for ``flag_from_watchlist`` to raise their risk level with the leak as
    the reason. Does not commit.
    """
    rows: list[tuple[int, int, int, ExposureState]] = []
    for condition in bulk.in_batches(session, Exposure.account_id, list(account_ids)):
        rows.extend(
            (row.id, row.account_id, row.leak_id, row.state)
            for row in session.execute(
                select(Exposure.id, Exposure.account_id, Exposure.leak_id, Exposure.state).where(
                    condition
                )
            )
        )
    if not rows:
        return EndedByAddressChange(0, 0)
    still: set[tuple[int, int]] = set()
    for condition in bulk.in_batches(session, Account.id, list(account_ids)):
        still.update(
            (account_id, leak_id)
            for account_id, leak_id in session.execute(
                select(Account.id, LeakEntry.leak_id)
                .join(LeakEntry, LeakEntry.email_key == Account.email_key)
                .join(Leak, and_(Leak.id == LeakEntry.leak_id, Leak.retracted_at.is_(None)))
                .where(condition)
            )
        )
    ended = [
        (i, a, lk) for i, a, lk, st in rows if st is ExposureState.OPEN and (a, lk) not in still
    ]
    kept = [i for i, a, lk, st in rows if st is ExposureState.OPEN and (a, lk) in still]
    reopen = [
        (i, a, lk) for i, a, lk, st in rows if st is not ExposureState.OPEN and (a, lk) in still
    ]
    for condition in bulk.in_batches(session, Exposure.id, [i for i, _, _ in ended]):
        session.execute(
            update(Exposure)
            .where(condition)
            .values(
                state=ExposureState.RESOLVED,
                end_cause=ExposureEndCause.ADDRESS_CHANGED,
                resolved_at=now,
                resolved_by=actor,
                resolution="the account's address changed",
            ),
            execution_options={"synchronize_session": False},
        )
    for condition in bulk.in_batches(session, Exposure.id, kept):
        session.execute(
            update(Exposure).where(condition).values(kind=ExposureKind.EMAIL, password_hash=None),
            execution_options={"synchronize_session": False},
        )
    cancelled = 0
    if ended:
        cancelled = rowcount(
            session.execute(
                update(NOTICE_TABLE)
                .where(
                    NOTICE_TABLE.c.account_id == bindparam("account"),
                    NOTICE_TABLE.c.leak_id == bindparam("leak"),
                    UNSENT_WARNING,
                )
                .values(state=NoticeState.CANCELLED.value, lease_until=None, not_before=None),
                [{"account": a, "leak": lk} for _, a, lk in ended],
            )
        )
    # The login service hears of each account whose risk level so fell (a credential
    # exposure kept as the new address's email one falls from HIGH to MEDIUM); a rise by a
    # re-opened exposure is told by ``flag_from_watchlist``, with its leak as the reason.
    record_risk_level(session, account_ids, reason=LoweredBecause.ADDRESS_CHANGED, now=now)
    reopened = _reopen(session, reopen, actor=actor, now=now)
    return EndedByAddressChange(len(ended), cancelled, reopened)


def _reopen(
    session: Session, rows: Sequence[tuple[int, int, int]], *, actor: str, now: datetime
) -> tuple[tuple[int, int], ...]:
    """Open again the ended exposures ``rows`` (id, account, leak), keeping their rows and
    their warnings; audit what each was. Return the (account, leak) pairs."""
    if not rows:
        return ()
    ids = [i for i, _, _ in rows]
    before = {
        row.id: row
        for condition in bulk.in_batches(session, Exposure.id, ids)
        for row in session.execute(
            select(
                Exposure.id,
                Exposure.kind,
                Exposure.state,
                Exposure.end_cause,
                Exposure.resolved_at,
                Exposure.resolved_by,
                Exposure.resolution,
                Account.external_id,
                Leak.slug,
            )
            .join(Account, Account.id == Exposure.account_id)
            .join(Leak, Leak.id == Exposure.leak_id)
            .where(condition)
        )
    }
    for condition in bulk.in_batches(session, Exposure.id, ids):
        session.execute(
            update(Exposure)
            .where(condition)
            .values(
                state=ExposureState.OPEN,
                kind=ExposureKind.EMAIL,
                password_hash=None,
                end_cause=None,
                resolved_at=None,
                resolved_by=None,
                resolution=None,
            ),
            execution_options={"synchronize_session": False},
        )
    # A warning cancelled unsent never reached anyone: the address now holding the exposure
    # gets it. A sent one (or one on its way, or failed and retried by the relay) stays.
    session.execute(
        update(NOTICE_TABLE)
        .where(
            NOTICE_TABLE.c.account_id == bindparam("account"),
            NOTICE_TABLE.c.leak_id == bindparam("leak"),
            NOTICE_TABLE.c.kind == NoticeKind.LEAK_WARNING.value,
            NOTICE_TABLE.c.state == NoticeState.CANCELLED.value,
        )
        .values(
            state=NoticeState.PENDING.value,
            attempts=0,
            lease_until=None,
            not_before=None,
            last_error=None,
        ),
        [{"account": a, "leak": lk} for _, a, lk in rows],
    )
    for row in before.values():
        record_event(
            session,
            actor=actor,
            action="exposure.reopened",
            target=f"account:{row.external_id}",
            detail={
                "leak": row.slug,
                "cause": "address_changed",
                "was": {
                    "state": row.state.value,
                    "kind": row.kind.value,
                    "end_cause": row.end_cause.value if row.end_cause else None,
                    "ended_at": row.resolved_at.isoformat() if row.resolved_at else None,
                    "ended_by": row.resolved_by,
                    "reason": row.resolution,
                },
            },
            now=now,
        )
    return tuple(sorted({(a, lk) for _, a, lk in rows}))
