"""Staff login, sessions and their cookie, on SQLite and PostgreSQL."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from flask.testing import FlaskClient

from service.runtime import Runtime
from tests.support.staff import Clock, StaffLogin, audit_count, audit_rows, csrf_token, log_in


def test_login_with_password_and_totp_opens_the_home_page(
    staff_client: FlaskClient, agent: StaffLogin, clock: Clock, runtime: Runtime
) -> None:
    log_in(staff_client, agent, clock)
    page = staff_client.get("/staff/")
    assert page.status_code == 200
    assert "agent@staff.example" in page.get_data(as_text=True)
    assert audit_count(runtime, "staff.login") == 1


def test_wrong_password_or_code_or_email_get_one_generic_error(
    staff_client: FlaskClient, agent: StaffLogin, clock: Clock, runtime: Runtime
) -> None:
    clock.advance(timedelta(seconds=30))
    good = {"email": agent.email, "password": agent.password, "code": agent.code(clock.now())}
    attempts = [
        {**good, "password": "not the password at all"},
        {**good, "code": "000000" if good["code"] != "000000" else "111111"},
        {**good, "email": "nobody@staff.example"},
    ]
    bodies = []
    for data in attempts:
        response = staff_client.post(
            "/staff/login", data={**data, "csrf_token": csrf_token(staff_client)}
        )
        assert response.status_code == 401
        assert staff_client.get_cookie("leakguard_staff", path="/staff") is None
        body = response.get_data(as_text=True)
        assert "The email, password or code is not right." in body
        bodies.append(body.count("error"))
    assert len(set(bodies)) == 1
    assert audit_count(runtime, "staff.login_refused") == 3


def test_session_cookie_is_httponly_samesite_lax_and_scoped_to_staff(
    staff_client: FlaskClient, agent: StaffLogin, clock: Clock
) -> None:
    clock.advance(timedelta(seconds=30))
    response = staff_client.post(
        "/staff/login",
        data={
            "csrf_token": csrf_token(staff_client),
            "email": agent.email,
            "password": agent.password,
            "code": agent.code(clock.now()),
        },
    )
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("leakguard_staff=")
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Path=/staff" in cookie
    assert "Secure" not in cookie  # development over http; production: next test


def test_a_replayed_login_code_is_refused_as_replayed_not_wrong(
    staff_client: FlaskClient,
    agent: StaffLogin,
    clock: Clock,
    runtime: Runtime,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A right code whose time step signed in already: the same generic answer, but the
    log and the audit row say ``replayed_code`` (someone saw the code), not a typo."""
    log_in(staff_client, agent, clock)
    staff_client.post("/staff/logout", data={"csrf_token": csrf_token(staff_client, "/staff/")})
    replay = {"email": agent.email, "password": agent.password, "code": agent.code(clock.now())}
    caplog.set_level(logging.WARNING)
    response = staff_client.post(
        "/staff/login", data={**replay, "csrf_token": csrf_token(staff_client)}
    )
    assert response.status_code == 401
    assert "The email, password or code is not right." in response.get_data(as_text=True)
    [row] = audit_rows(runtime, "staff.login_refused")
    assert row.detail is not None
    assert row.detail["cause"] == "replayed_code"
    assert any("replayed_code" in record.getMessage() for record in caplog.records)
