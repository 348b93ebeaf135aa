"""The audit trail."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base, BigId, utcnow


class AuditEvent(Base):
    """Who did what to what, written in the transaction of the act itself."""

    __tablename__ = "audit_event"
    # One account's (or leak's) rows, newest first: the staff audit page's account filter
    # (ordered by id, a page at a time), the dossier's history, the funnel's stepped-up count.
    __table_args__ = (Index("ix_audit_event_target_id", "target", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(100), index=True)
    # What the act was on: "account:<external id>" (ids are up to 255 characters), a slug.
    target: Mapped[str | None] = mapped_column(String(300))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)
