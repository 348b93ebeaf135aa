"""Staff sessions: rotation at login and re-authentication, idle and absolute timeouts,
re-authentication before a sensitive action and its expiry, logout, disabling; the time
moved with the staff clock, never slept."""

from __future__ import annotations

from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from service.models import StaffSession
from service.runtime import Runtime
from service.staff.sessions import purge_staff_sessions
from service.staff.users import disable_staff_user
from tests.support.factories import make_account
from tests.support.staff import (
    Clock,
    StaffLogin,
    audit_count,
    audit_rows,
    csrf_token,
    log_in,
    reauthenticate,
)


def live_sessions(runtime: Runtime) -> int:
    with runtime.db.read_session() as session:
        return len(
            list(session.scalars(select(StaffSession).where(StaffSession.ended_at.is_(None))))
        )


def use_cookie(client: FlaskClient, token: str) -> None:
    client.set_cookie("leakguard_staff", token, path="/staff")


def test_login_issues_a_new_session_id_and_ends_the_old_one(
    staff_client: FlaskClient, agent: StaffLogin, clock: Clock, runtime: Runtime
) -> None:
    first = log_in(staff_client, agent, clock)
    second = log_in(staff_client, agent, clock)
    assert first != second
    assert live_sessions(runtime) == 1
    use_cookie(staff_client, first)
    assert staff_client.get("/staff/").status_code == 303
    use_cookie(staff_client, second)
    assert staff_client.get("/staff/").status_code == 200


def test_a_session_id_set_before_login_is_never_the_one_after(
    staff_client: FlaskClient, agent: StaffLogin, clock: Clock
) -> None:
    use_cookie(staff_client, "chosen-by-an-attacker")
    assert log_in(staff_client, agent, clock) != "chosen-by-an-attacker"


def test_reauthentication_rotates_the_session_id(
    staff_client: FlaskClient, agent: StaffLogin, clock: Clock
) -> None:
    before = log_in(staff_client, agent, clock)
    reauthenticate(staff_client, agent, clock)
    after = staff_client.get_cookie("leakguard_staff", path="/staff")
    assert after is not None
    assert after.value != before
    use_cookie(staff_client, before)
    assert staff_client.get("/staff/").status_code == 303


def test_thirty_idle_minutes_end_the_session(
    staff_client: FlaskClient, agent: StaffLogin, clock: Clock, runtime: Runtime
) -> None:
    log_in(staff_client, agent, clock)
    clock.advance(timedelta(minutes=29))
    assert staff_client.get("/staff/").status_code == 200
    clock.advance(timedelta(minutes=30, seconds=1))
    answer = staff_client.get("/staff/audit")
    assert answer.status_code == 303
    assert answer.headers["Location"] == "/staff/login?next=/staff/audit"
    assert live_sessions(runtime) == 0
    clock.advance(timedelta(seconds=1))  # coming back does not revive it
    assert staff_client.get("/staff/").status_code == 303


def test_twelve_hours_after_login_the_session_ends_however_busy(
    staff_client: FlaskClient, agent: StaffLogin, clock: Clock
) -> None:
    log_in(staff_client, agent, clock)
    elapsed = timedelta()
    while elapsed + timedelta(minutes=29) <= timedelta(hours=12):
        elapsed += timedelta(minutes=29)
        clock.advance(timedelta(minutes=29))
        assert staff_client.get("/staff/").status_code == 200, elapsed
    reauthenticate(staff_client, agent, clock)  # a re-authentication does not extend it
    clock.advance(timedelta(hours=12) - elapsed)
    assert staff_client.get("/staff/").status_code == 303


def test_a_sensitive_action_needs_a_recent_code_and_asks_again_after_five_minutes(
    staff_client: FlaskClient, agent: StaffLogin, clock: Clock, runtime: Runtime
) -> None:
    account_id = make_account(runtime, "jane", "jane@example.org")
    log_in(staff_client, agent, clock)
    clock.advance(timedelta(minutes=5, seconds=1))
    page = f"/staff/accounts/{account_id}"
    token = csrf_token(staff_client, page)
    answer = staff_client.post(
        f"{page}/reveal", data={"csrf_token": token}, headers={"Referer": f"http://localhost{page}"}
    )
    assert answer.status_code == 303
    assert answer.headers["Location"] == f"/staff/reauth?next={page}"
    assert audit_count(runtime, "staff.address_revealed") == 0

    reauthenticate(staff_client, agent, clock)
    answer = staff_client.post(
        f"{page}/reveal", data={"csrf_token": csrf_token(staff_client, page)}
    )
    assert answer.status_code == 200
    assert "jane@example.org" in answer.get_data(as_text=True)
    assert answer.headers["Cache-Control"] == "no-store"
    assert audit_count(runtime, "staff.address_revealed") == 1

    clock.advance(timedelta(minutes=5, seconds=1))
    answer = staff_client.post(
        f"{page}/reveal", data={"csrf_token": csrf_token(staff_client, page)}
    )
    assert answer.status_code == 303
    assert answer.headers["Location"].startswith("/staff/reauth?next=")
    assert audit_count(runtime, "staff.address_revealed") == 1


def test_a_wrong_or_replayed_reauthentication_code_is_refused(
    staff_client: FlaskClient, agent: StaffLogin, clock: Clock, runtime: Runtime
) -> None:
    log_in(staff_client, agent, clock)  # spends the code of this time step
    answer = staff_client.post(
        "/staff/reauth",
        data={
            "csrf_token": csrf_token(staff_client, "/staff/reauth"),
            "code": agent.code(clock.now()),
        },
    )
    assert answer.status_code == 401
    assert "That code is not right." in answer.get_data(as_text=True)
    wrong = "000000" if agent.code(clock.now()) != "000000" else "111111"
    answer = staff_client.post(
        "/staff/reauth",
        data={"csrf_token": csrf_token(staff_client, "/staff/reauth"), "code": wrong},
    )
    assert answer.status_code == 401
    assert "That code is not right." in answer.get_data(as_text=True)
    # The person sees one refusal; the trail says which: a replay is not a typo.
    causes = [row.detail["cause"] for row in audit_rows(runtime, "staff.reauth_refused")]
    assert causes == ["replayed_code", "wrong_code"]


def test_logout_ends_the_session(
    staff_client: FlaskClient, agent: StaffLogin, clock: Clock, runtime: Runtime
) -> None:
    token = log_in(staff_client, agent, clock)
    answer = staff_client.post(
        "/staff/logout", data={"csrf_token": csrf_token(staff_client, "/staff/")}
    )
    assert answer.status_code == 303
    assert audit_count(runtime, "staff.logout") == 1
    use_cookie(staff_client, token)
    assert staff_client.get("/staff/").status_code == 303


def test_disabling_a_user_ends_their_sessions(
    staff_client: FlaskClient, agent: StaffLogin, clock: Clock, runtime: Runtime
) -> None:
    log_in(staff_client, agent, clock)
    with runtime.db.transaction() as session:
        disable_staff_user(session, email=agent.email, actor="test", now=clock.now())
    assert staff_client.get("/staff/").status_code == 303


@pytest.mark.parametrize("public_url", ["https://leakguard.example"])
def test_the_cookie_is_secure_where_the_site_is_https(
    make_app: object, agent: StaffLogin, clock: Clock, public_url: str
) -> None:
    app: Flask = make_app(public_url=public_url)  # type: ignore[operator]
    client = app.test_client()
    clock.advance(timedelta(seconds=30))
    answer = client.post(
        "/staff/login",
        data={
            "csrf_token": csrf_token(client),
            "email": agent.email,
            "password": agent.password,
            "code": agent.code(clock.now()),
        },
    )
    assert answer.status_code == 303
    cookie = answer.headers["Set-Cookie"]
    assert "Secure" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie


def test_housekeeping_purges_dead_sessions_and_keeps_live_ones(
    staff_client: FlaskClient, agent: StaffLogin, viewer: StaffLogin, clock: Clock, runtime: Runtime
) -> None:
    first = log_in(staff_client, agent, clock)
    log_in(staff_client, agent, clock)  # ends the first
    other = staff_app_client(staff_client)
    log_in(other, viewer, clock)
    clock.advance(timedelta(minutes=20))
    assert staff_client.get("/staff/").status_code == 200  # the agent's stays fresh
    clock.advance(timedelta(minutes=15))  # the viewer's is now idle past 30 minutes
    with runtime.db.transaction() as session:
        assert purge_staff_sessions(session, now=clock.now(), limit=1) == 1
    with runtime.db.transaction() as session:
        assert purge_staff_sessions(session, now=clock.now(), limit=10) == 1
    with runtime.db.transaction() as session:
        assert purge_staff_sessions(session, now=clock.now(), limit=10) == 0
    assert staff_client.get("/staff/").status_code == 200
    with runtime.db.read_session() as session:
        assert len(list(session.scalars(select(StaffSession.token_hash)))) == 1
    use_cookie(staff_client, first)
    assert staff_client.get("/staff/").status_code == 303


def staff_app_client(client: FlaskClient) -> FlaskClient:
    """A second browser on the same app."""
    return client.application.test_client()
