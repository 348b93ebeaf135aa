"""Campaigns: the warnings of one leak, which an operator pauses, resumes, inspects,
retries and cancels."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from service.audit import record_event
from service.leaks.catalogue import LeakRetracted, find_leak
from service.models import Campaign, Leak, NoticeState
from service.notices.outbox import (
    FailedNotice,
    RetryOutcome,
    cancel_leak_warnings,
    failed_warnings,
    notice_counts,
    retry_failed_warnings,
)


@dataclass(frozen=True, slots=True)
class CampaignStatus:
    leak: str
    paused: bool
    counts: dict[str, int]

    def to_json(self) -> dict[str, object]:
        states = ("pending", "queued", "sending", "sent", "failed", "cancelled")
        return {
            "leak": self.leak,
            "paused": self.paused,
            **{state: self.counts.get(state, 0) for state in states},
        }


def set_paused(session: Session, slug: str, *, paused: bool, actor: str, now: datetime) -> bool:
    """Pause or resume the leak's warnings; return whether anything changed. Raises NotFound.

    Paused notices stay pending: the relay skips them and a worker holding one releases it.
    """
    leak = find_leak(session, slug)
    campaign = session.get(Campaign, leak.id)
    if campaign is None:
        campaign = Campaign(leak_id=leak.id, paused=False, changed_at=now)
        session.add(campaign)
    if campaign.paused == paused:
        return False
    campaign.paused = paused
    campaign.changed_at = now
    campaign.changed_by = actor
    record_event(
        session,
        actor=actor,
        action="campaign.paused" if paused else "campaign.resumed",
        target=slug,
        now=now,
    )
    return True


def campaign_status(session: Session, slug: str) -> CampaignStatus:
    leak = find_leak(session, slug)
    campaign = session.get(Campaign, leak.id)
    return CampaignStatus(
        leak=slug,
        paused=bool(campaign and campaign.paused),
        counts=notice_counts(session, leak_id=leak.id),
    )


def list_failed(session: Session, slug: str) -> list[FailedNotice]:
    """The leak's warnings that failed for good, addresses masked. Raises NotFound."""
    return failed_warnings(session, leak_id=find_leak(session, slug).id)


def retry_failed(
    session: Session, slug: str, *, ids: Sequence[int] | None, actor: str, now: datetime
) -> RetryOutcome:
    """Put the leak's failed warnings (all, or ``ids``) back in the outbox; audited.

    The caller relays after commit. Raises NotFound, LeakRetracted (its warnings stay
    cancelled). Does not commit.
    """
    leak = find_leak(session, slug)
    _refuse_retracted(leak)
    outcome = retry_failed_warnings(session, leak_id=leak.id, ids=ids)
    if outcome.retried:
        record_event(
            session,
            actor=actor,
            action="campaign.retried",
            target=slug,
            detail={"notices": len(outcome.retried)},
            now=now,
        )
    return outcome


@dataclass(frozen=True, slots=True)
class Cancelled:
    cancelled: int
    sent: int  # had gone out already
    sending: int  # in a worker's hands: may still go out


def cancel_warnings(session: Session, slug: str, *, actor: str, now: datetime) -> Cancelled:
    """Cancel the leak's warnings not sent yet (pending, queued, failed); audited.

    Warnings later ingests add are not affected (``notices pause`` holds those). Raises
    NotFound. Does not commit.
    """
    leak = find_leak(session, slug)
    cancelled = cancel_leak_warnings(session, leak_id=leak.id, now=now)
    counts = notice_counts(session, leak_id=leak.id)
    if cancelled:
        record_event(
            session,
            actor=actor,
            action="campaign.cancelled",
            target=slug,
            detail={"notices": cancelled},
            now=now,
        )
    return Cancelled(
        cancelled, counts.get(NoticeState.SENT.value, 0), counts.get(NoticeState.SENDING.value, 0)
    )


def _refuse_retracted(leak: Leak) -> None:
    if leak.retracted_at is not None:
        raise LeakRetracted(
            f"leak {leak.slug} was retracted on {leak.retracted_at:%Y-%m-%d}: "
            "its warnings stay cancelled"
        )
