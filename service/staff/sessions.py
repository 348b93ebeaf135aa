"""Server-side staff sessions: the cookie holds a random token, the row its SHA-256.

A session ends after ``IDLE_TIMEOUT`` without a request, ``ABSOLUTE_TIMEOUT`` after its
login whatever happens (NIST SP 800-63B 7.2 for AAL2: 30 minutes idle, 12 hours), at
logout, and when the user is disabled or their TOTP reset. Login and re-authentication
each issue a new token and end the old one (session fixation). No Flask; none commits.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from service.db import rowcount
from service.models import StaffSession, StaffUser
from service.staff.users import token_digest

IDLE_TIMEOUT = timedelta(minutes=30)
ABSOLUTE_TIMEOUT = timedelta(hours=12)
REAUTH_WINDOW = timedelta(minutes=5)  # a sensitive action needs a TOTP code this recent
SESSION_TOKEN_BYTES = 32
MAX_TOKEN_CHARS = 100


@dataclass(frozen=True, slots=True)
class ActiveSession:
    """A live session and its user, as a request sees them."""

    staff: StaffUser
    row: StaffSession

    def reauthenticated_within(self, window: timedelta, now: datetime) -> bool:
        return now - self.row.reauth_at <= window


def start_session(
    session: Session, staff_id: int, *, now: datetime, logged_in_at: datetime | None = None
) -> str:
    """A new session for the staff user; return its token (for the cookie only).

    ``logged_in_at``: the login a rotated session continues (the absolute timeout keeps
    counting from it); default ``now``, a new login.
    """
    token = secrets.token_urlsafe(SESSION_TOKEN_BYTES)
    session.add(
        StaffSession(
            token_hash=token_digest(token),
            staff_id=staff_id,
            created_at=logged_in_at or now,
            last_seen_at=now,
            reauth_at=now,
        )
    )
    return token


def resume_session(session: Session, token: str | None, *, now: datetime) -> ActiveSession | None:
    """The live session of ``token`` with its last use set to ``now``; None if there is
    none, it ended, timed out (it is then ended) or its user is disabled."""
    if not token or len(token) > MAX_TOKEN_CHARS:
        return None
    row = session.get(StaffSession, token_digest(token), with_for_update=True)
    if row is None or row.ended_at is not None:
        return None
    staff = session.get(StaffUser, row.staff_id)
    if (
        staff is None
        or staff.disabled_at is not None
        or now - row.last_seen_at > IDLE_TIMEOUT
        or now - row.created_at > ABSOLUTE_TIMEOUT
    ):
        row.ended_at = now
        return None
    row.last_seen_at = now
    return ActiveSession(staff, row)


def rotate_session(session: Session, active: ActiveSession, *, now: datetime) -> str:
    """End ``active`` and start its successor, re-authenticated now; return the new token.
    The successor keeps the login time, so the absolute timeout is not extended."""
    session.execute(
        update(StaffSession)
        .where(StaffSession.token_hash == active.row.token_hash)
        .values(ended_at=now)
    )
    return start_session(session, active.staff.id, now=now, logged_in_at=active.row.created_at)


def end_session(session: Session, token: str | None, *, now: datetime) -> bool:
    """Log out: end the session of ``token``; return whether one was live."""
    if not token or len(token) > MAX_TOKEN_CHARS:
        return False
    row = session.get(StaffSession, token_digest(token), with_for_update=True)
    if row is None or row.ended_at is not None:
        return False
    row.ended_at = now
    return True


def live_sessions(session: Session, staff_id: int) -> list[StaffSession]:
    return list(
        session.scalars(
            select(StaffSession).where(
                StaffSession.staff_id == staff_id, StaffSession.ended_at.is_(None)
            )
        )
    )


def purge_staff_sessions(session: Session, *, now: datetime, limit: int) -> int:
    """Delete up to ``limit`` sessions that can never be used again: ended, idle past the
    idle timeout, or past the absolute one. The audit log keeps each login and logout.
    Idempotent; returns the rows deleted."""
    dead = or_(
        StaffSession.ended_at.is_not(None),
        StaffSession.last_seen_at < now - IDLE_TIMEOUT,
        StaffSession.created_at < now - ABSOLUTE_TIMEOUT,
    )
    hashes = list(session.scalars(select(StaffSession.token_hash).where(dead).limit(limit)))
    if not hashes:
        return 0
    return rowcount(
        session.execute(delete(StaffSession).where(StaffSession.token_hash.in_(hashes), dead))
    )
