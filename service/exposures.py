"""Exposures: which accounts are in which leak, created by ingest and by the watch list."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, select, text, update
from sqlalchemy.orm import Session

from service.models import Account, Exposure, ExposureKind, ExposureState, LeakEntry
from service.notices import create_leak_warnings

LOOKUP_BATCH = 5000  # ids per IN list: stays under SQLite's bound-parameter limit
# The Core table: an executemany UPDATE by (account, leak), which ORM bulk update cannot do.
EXPOSURE_TABLE = Exposure.metadata.tables[Exposure.__tablename__]


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
    """Open an exposure and queue one warning per account not yet exposed to the leak.

    Idempotent (unique per account and leak) and safe against a concurrent writer: a row
    another transaction inserted first is skipped, not doubled. Does not commit.
    """
    if not candidates:
        return ExposureOutcome(0, 0)
    unique = list({c.account_id: c for c in reversed(candidates)}.values())[::-1]
    if session.get_bind().dialect.name == "postgresql":
        flagged = _insert_postgres(session, leak_id, unique, now=now)
    else:
        flagged = _insert_sqlite(session, leak_id, unique, now=now)
    _add_leaked_passwords(session, leak_id, candidates, skip=set(flagged))
    notices = create_leak_warnings(session, flagged, leak_id=leak_id, now=now)
    return ExposureOutcome(len(flagged), notices)


# One statement for any number of rows: a multi-row VALUES list per batch (SQLAlchemy's
# insertmanyvalues) was a third of an ingest's time in the profile, mostly spent by the
# driver splitting the huge statements it builds.
_PG_INSERT_EXPOSURES = text(
    """
    INSERT INTO exposure (account_id, leak_id, kind, password_hash, state, created_at)
    SELECT t.account_id, :leak_id, t.kind, t.password_hash, :state, :now
    FROM unnest(CAST(:account_ids AS bigint[]), CAST(:kinds AS varchar[]),
                CAST(:hashes AS varchar[])) AS t(account_id, kind, password_hash)
    ORDER BY t.account_id
    ON CONFLICT DO NOTHING
    RETURNING account_id
    """
)


def _insert_postgres(
    session: Session, leak_id: int, candidates: Sequence[NewExposure], *, now: datetime
) -> list[int]:
    return list(
        session.scalars(
            _PG_INSERT_EXPOSURES,
            {
                "leak_id": leak_id,
                "state": ExposureState.OPEN.value,
                "now": now,
                "account_ids": [c.account_id for c in candidates],
                "kinds": [c.kind.value for c in candidates],
                "hashes": [c.password_hash for c in candidates],
            },
        )
    )


def _insert_sqlite(
    session: Session, leak_id: int, candidates: Sequence[NewExposure], *, now: datetime
) -> list[int]:
    # SQLite has one writer at a time: what this transaction reads stays true until commit,
    # so a plain executemany of the rows not there yet is exact.
    ids = [c.account_id for c in candidates]
    existing: set[int] = set()
    for start in range(0, len(ids), LOOKUP_BATCH):
        existing.update(
            session.scalars(
                select(Exposure.account_id).where(
                    Exposure.leak_id == leak_id,
                    Exposure.account_id.in_(ids[start : start + LOOKUP_BATCH]),
                )
            )
        )
    new = [c for c in candidates if c.account_id not in existing]
    if new:
        session.execute(
            EXPOSURE_TABLE.insert(),
            [
                {
                    "account_id": c.account_id,
                    "leak_id": leak_id,
                    "kind": c.kind,
                    "password_hash": c.password_hash,
                    "state": ExposureState.OPEN,
                    "created_at": now,
                }
                for c in new
            ],
        )
    return [c.account_id for c in new]


def _add_leaked_passwords(
    session: Session, leak_id: int, candidates: Sequence[NewExposure], *, skip: set[int]
) -> None:
    """Give an exposure opened without a password the one a later record of the leak holds.

    Without this, whether a credential is kept would depend on which file, or which chunk,
    named the address first.
    """
    rows = [
        {"account": c.account_id, "hash": c.password_hash}
        for c in candidates
        if c.password_hash is not None and c.account_id not in skip
    ]
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


def flag_from_watchlist(
    session: Session, account_ids: Sequence[int], *, now: datetime
) -> ExposureOutcome:
    """Expose accounts (just created, or given a new address) whose address is in any leak.

    One set-based read of the watch list for all ``account_ids``. Does not commit.
    """
    pairs: list[tuple[int, int]] = []
    for start in range(0, len(account_ids), LOOKUP_BATCH):
        pairs.extend(
            (account_id, leak_id)
            for account_id, leak_id in session.execute(
                select(Account.id, LeakEntry.leak_id)
                .join(LeakEntry, LeakEntry.email_key == Account.email_key)
                .where(Account.id.in_(account_ids[start : start + LOOKUP_BATCH]))
            )
        )
    by_leak: dict[int, list[NewExposure]] = {}
    for account_id, leak_id in pairs:
        by_leak.setdefault(leak_id, []).append(NewExposure(account_id))
    flagged = notices = 0
    for leak_id, candidates in sorted(by_leak.items()):
        outcome = record_exposures(session, leak_id, candidates, now=now)
        flagged += outcome.flagged
        notices += outcome.notices
    return ExposureOutcome(flagged, notices)
