"""Campaigns: the warnings of one leak, which an operator can pause and resume."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from service.audit import record_event
from service.leaks.catalogue import find_leak
from service.models import Campaign
from service.notices.outbox import notice_counts


@dataclass(frozen=True, slots=True)
class CampaignStatus:
    leak: str
    paused: bool
    counts: dict[str, int]

    def to_json(self) -> dict[str, object]:
        states = ("pending", "queued", "sending", "sent", "failed")
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
