"""Staff users for tests: created and enrolled through the domain functions, signed in
through the login form; the clock the staff site reads, moved by hand."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pyotp
from flask.testing import FlaskClient
from sqlalchemy import func, select

from service.models import AuditEvent, StaffRole
from service.runtime import Runtime
from service.staff.users import (
    StaffSecrets,
    complete_enrolment,
    create_staff_user,
    open_enrolment,
)

PASSWORD = "correct horse battery staple"  # 28 characters, no composition rules
CSRF = re.compile(r'name="csrf_token"[^>]*? value="([^"]+)"')


class Clock:
    """The time the staff site reads (``service.staff.clock.now``), moved by the test."""

    def __init__(self, start: datetime | None = None) -> None:
        self.current = start or datetime.now(UTC).replace(microsecond=0)

    def now(self) -> datetime:
        return self.current

    def advance(self, delta: timedelta) -> datetime:
        self.current += delta
        return self.current


@dataclass(frozen=True, slots=True)
class StaffLogin:
    id: int
    email: str
    role: StaffRole
    password: str
    secret: str

    def code(self, at: datetime) -> str:
        return pyotp.TOTP(self.secret).at(at)


def make_staff(
    runtime: Runtime,
    email: str = "sam@staff.example",
    role: StaffRole = StaffRole.AGENT,
    *,
    now: datetime,
) -> StaffLogin:
    """A staff user enrolled at ``now`` (the enrolment spends the step of ``now``)."""
    secrets_ = StaffSecrets(runtime.settings.hash_key_bytes())
    with runtime.db.transaction() as session:
        enrolment = create_staff_user(session, email=email, role=role, actor="test", now=now)
    with runtime.db.transaction() as session:
        page = open_enrolment(session, secrets_, enrolment.token, issuer="Test", now=now)
    secret = page.enrollment.secret
    with runtime.db.transaction() as session:
        complete_enrolment(
            session,
            secrets_,
            enrolment.token,
            password=PASSWORD,
            code=pyotp.TOTP(secret).at(now),
            now=now,
        )
    return StaffLogin(enrolment.staff_id, enrolment.email, role, PASSWORD, secret)


def csrf_token(client: FlaskClient, path: str = "/staff/login") -> str:
    """The CSRF token of the form at ``path`` (bound to the client's session cookie)."""
    page = client.get(path)
    found = CSRF.search(page.get_data(as_text=True))
    assert found is not None, f"no CSRF token in {path} ({page.status_code})"
    return found.group(1)


def log_in(client: FlaskClient, staff: StaffLogin, clock: Clock) -> str:
    """Sign ``staff`` in through the form at a fresh TOTP step; return the session cookie."""
    clock.advance(timedelta(seconds=30))
    response = client.post(
        "/staff/login",
        data={
            "csrf_token": csrf_token(client),
            "email": staff.email,
            "password": staff.password,
            "code": staff.code(clock.now()),
        },
    )
    assert response.status_code == 303, response.get_data(as_text=True)
    cookie = client.get_cookie("leakguard_staff", path="/staff")
    assert cookie is not None
    return cookie.value


def reauthenticate(client: FlaskClient, staff: StaffLogin, clock: Clock) -> None:
    clock.advance(timedelta(seconds=30))
    response = client.post(
        "/staff/reauth",
        data={
            "csrf_token": csrf_token(client, "/staff/reauth"),
            "code": staff.code(clock.now()),
            "next": "/staff/",
        },
    )
    assert response.status_code == 303, response.get_data(as_text=True)


def audit_count(runtime: Runtime, action: str | None = None) -> int:
    query = select(func.count()).select_from(AuditEvent)
    if action is not None:
        query = query.where(AuditEvent.action == action)
    with runtime.db.read_session() as session:
        return session.scalar(query) or 0


def audit_rows(runtime: Runtime, action: str) -> list[AuditEvent]:
    """The audit rows of ``action``, oldest first."""
    with runtime.db.read_session() as session:
        return list(
            session.scalars(
                select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
            )
        )
