"""Whether a proposed address is in a known leak: the one place every answer about an
email change asks it (the request, the confirmation, the revert, the pending change)."""

from __future__ import annotations

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from service.models import Leak, LeakEntry


def address_in_leak(session: Session, email_key: bytes) -> bool:
    """True when the canonical address ``email_key`` is in a leak not retracted, now."""
    return bool(
        session.scalar(
            select(
                exists()
                .where(LeakEntry.email_key == email_key)
                .where(exists().where(Leak.id == LeakEntry.leak_id, Leak.retracted_at.is_(None)))
            )
        )
    )
