"""Incidents for the staff site: every leak with its state, counts and the live progress
of a running ingest, and one leak's funnel, from matched accounts to ended exposures.

Read models only, free of Flask: the leak list is ``leaks list``'s own (``list_leaks``),
with the campaign's pause and the progress of running files beside it; every figure of the
funnel is an exact count over the tables, never an estimate.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import String, and_, case, cast, func, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from service.leaks.catalogue import IsHeld, LeakView, find_leak, list_leaks, show_leak
from service.models import (
    Account,
    AuditEvent,
    Campaign,
    EmailChangeRequest,
    Exposure,
    ExposureState,
    Leak,
    LeakFile,
    LeakFileState,
    LeakPart,
    Notice,
    NoticeKind,
    NoticeState,
)


@dataclass(frozen=True, slots=True)
class FileProgress:
    """Where one file of a leak stands: ``records_done`` committed so far; a split file
    (``ingest --enqueue``) also counts its finished parts."""

    name: str | None
    state: str  # running, interrupted, abandoned (its leak was retracted) or complete
    records_done: int
    size: int  # bytes
    parts: int  # 0: read by one process
    parts_done: int
    long_lines: int = 0  # lines over the reader's cap, counted invalid
    truncated_after_bytes: int | None = None  # a compressed file cut short there


@dataclass(frozen=True, slots=True)
class Incident:
    """One leak as the incident list shows it."""

    leak: LeakView
    paused: bool  # its warnings are held back (``notices pause``)
    files: tuple[FileProgress, ...]

    @property
    def state(self) -> str:
        return self.leak.state

    @property
    def running(self) -> bool:
        return self.leak.state == "running"

    @property
    def records_done(self) -> int:
        return sum(f.records_done for f in self.files)


def list_incidents(session: Session, *, held: IsHeld | None = None) -> list[Incident]:
    """Every leak, newest first, with its pause and the progress of its files.

    ``held`` tells a running file from an interrupted one, as for ``leaks list``.
    """
    leaks = list_leaks(session, held=_settled(session, held))
    return [_incident(session, view) for view in leaks]


def show_incident(session: Session, slug: str, *, held: IsHeld | None = None) -> Incident:
    """One leak; raise NotFound."""
    return _incident(session, show_leak(session, slug, held=_settled(session, held)))


def _settled(session: Session, held: IsHeld | None) -> IsHeld | None:
    """``held``, but a file found free after it was read as running is read again: its last
    part may have finished in between (the file is then complete, not interrupted). Called
    "running" for this look, the next one (a page polls) reads it complete; without this, a
    page would show "interrupted" and stop polling a file that finished."""
    if held is None:
        return None

    def check(file_id: int) -> bool:
        if held(file_id):
            return True
        state = session.scalar(select(LeakFile.state).where(LeakFile.id == file_id))
        return state is not LeakFileState.RUNNING

    return check


def _incident(session: Session, view: LeakView) -> Incident:
    file_ids = [f.id for f in view.files]
    parts = {
        file_id: (int(total), int(done or 0))
        for file_id, total, done in session.execute(
            select(
                LeakPart.leak_file_id,
                func.count(),
                func.sum(case((LeakPart.state == LeakFileState.COMPLETE, 1), else_=0)),
            )
            .where(LeakPart.leak_file_id.in_(file_ids))
            .group_by(LeakPart.leak_file_id)
        )
    }
    paused = session.scalar(
        select(Campaign.paused)
        .join(Leak, Leak.id == Campaign.leak_id)
        .where(Leak.slug == view.slug)
    )
    return Incident(
        leak=view,
        paused=bool(paused),
        files=tuple(
            FileProgress(
                name=f.name,
                state=f.state,
                records_done=f.records_done,
                size=f.size,
                parts=parts.get(f.id, (0, 0))[0],
                parts_done=parts.get(f.id, (0, 0))[1],
                long_lines=f.long_lines,
                truncated_after_bytes=f.truncated_after_bytes,
            )
            for f in view.files
        ),
    )


# The funnel -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Funnel:
    """A leak's accounts from flagged to safe again. Every figure counts accounts (one
    exposure, one warning per account and leak).

    ``matched``: accounts exposed to the leak, whatever the exposure's state now;
    ``warned``: warnings handed to the mail server (sent, bounced later included);
    ``delivered``: sent and not bounced since; ``failed``: warnings that failed for good
    (refused, or bounced after sending); ``stepped_up``: exposed accounts that passed a
    step-up after the exposure opened; ``email_changed``: exposed accounts whose confirmed
    email change came after the exposure opened; ``resolved``: exposures resolved (the
    address changed, or support resolved them). ``exposures`` counts the exposures by state.
    """

    leak: str
    matched: int
    warned: int
    delivered: int
    failed: int
    stepped_up: int
    email_changed: int
    resolved: int
    exposures: dict[str, int]

    STAGES = (
        ("matched", "Matched"),
        ("warned", "Warned (sent)"),
        ("delivered", "Delivered"),
        ("failed", "Bounced or failed"),
        ("stepped_up", "Stepped up"),
        ("email_changed", "Email changed"),
        ("resolved", "Exposures resolved"),
    )

    def stages(self) -> list[tuple[str, str, int]]:
        """(key, label, count) in funnel order."""
        return [(key, label, int(getattr(self, key))) for key, label in self.STAGES]


def leak_funnel(session: Session, slug: str) -> Funnel:
    """Count the leak's funnel from the tables (see ``Funnel``); raise NotFound."""
    leak = find_leak(session, slug)
    exposures = {
        str(state): int(n)
        for state, n in session.execute(
            select(Exposure.state, func.count())
            .where(Exposure.leak_id == leak.id)
            .group_by(Exposure.state)
        )
    }
    warning = and_(Notice.leak_id == leak.id, Notice.kind == NoticeKind.LEAK_WARNING)
    warned = _count(session, warning, Notice.sent_at.is_not(None))
    delivered = _count(session, warning, Notice.state == NoticeState.SENT)
    failed = _count(session, warning, Notice.state == NoticeState.FAILED)
    exposed = select(Exposure.account_id, Exposure.created_at).where(Exposure.leak_id == leak.id)
    exposed_sq = exposed.subquery()
    # The audit target of a step-up is "account:<external id>" (service/stepup/services.py).
    target = cast("account:", String) + Account.external_id
    stepped_up = session.scalar(
        select(func.count(func.distinct(exposed_sq.c.account_id)))
        .select_from(exposed_sq)
        .join(Account, Account.id == exposed_sq.c.account_id)
        .join(
            AuditEvent,
            and_(
                AuditEvent.target == target,
                AuditEvent.action == "step_up.passed",
                AuditEvent.at >= exposed_sq.c.created_at,
            ),
        )
    )
    email_changed = session.scalar(
        select(func.count(func.distinct(exposed_sq.c.account_id)))
        .select_from(exposed_sq)
        .join(
            EmailChangeRequest,
            and_(
                EmailChangeRequest.account_id == exposed_sq.c.account_id,
                EmailChangeRequest.confirmed_at.is_not(None),
                EmailChangeRequest.confirmed_at >= exposed_sq.c.created_at,
            ),
        )
    )
    return Funnel(
        leak=slug,
        matched=sum(exposures.values()),
        warned=warned,
        delivered=delivered,
        failed=failed,
        stepped_up=int(stepped_up or 0),
        email_changed=int(email_changed or 0),
        resolved=exposures.get(ExposureState.RESOLVED.value, 0),
        exposures=exposures,
    )


def _count(session: Session, *conditions: ColumnElement[bool]) -> int:
    return int(session.scalar(select(func.count()).select_from(Notice).where(*conditions)) or 0)
