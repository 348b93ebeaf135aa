"""The outbox of security events to the login service: one row per event and receiver."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base, BigId, MaskedText, str_enum, utcnow


class EventReceiver(StrEnum):
    """How a receiver takes its events (SSF delivery methods): each has its own rows."""

    PUSH = "push"  # RFC 8935: POSTed to LEAKGUARD_EVENTS_PUSH_URL
    POLL = "poll"  # RFC 8936: fetched from POST /v1/events/poll


class EventState(StrEnum):
    PENDING = "pending"  # waiting: to be relayed (push), or fetched and acknowledged (poll)
    QUEUED = "queued"  # push: handed to the queue
    SENDING = "sending"  # push: a worker holds it, under a lease
    DELIVERED = "delivered"  # push: the receiver answered 2xx; poll: acknowledged
    DROPPED = "dropped"  # the receiver refused it with an SSF error code (``last_error``)
    CANCELLED = "cancelled"  # never sent: a scheduled event whose moment did not come


class SecurityEvent(Base):
    """One Security Event Token (RFC 8417) for one receiver; the row, not the queue, is
    the truth. ``claims`` holds every claim but ``iss`` and ``aud``, added when signed."""

    __tablename__ = "security_event"
    __table_args__ = (
        UniqueConstraint("jti", "receiver"),
        Index("ix_security_event_receiver_state", "receiver", "state"),
        Index("ix_security_event_account_receiver", "account_id", "receiver"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    jti: Mapped[str] = mapped_column(String(64))
    receiver: Mapped[EventReceiver] = mapped_column(str_enum(EventReceiver))
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"))
    event_type: Mapped[str] = mapped_column(String(200))  # the event's URI
    claims: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[EventState] = mapped_column(str_enum(EventState))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Not before then: a retry's backoff, or a scheduled event (a lock's end).
    not_before: Mapped[datetime | None]
    queued_at: Mapped[datetime | None]
    lease_until: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]
    status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(MaskedText(500))
