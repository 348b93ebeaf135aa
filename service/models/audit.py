"""The audit trail."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base, BigId, MaskedJSON, utcnow


class AuditEvent(Base):
    """Who did what to what, written in the transaction of the act itself."""

    __tablename__ = "audit_event"
    # One account's (or leak's) rows: the staff audit page's account filter, the dossier's
    # history, and the funnel's stepped-up count, whose probes (target, action, at) this
    # index answers alone. Not (target, id): then every probe read each row of the account
    # from the table to test its action, slower than no index at all on a large table.
    __table_args__ = (Index("ix_audit_event_target_action_at", "target", "action", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(100), index=True)
    # What the act was on: "account:<external id>" (ids are up to 255 characters), a slug.
    target: Mapped[str | None] = mapped_column(String(300))
    detail: Mapped[dict[str, Any] | None] = mapped_column(MaskedJSON)
