"""Email-change requests and the holds a reverted change leaves on an account."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Boolean, ForeignKey, Index, Integer, LargeBinary, String, text
from sqlalchemy.orm import Mapped, mapped_column

from service.addresses.keys import EMAIL_KEY_BYTES
from service.db import Base, MaskedText, str_enum, utcnow


class ChangeState(StrEnum):
    AWAITING_REVIEW = "awaiting_review"  # support-assisted: waits for approve or deny
    AWAITING_CONFIRMATION = "awaiting_confirmation"  # the new mailbox has not proved itself
    CONFIRMED = "confirmed"  # applied; the old mailbox may still revert it for 7 days
    REVERTED = "reverted"  # the old mailbox undid it (before or after confirmation)
    CANCELLED = "cancelled"  # the login service withdrew it (DELETE)
    REPLACED = "replaced"  # a newer request took its place
    DENIED = "denied"  # support refused an assisted request
    EXPIRED = "expired"  # its confirmation link ran out unused
    SUPERSEDED = "superseded"  # the address changed another way (PUT, batch, import)


# A request in one of these states still waits for someone: at most one per account.
OPEN_STATES = (ChangeState.AWAITING_REVIEW, ChangeState.AWAITING_CONFIRMATION)


class ChangePriority(StrEnum):
    HIGH = "high"  # the account has an open exposure: its mail goes ahead of campaigns
    NORMAL = "normal"


class EmailChangeRequest(Base):
    """One request to move an account to another address, and its two links.

    The links' tokens are never stored: each is derived from the request's id and
    ``link_generation`` with a key (service/email_change/tokens.py), and only its SHA-256
    is kept, to find the request by it, for as long as the request is kept (its state says
    what a link may still do). A resend raises the generation, which voids the earlier
    confirmation link.
    """

    __tablename__ = "email_change_request"
    __table_args__ = (
        # At most one open request per account: a newer one replaces it in the same
        # transaction, and two created at once cannot both stay open.
        Index(
            "ux_email_change_request_open_account",
            "account_id",
            unique=True,
            sqlite_where=text("state IN ('awaiting_review', 'awaiting_confirmation')"),
            postgresql_where=text("state IN ('awaiting_review', 'awaiting_confirmation')"),
        ),
        Index("ix_email_change_request_state_created", "state", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"))
    state: Mapped[ChangeState] = mapped_column(str_enum(ChangeState, 30))
    priority: Mapped[ChangePriority] = mapped_column(str_enum(ChangePriority))
    old_email: Mapped[str] = mapped_column(String(320))
    old_email_key: Mapped[bytes] = mapped_column(LargeBinary(EMAIL_KEY_BYTES))
    new_email: Mapped[str] = mapped_column(String(320))
    new_email_key: Mapped[bytes] = mapped_column(LargeBinary(EMAIL_KEY_BYTES), index=True)
    accepted_leaked: Mapped[bool] = mapped_column(Boolean, default=False)
    # The assurance token this request spent (its jti): a token serves one email change.
    assurance_jti: Mapped[str | None] = mapped_column(String(64), unique=True)
    # Support-assisted requests: the ticket, and who decided, why.
    assisted: Mapped[bool] = mapped_column(Boolean, default=False)
    ticket: Mapped[str | None] = mapped_column(String(100))
    requested_by: Mapped[str] = mapped_column(String(200))
    reviewed_by: Mapped[str | None] = mapped_column(String(200))
    review_reason: Mapped[str | None] = mapped_column(MaskedText(500))
    link_generation: Mapped[int] = mapped_column(Integer, default=0)
    confirm_token_hash: Mapped[bytes | None] = mapped_column(LargeBinary(32), unique=True)
    confirm_expires_at: Mapped[datetime | None]
    revert_token_hash: Mapped[bytes | None] = mapped_column(LargeBinary(32), unique=True)
    revert_expires_at: Mapped[datetime | None]
    resent_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    confirmed_at: Mapped[datetime | None]
    reverted_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]  # any end other than confirmed


class EmailChangeHold(Base):
    """What a reverted change leaves on its account: no new change until ``cooling_until``,
    and a step-up on every sign-in until support clears it (``cleared_at``)."""

    __tablename__ = "email_change_hold"

    account_id: Mapped[int] = mapped_column(
        ForeignKey("account.id", ondelete="CASCADE"), primary_key=True
    )
    request_id: Mapped[str | None] = mapped_column(
        ForeignKey("email_change_request.id", ondelete="SET NULL")
    )
    reverted_at: Mapped[datetime]
    cooling_until: Mapped[datetime]
    cleared_at: Mapped[datetime | None]
    cleared_by: Mapped[str | None] = mapped_column(String(200))
    clear_reason: Mapped[str | None] = mapped_column(MaskedText(500))
