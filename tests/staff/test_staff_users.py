"""`leakguard staff ...`, the one-time enrolment link, and the login limits."""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable
from datetime import timedelta

import pyotp
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy import select

from service.models import StaffRole, StaffUser
from service.runtime import Runtime
from tests.support.cli import invoke, output
from tests.support.staff import (
    PASSWORD,
    Clock,
    StaffLogin,
    audit_count,
    audit_rows,
    csrf_token,
    log_in,
)

LINK = re.compile(r"http://localhost:5000(/staff/enrol/[A-Za-z0-9_-]+)")
SECRET = re.compile(r'<code class="secret" id="totp-secret">([A-Z2-7 ]+)</code>')


def create_user(runner: FlaskCliRunner, email: str, role: str) -> str:
    printed = output(runner, "staff", "create-user", email, "--role", role)
    found = LINK.search(printed)
    assert found is not None, printed
    return found.group(1)


def shown_secret(client: FlaskClient, link: str) -> str:
    page = client.get(link)
    assert page.status_code == 200
    assert page.headers["Referrer-Policy"] == "no-referrer"
    found = SECRET.search(page.get_data(as_text=True))
    assert found is not None
    return found.group(1).replace(" ", "")


def enrol(client: FlaskClient, link: str, clock: Clock, **changes: str) -> tuple[int, str]:
    secret = shown_secret(client, link)
    data = {
        "csrf_token": csrf_token(client, link),
        "password": PASSWORD,
        "password_again": PASSWORD,
        "code": pyotp.TOTP(secret).at(clock.now()),
        **changes,
    }
    answer = client.post(link, data=data)
    return answer.status_code, secret


def test_create_user_enrol_through_the_link_then_log_in(
    runner: FlaskCliRunner, staff_client: FlaskClient, clock: Clock, runtime: Runtime
) -> None:
    link = create_user(runner, "Ada@Staff.Example", "agent")
    status, secret = enrol(staff_client, link, clock)
    assert status == 303  # enrolled and signed in
    assert staff_client.get("/staff/").status_code == 200
    assert staff_client.get(link).status_code == 404  # the link is spent
    staff = StaffLogin(1, "ada@staff.example", "agent", PASSWORD, secret)  # type: ignore[arg-type]
    staff_client.delete_cookie("leakguard_staff", path="/staff")
    log_in(staff_client, staff, clock)
    listed = json.loads(output(runner, "staff", "list", "--json"))
    assert listed[0]["email"] == "ada@staff.example"
    assert listed[0]["role"] == "agent"
    assert listed[0]["state"] == "active"
    assert audit_count(runtime, "staff.user_created") == 1
    assert audit_count(runtime, "staff.enrolled") == 1


def test_enrolment_refuses_a_short_password_and_a_wrong_code_and_keeps_the_secret(
    runner: FlaskCliRunner, staff_client: FlaskClient, clock: Clock, runtime: Runtime
) -> None:
    link = create_user(runner, "bo@staff.example", "viewer")
    status, secret = enrol(
        staff_client, link, clock, password="fourteen chars", password_again="fourteen chars"
    )
    assert status == 422
    status, again = enrol(
        staff_client,
        link,
        clock,
        code="000000" if pyotp.TOTP(secret).at(clock.now()) != "000000" else "111111",
    )
    assert status == 422
    assert again == secret  # a reload shows the same secret: the app already holds it
    status, _ = enrol(staff_client, link, clock, password_again=PASSWORD + "x")
    assert status == 422
    with runtime.db.read_session() as session:
        staff = session.scalars(select(StaffUser)).one()
        assert staff.password_hash is None
        assert staff.totp_secret is None
    status, _ = enrol(
        staff_client, link, clock, password="fifteen chars!!", password_again="fifteen chars!!"
    )
    assert status == 303


def test_an_unknown_or_expired_link_shows_nothing(
    runner: FlaskCliRunner, staff_client: FlaskClient, clock: Clock
) -> None:
    assert staff_client.get("/staff/enrol/not-a-token").status_code == 404
    link = create_user(runner, "cy@staff.example", "viewer")
    clock.advance(timedelta(hours=72, minutes=5))  # the CLI read the real time, a bit later
    answer = staff_client.get(link)
    assert answer.status_code == 404
    assert "totp-secret" not in answer.get_data(as_text=True)


def test_disable_and_reset_totp(
    runner: FlaskCliRunner, staff_client: FlaskClient, clock: Clock, runtime: Runtime
) -> None:
    link = create_user(runner, "di@staff.example", "admin")
    assert enrol(staff_client, link, clock)[0] == 303
    printed = output(runner, "staff", "reset-totp", "di@staff.example")
    new_link = LINK.search(printed)
    assert new_link is not None
    assert staff_client.get("/staff/").status_code == 303  # the session ended
    clock.advance(timedelta(seconds=30))
    assert enrol(staff_client, new_link.group(1), clock)[0] == 303
    assert "staff user disabled" in output(runner, "staff", "disable", "di@staff.example")
    assert staff_client.get("/staff/").status_code == 303
    assert "already disabled" in output(runner, "staff", "disable", "di@staff.example")
    assert json.loads(output(runner, "staff", "list", "--json"))[0]["state"] == "disabled"
    assert audit_count(runtime, "staff.totp_reset") == 1
    assert audit_count(runtime, "staff.user_disabled") == 1


def test_bad_input_is_one_line_and_a_failure(runner: FlaskCliRunner) -> None:
    result = invoke(runner, "staff", "create-user", "x@staff.example", "--role", "root")
    assert result.exit_code != 0
    result = invoke(runner, "staff", "create-user", "not an address", "--role", "agent")
    assert result.exit_code == 1
    assert result.output.strip().count("\n") == 0
    output(runner, "staff", "create-user", "x@staff.example", "--role", "agent")
    result = invoke(runner, "staff", "create-user", "X@staff.example", "--role", "agent")
    assert result.exit_code == 1
    assert "exists" in result.output
    result = invoke(runner, "staff", "disable", "nobody@staff.example")
    assert result.exit_code == 1
    assert "no staff user" in result.output


def login_with(client: FlaskClient, staff: StaffLogin, clock: Clock, password: str) -> int:
    clock.advance(timedelta(seconds=30))
    return client.post(
        "/staff/login",
        data={
            "csrf_token": csrf_token(client),
            "email": staff.email,
            "password": password,
            "code": staff.code(clock.now()),
        },
    ).status_code


def test_refused_logins_are_limited_per_account(
    make_app: Callable[..., Flask], agent: StaffLogin, clock: Clock
) -> None:
    client = make_app(rate_limit_staff_login_account="3/15minutes").test_client()
    assert [login_with(client, agent, clock, "a wrong password!!") for _ in range(3)] == [401] * 3
    assert login_with(client, agent, clock, agent.password) == 429  # even the right one, now
    other = make_app(rate_limit_staff_login_account="3/15minutes").test_client()
    assert login_with(other, agent, clock, agent.password) == 303  # another process's memory


def login_as(
    client: FlaskClient, typed: str, staff: StaffLogin, clock: Clock, password: str
) -> int:
    clock.advance(timedelta(seconds=30))
    return client.post(
        "/staff/login",
        data={
            "csrf_token": csrf_token(client),
            "email": typed,
            "password": password,
            "code": staff.code(clock.now()),
        },
    ).status_code


def test_every_spelling_of_one_staff_email_spends_one_budget(
    make_app: Callable[..., Flask], agent: StaffLogin, clock: Clock
) -> None:
    """The login reads the email as email-validator does (case, IDNA mapping of the
    domain: a full-width letter is its ASCII one), so each of these signs in to the agent;
    the per-account budget was keyed on the text as typed, one budget per spelling."""
    spellings = [
        "AGENT@STAFF.EXAMPLE",
        "agent@\uff53taff.example",  # full-width s
        "agent@staff.\uff45xample",  # full-width e
        " agent@STAFF.\uff45\uff58ample ",
    ]
    for typed in spellings:  # each is the agent's account: the right password signs in
        fresh = make_app().test_client()
        assert login_as(fresh, typed, agent, clock, agent.password) == 303, typed
    client = make_app(rate_limit_staff_login_account="4/15minutes").test_client()
    refused = [login_as(client, typed, agent, clock, "a wrong password!!") for typed in spellings]
    assert refused == [401] * 4
    assert login_with(client, agent, clock, agent.password) == 429


def test_a_limited_login_says_when_to_retry_and_is_audited(
    make_app: Callable[..., Flask], agent: StaffLogin, clock: Clock, runtime: Runtime
) -> None:
    """429 with ``Retry-After`` in whole seconds (RFC 9110 section 10.2.3), the same wait
    on the page, and an audit row naming the staff account, the typed address masked."""
    client = make_app(rate_limit_staff_login_account="2/15minutes").test_client()
    for _ in range(2):
        login_with(client, agent, clock, "a wrong password!!")
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
    assert answer.status_code == 429
    wait = int(answer.headers["Retry-After"])
    assert 1 <= wait <= 15 * 60
    assert re.search(r"Try again in \d+ (seconds|minutes)\.", answer.get_data(as_text=True))
    [row] = audit_rows(runtime, "staff.login_limited")
    assert (row.actor, row.target) == ("anonymous", f"staff:{agent.id}")
    assert row.detail is not None
    assert row.detail["reason"] == "too_many_attempts"
    assert row.detail["route"] == "staff.login"
    assert row.detail["email"] == "a***@staff.example"
    assert agent.email not in json.dumps(row.detail)


def test_refused_logins_are_limited_per_ip(
    make_app: Callable[..., Flask], agent: StaffLogin, viewer: StaffLogin, clock: Clock
) -> None:
    client = make_app(rate_limit_staff_login_ip="2/15minutes").test_client()
    assert login_with(client, agent, clock, "a wrong password!!") == 401
    assert login_with(client, viewer, clock, "a wrong password!!") == 401
    assert login_with(client, viewer, clock, viewer.password) == 429


def test_logins_are_refused_when_the_limit_store_is_down(
    make_app: Callable[..., Flask], agent: StaffLogin, clock: Clock
) -> None:
    client = make_app(redis_url="redis://127.0.0.1:1/0").test_client()
    assert login_with(client, agent, clock, agent.password) == 503
    answer = client.post(
        "/staff/login",
        data={
            "csrf_token": csrf_token(client),
            **{"email": agent.email, "password": agent.password, "code": "123456"},
        },
    )
    assert int(answer.headers["Retry-After"]) > 0


def test_a_password_typed_in_another_unicode_form_is_the_same_password(
    runner: FlaskCliRunner, staff_client: FlaskClient, clock: Clock, staff_app: Flask
) -> None:
    """Trial: enrolled with a composed (NFC) passphrase, the same one typed decomposed (NFD,
    as some keyboards and systems send it) was refused. SP 800-63B 5.1.1.2: normalize."""
    composed = "Prüfungsangst im Café, 日本語 ①"
    decomposed = unicodedata.normalize("NFD", composed)
    assert decomposed != composed
    link = create_user(runner, "uni@staff.example", "viewer")
    status, secret = enrol(staff_client, link, clock, password=composed, password_again=composed)
    assert status == 303
    staff_client.post("/staff/logout", data={"csrf_token": csrf_token(staff_client, "/staff/")})
    login = StaffLogin(0, "uni@staff.example", StaffRole.VIEWER, decomposed, secret)
    assert login_with(staff_app.test_client(), login, clock, decomposed) == 303
    assert login_with(staff_app.test_client(), login, clock, composed + "x") == 401


def test_a_limited_reauthentication_says_when_to_retry_and_is_audited(
    make_app: Callable[..., Flask], agent: StaffLogin, clock: Clock, runtime: Runtime
) -> None:
    client = make_app(rate_limit_staff_login_account="1/15minutes").test_client()
    log_in(client, agent, clock)  # a success spends nothing
    wrong = "000000" if agent.code(clock.now()) != "000000" else "111111"
    for status in (401, 429):
        answer = client.post(
            "/staff/reauth",
            data={"csrf_token": csrf_token(client, "/staff/reauth"), "code": wrong},
        )
        assert answer.status_code == status
    assert 1 <= int(answer.headers["Retry-After"]) <= 15 * 60
    assert "Try again in" in answer.get_data(as_text=True)
    [row] = audit_rows(runtime, "staff.reauth_limited")
    assert (row.actor, row.target) == (f"staff:{agent.id}", f"staff:{agent.id}")
    assert row.detail is not None
    assert row.detail["reason"] == "too_many_attempts"
