"""Exposures: which accounts are in which leak, created by ingest and by the watch list."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import Table, and_, bindparam, select, update
from sqlalchemy.orm import Session

from service.db import bulk
from service.events.emit import Flags, policy_of, record_flags
from service.models import Account, Exposure, ExposureKind, ExposureState, Leak, LeakEntry
from service.notices.outbox import create_leak_warnings
from service.stepup.services import drop_pending_enrolments

# The Core table: an executemany UPDATE by (account, leak), which ORM bulk update cannot do.
EXPOSURE_TABLE = cast(Table, Exposure.__table__)


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
    session: Session, account_ids: Sequence[int], *, now: datetime
) -> ExposureOutcome:
    """Expose accounts (just created, or given a new address) whose address is in any leak.

    One set-based read of the watch list for all ``account_ids``. Does not commit.
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
    for leak_id, candidates in sorted(by_leak.items()):
        outcome, flags = _open_exposures(session, leak_id, candidates, now=now)
        flagged += outcome.flagged
        notices += outcome.notices
        every.append(flags)
    # One recording for every leak: an account's events are decided once, under one lock.
    record_flags(session, every, now=now)
    return ExposureOutcome(flagged, notices)
