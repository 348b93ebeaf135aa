"""Accounts mirrored from the login service."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from service.addresses.keys import EMAIL_KEY_BYTES
from service.db import Base, BigId, utcnow


class Account(Base):
    """A mirror of one of the login service's accounts."""

    __tablename__ = "account"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    external_id: Mapped[str] = mapped_column(String(255), unique=True)
    email: Mapped[str] = mapped_column(String(320))
    # Keyed hash of the canonical address: the only key that joins a leak to an account.
    # Not unique: two accounts may share a canonical address.
    email_key: Mapped[bytes] = mapped_column(LargeBinary(EMAIL_KEY_BYTES), index=True)
    locale: Mapped[str | None] = mapped_column(String(35))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # Set by a permanent refusal or a reported bounce; cleared when the address changes.
    undeliverable_at: Mapped[datetime | None]
    # Raised by every change to how the account is verified (a factor added or removed,
    # recovery codes replaced, a method locked, the address changed): an assurance token
    # names the epoch it was issued in and is void in any other (service/stepup/assurance.py).
    security_epoch: Mapped[int] = mapped_column(Integer, default=0)
    # When a confirmed email change (service/email_change) last set the address.
    email_changed_at: Mapped[datetime | None]
