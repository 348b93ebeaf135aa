"""Retract a leak ingested by mistake (a typo'd slug, the wrong file): undo what it did.

What can be undone is: its open exposures end (``retracted``), so the risk check stops
asking those people to step up for it; its warnings not yet sent are cancelled; its watch
list goes, so no account is flagged for it later. What cannot is said plainly: warnings
already sent stay sent, and the report counts them. The leak's row, counters and files stay
(the slug is taken for good, and ``leaks show`` tells what happened), with an audit event.

The watch list of one leak can hold hundreds of millions of rows and has no index of its
own (``LeakEntry``: its key starts with the address hash), so it is removed in batches,
walking the primary key in order (keyset pagination: one pass over the table in all), one
transaction per batch. The leak is marked retracted first, in one transaction with its
exposures and warnings; from then on no ingest chunk, relay or account change adds to it
(they check the mark), and a retraction killed mid-way finishes when run again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from service.addresses import mask_addresses
from service.audit import record_event
from service.db import Database, bulk, rowcount
from service.errors import ValidationFailed
from service.events.emit import policy_of, record_risk_level
from service.events.types import LoweredBecause
from service.leaks.catalogue import find_leak
from service.models import (
    Exposure,
    ExposureEndCause,
    ExposureState,
    Leak,
    LeakEntry,
    LeakFile,
    Notice,
    NoticeState,
)
from service.notices.outbox import cancel_leak_warnings, count_unsent_warnings

ENTRY_BATCH = 50_000  # watch-list rows per transaction
MAX_REASON_CHARS = 500


@dataclass(frozen=True, slots=True)
class RetractionReport:
    """What a retraction did (or, dry, would do). Counts are this run's."""

    leak: str
    retracted_at: datetime | None  # None: a dry run of a leak not retracted yet
    already_retracted: bool  # retracted by an earlier run
    dry_run: bool
    exposures_ended: int
    warnings_cancelled: int
    warnings_sent: int  # had gone out already: cannot be unsent
    warnings_sending: int  # in a worker's hands right now: they may still go out
    entries_removed: int
    # Keys of files not ingested to the end (interrupted, or cut short by the retraction),
    # waiting in their stages: never in the watch list, dropped with the stages.
    staged_keys_dropped: int = 0

    @property
    def changed_nothing(self) -> bool:
        return not (
            self.exposures_ended
            or self.warnings_cancelled
            or self.entries_removed
            or self.staged_keys_dropped
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "leak": self.leak,
            "retracted_at": self.retracted_at.isoformat() if self.retracted_at else None,
            "already_retracted": self.already_retracted,
            "dry_run": self.dry_run,
            "exposures_ended": self.exposures_ended,
            "warnings_cancelled": self.warnings_cancelled,
            "warnings_sent": self.warnings_sent,
            "warnings_sending": self.warnings_sending,
            "entries_removed": self.entries_removed,
            "staged_keys_dropped": self.staged_keys_dropped,
        }

    def summary(self) -> str:
        if self.already_retracted and self.changed_nothing:
            when = f"{self.retracted_at:%Y-%m-%d %H:%M} UTC" if self.retracted_at else "before"
            return f"leak {self.leak} was already retracted on {when}; nothing changed"
        head = (
            f"dry run, nothing changed: retracting leak {self.leak} would end"
            if self.dry_run
            else f"leak {self.leak} retracted: ended"
        )
        entries = "watch-list entries to remove" if self.dry_run else "watch-list entries removed"
        cancelled = "would be cancelled" if self.dry_run else "cancelled"
        text = (
            f"{head} {self.exposures_ended} open exposures; {self.warnings_cancelled} unsent "
            f"warnings {cancelled}; {self.entries_removed} {entries}"
        )
        if self.staged_keys_dropped:
            dropped = "to drop" if self.dry_run else "dropped"
            text += (
                f"; {self.staged_keys_dropped} keys staged by unfinished files {dropped} "
                "(never in the watch list)"
            )
        if self.warnings_sent:
            text += f"\n{self.warnings_sent} warnings had already been sent: they cannot be unsent"
        if self.warnings_sending:
            text += (
                f"\n{self.warnings_sending} warnings are being sent right now and may still go out"
            )
        return text


def check_reason(reason: str) -> str:
    """The reason as stored: trimmed, addresses masked; raise ValidationFailed if empty."""
    text = " ".join(reason.split())
    if not text or len(text) > MAX_REASON_CHARS:
        raise ValidationFailed(f"the reason must say why, in 1-{MAX_REASON_CHARS} characters")
    return mask_addresses(text)


def retract_leak(
    db: Database,
    slug: str,
    *,
    reason: str,
    actor: str,
    now: datetime,
    dry_run: bool = False,
    batch: int = ENTRY_BATCH,
) -> RetractionReport:
    """Retract the leak ``slug``; commits (one transaction, then one per watch-list batch).

    Idempotent: a second run changes nothing and says so; a run killed part-way through
    the watch list finishes it. ``dry_run`` counts and changes nothing. Raises NotFound,
    ValidationFailed for an empty reason.
    """
    reason = check_reason(reason)
    if dry_run:
        with db.read_session() as session:
            return _dry_run(session, slug)
    with db.transaction() as session:
        first = mark_retracted(session, slug, reason=reason, actor=actor, now=now)
    leak_id, removed, after = first.leak_id, 0, None
    with db.transaction() as session:
        staged = drop_staged_keys(session, leak_id)
    while True:
        with db.transaction() as session:
            count, after = remove_watch_entries(session, leak_id, after=after, limit=batch)
        removed += count
        if after is None:
            break
    # Whatever an account change or ingest chunk added while the mark was being written
    # (on SQLite a chunk refused by the mark may have created its file's stage, empty).
    with db.transaction() as session:
        late = end_leak_effects(session, leak_id, actor=actor, reason=reason, now=now)
        staged += drop_staged_keys(session, leak_id)
    return RetractionReport(
        leak=slug,
        retracted_at=first.retracted_at,
        already_retracted=first.already_retracted,
        dry_run=False,
        exposures_ended=first.exposures_ended + late.exposures_ended,
        warnings_cancelled=first.warnings_cancelled + late.warnings_cancelled,
        warnings_sent=first.warnings_sent,
        warnings_sending=first.warnings_sending,
        entries_removed=removed,
        staged_keys_dropped=staged,
    )


@dataclass(frozen=True, slots=True)
class _Effects:
    exposures_ended: int
    warnings_cancelled: int


@dataclass(frozen=True, slots=True)
class _Marked:
    leak_id: int
    retracted_at: datetime
    already_retracted: bool
    exposures_ended: int
    warnings_cancelled: int
    warnings_sent: int
    warnings_sending: int


def mark_retracted(
    session: Session, slug: str, *, reason: str, actor: str, now: datetime
) -> _Marked:
    """Mark the leak retracted, end its exposures, cancel its unsent warnings, audit it.

    A leak retracted before keeps its first date, reason and actor. Does not commit.
    """
    leak = session.scalars(
        select(Leak).where(Leak.id == find_leak(session, slug).id).with_for_update()
    ).one()
    already = leak.retracted_at is not None
    if not already:
        leak.retracted_at, leak.retracted_by, leak.retraction_reason = now, actor, reason
    effects = end_leak_effects(
        session, leak.id, actor=leak.retracted_by or actor, reason=reason, now=now
    )
    sent, sending = _gone_out(session, leak.id)
    if not already:
        record_event(
            session,
            actor=actor,
            action="leak.retracted",
            target=slug,
            detail={
                "reason": reason,
                "exposures_ended": effects.exposures_ended,
                "warnings_cancelled": effects.warnings_cancelled,
                "warnings_sent": sent,
            },
            now=now,
        )
    return _Marked(
        leak.id,
        leak.retracted_at or now,
        already,
        effects.exposures_ended,
        effects.warnings_cancelled,
        sent,
        sending,
    )


def end_leak_effects(
    session: Session, leak_id: int, *, actor: str, reason: str, now: datetime
) -> _Effects:
    """End the leak's open exposures (``retracted``) and cancel its unsent warnings; tell
    the login service of each account whose risk level so fell."""
    affected: list[int] = []
    if policy_of(session).receivers:
        affected = list(
            session.scalars(
                select(Exposure.account_id).where(
                    Exposure.leak_id == leak_id, Exposure.state == ExposureState.OPEN
                )
            )
        )
    ended = session.execute(
        update(Exposure)
        .where(Exposure.leak_id == leak_id, Exposure.state == ExposureState.OPEN)
        .values(
            state=ExposureState.RETRACTED,
            end_cause=ExposureEndCause.RETRACTED,
            resolved_at=now,
            resolved_by=actor,
            resolution=f"leak retracted: {reason}"[:MAX_REASON_CHARS],
        )
    )
    cancelled = cancel_leak_warnings(session, leak_id=leak_id, now=now)
    record_risk_level(session, affected, reason=LoweredBecause.RETRACTED, now=now)
    return _Effects(rowcount(ended), cancelled)


def drop_staged_keys(session: Session, leak_id: int) -> int:
    """Drop the keys the leak's files staged and did not merge into the watch list yet;
    return how many there were.

    After the leak is marked retracted: no chunk or merge of its files commits after the
    mark (``record_chunk`` refuses), so nothing is staged again. Does not commit.
    """
    file_ids = _file_ids(session, leak_id)
    staged = bulk.count_staged(session, file_ids)
    bulk.drop_stages(session, file_ids)
    return staged


def _file_ids(session: Session, leak_id: int) -> list[int]:
    return list(session.scalars(select(LeakFile.id).where(LeakFile.leak_id == leak_id)))


def remove_watch_entries(
    session: Session, leak_id: int, *, after: bytes | None, limit: int
) -> tuple[int, bytes | None]:
    """Delete the next ``limit`` watch-list rows of the leak after key ``after``.

    Returns how many were deleted and the key to continue after (None: the end). Does
    not commit.
    """
    query = select(LeakEntry.email_key).where(LeakEntry.leak_id == leak_id)
    if after is not None:
        query = query.where(LeakEntry.email_key > after)
    keys = list(session.scalars(query.order_by(LeakEntry.email_key).limit(limit)))
    for condition in bulk.in_batches(session, LeakEntry.email_key, keys):
        session.execute(delete(LeakEntry).where(LeakEntry.leak_id == leak_id, condition))
    return len(keys), (keys[-1] if len(keys) == limit else None)


def _gone_out(session: Session, leak_id: int) -> tuple[int, int]:
    counts = dict(
        session.execute(
            select(Notice.state, func.count())
            .where(
                Notice.leak_id == leak_id,
                Notice.state.in_((NoticeState.SENT, NoticeState.SENDING)),
            )
            .group_by(Notice.state)
        ).all()
    )
    return counts.get(NoticeState.SENT, 0), counts.get(NoticeState.SENDING, 0)


def _dry_run(session: Session, slug: str) -> RetractionReport:
    leak = find_leak(session, slug)
    open_exposures = session.scalar(
        select(func.count()).where(
            Exposure.leak_id == leak.id, Exposure.state == ExposureState.OPEN
        )
    )
    sent, sending = _gone_out(session, leak.id)
    # What the real run drops with the stages, counted as it counts them.
    staged = bulk.count_staged(session, _file_ids(session, leak.id))
    if leak.retracted_at is None:
        # The ingest counted each entry it added (valid minus duplicates): no full scan of
        # a table without an index on the leak. A file staged but not merged yet counted
        # each staged key as valid and none as a duplicate (its merge counts those), and
        # none is in the watch list: its keys are the staged ones, left out here.
        entries = max(leak.valid - leak.duplicates - staged, 0)
    else:
        entries = session.scalar(select(func.count()).where(LeakEntry.leak_id == leak.id)) or 0
    return RetractionReport(
        leak=slug,
        retracted_at=leak.retracted_at,
        already_retracted=leak.retracted_at is not None,
        dry_run=True,
        exposures_ended=open_exposures or 0,
        warnings_cancelled=count_unsent_warnings(session, leak_id=leak.id),
        warnings_sent=sent,
        warnings_sending=sending,
        entries_removed=entries,
        staged_keys_dropped=staged,
    )
