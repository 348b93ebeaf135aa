"""The outbox of messages to people, and the campaigns that steer a leak's warnings."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base, BigId, MaskedText, str_enum, utcnow


class NoticeKind(StrEnum):
    LEAK_WARNING = "leak_warning"
    STEP_UP_CODE = "step_up_code"  # an emailed one-time code; high priority
    # The email change (service/email_change): each to one address the request names.
    EMAIL_CHANGE_CONFIRM = "email_change_confirm"  # to the new address: its link
    EMAIL_CHANGE_ALERT = "email_change_alert"  # to the old address: what changed, undo link
    EMAIL_CHANGED = "email_changed"  # to the new address: it is now the account's


class NoticeState(StrEnum):
    PENDING = "pending"  # in the outbox, not yet handed to the queue
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    CANCELLED = "cancelled"  # never sent: what it would say stopped being true


class Notice(Base):
    """The outbox: one message to one person. The row, not the queue, is the truth."""

    __tablename__ = "notice"
    __table_args__ = (
        UniqueConstraint("account_id", "kind", "leak_id"),
        Index("ix_notice_state", "state"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"))
    # No foreign key to the leak, for the reason exposure.leak_id has none (models.leaks).
    leak_id: Mapped[int | None] = mapped_column(BigId, index=True)
    kind: Mapped[NoticeKind] = mapped_column(str_enum(NoticeKind))
    state: Mapped[NoticeState] = mapped_column(str_enum(NoticeState))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(MaskedText(500))
    reply_code: Mapped[int | None] = mapped_column(Integer)
    message_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    queued_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    failed_at: Mapped[datetime | None]
    # A transient failure waits until then; the relay skips the row before.
    not_before: Mapped[datetime | None]
    # A worker's claim: past it, a row still "sending" is taken back by the sweep.
    lease_until: Mapped[datetime | None]
    # The emailed code's challenge (kind step_up_code): the code is derived from it, not stored.
    challenge_id: Mapped[str | None] = mapped_column(
        ForeignKey("step_up_challenge.id", ondelete="CASCADE"), index=True
    )
    # The email-change request a message belongs to (the email_change_* kinds): its
    # recipient and link come from the request at send time, never from a job argument.
    email_change_id: Mapped[str | None] = mapped_column(
        ForeignKey("email_change_request.id", ondelete="CASCADE"), index=True
    )


class Campaign(Base):
    """The warnings of one leak, as an operator steers them: paused or going."""

    __tablename__ = "campaign"

    leak_id: Mapped[int] = mapped_column(
        ForeignKey("leak.id", ondelete="CASCADE"), primary_key=True
    )
    paused: Mapped[bool] = mapped_column(default=False)
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    changed_by: Mapped[str | None] = mapped_column(String(200))
