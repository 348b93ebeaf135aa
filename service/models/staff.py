"""Staff of the internal site (/staff): their accounts and their server-side sessions."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base, BigId, str_enum, utcnow


class StaffRole(StrEnum):
    """Ordered: each role may do what the roles before it may."""

    VIEWER = "viewer"
    AGENT = "agent"
    ADMIN = "admin"


class StaffUser(Base):
    """A person who works in /staff.

    ``password_hash`` is argon2id; ``totp_secret`` is sealed like an account's factor
    (service/stepup/secret_box.py, bound to the staff id) and ``totp_last_step`` is its
    replay guard. Until enrolment both are empty and ``enrol_token_hash`` (SHA-256 of the
    one-time link's token) lets the link set them. The secret the enrolment page shows is
    derived from the link's token (``StaffSecrets.enrolment_secret``), so showing the page
    writes nothing.
    """

    __tablename__ = "staff_user"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    role: Mapped[StaffRole] = mapped_column(str_enum(StaffRole))
    password_hash: Mapped[str | None] = mapped_column(String(200))
    totp_secret: Mapped[bytes | None] = mapped_column(LargeBinary(128))
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)
    enrol_token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    enrol_expires_at: Mapped[datetime | None]
    enrolled_at: Mapped[datetime | None]
    disabled_at: Mapped[datetime | None]
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    last_failed_login_at: Mapped[datetime | None]
    last_login_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class StaffSession(Base):
    """A signed-in browser. The cookie holds a random token; only its SHA-256 is kept here,
    so a database dump holds no live session. A new row (a new token) at every login and
    re-authentication: the id rotates. ``ended_at`` is set by logout, disable, reset."""

    __tablename__ = "staff_session"
    __table_args__ = (Index("ix_staff_session_staff_id", "staff_id"),)

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff_user.id", ondelete="CASCADE"))
    created_at: Mapped[datetime]  # the login: the absolute timeout counts from here
    last_seen_at: Mapped[datetime]  # the idle timeout counts from here
    reauth_at: Mapped[datetime]  # the last time a TOTP code was given (login included)
    ended_at: Mapped[datetime | None]
