"""Walks over every /staff route of ``app.url_map``: without a CSRF token, without a
session, with a viewer's session; and the default-deny check itself. The walks pick up
every page added later, whoever adds it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.routing import Rule

from service.models import StaffRole, StaffUser
from service.runtime import Runtime
from service.staff.access import PUBLIC, RANK, declared_access, undeclared_views
from service.staff.users import create_staff_user
from tests.support.factories import make_account
from tests.support.staff import (
    Clock,
    StaffLogin,
    audit_count,
    audit_rows,
    csrf_token,
    log_in,
    make_staff,
)

UNSAFE = ("POST", "PUT", "PATCH", "DELETE")


def staff_rules(app: Flask) -> Iterator[Rule]:
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("staff.") and rule.endpoint != "staff.static":
            yield rule


def url_of(rule: Rule, account_id: int) -> str:
    """The rule's path with a value for each argument (an existing account for account ids;
    the walks check what happens before a view reads its arguments)."""
    values: dict[str, object] = {}
    for name in rule.arguments:
        converter = rule._converters[name]  # werkzeug keeps no public map
        if name == "account_id":
            values[name] = account_id
        elif type(converter).__name__ in {"IntegerConverter", "FloatConverter"}:
            values[name] = 1
        else:
            values[name] = "x"
    path = rule.build(values, append_unknown=False)
    assert path is not None
    return path[1]


def access_of(app: Flask, rule: Rule) -> StaffRole | str | None:
    return declared_access(app.view_functions[rule.endpoint])


@pytest.fixture
def account_id(runtime: Runtime) -> int:
    return make_account(runtime, "jane", "jane@example.org")


def test_every_staff_view_declares_its_access(staff_app: Flask) -> None:
    rules = list(staff_rules(staff_app))
    assert len(rules) >= 8
    undeclared = [rule.endpoint for rule in rules if access_of(staff_app, rule) is None]
    assert undeclared == []


def test_a_view_that_declares_nothing_is_refused_even_when_signed_in(
    staff_app: Flask, staff_client: FlaskClient, agent: StaffLogin, clock: Clock
) -> None:
    staff_app.add_url_rule(
        "/staff/undeclared", endpoint="staff.undeclared", view_func=lambda: "open by omission"
    )
    assert undeclared_views(staff_app) == ["staff.undeclared"]  # create_app refuses that
    assert staff_client.get("/staff/undeclared").status_code == 403
    log_in(staff_client, agent, clock)
    answer = staff_client.get("/staff/undeclared")
    assert answer.status_code == 403
    assert "open by omission" not in answer.get_data(as_text=True)


def test_every_unsafe_staff_route_without_a_csrf_token_is_refused(
    staff_app: Flask, staff_client: FlaskClient, runtime: Runtime, clock: Clock, account_id: int
) -> None:
    admin = make_staff(runtime, "admin@staff.example", StaffRole.ADMIN, now=clock.now())
    log_in(staff_client, admin, clock)
    before = audit_count(runtime)
    walked = 0
    for rule in staff_rules(staff_app):
        for method in UNSAFE:
            if method not in (rule.methods or ()):
                continue
            path = url_of(rule, account_id)
            for token in ({}, {"csrf_token": "forged"}):
                answer = staff_client.open(path, method=method, data={"q": "jane", **token})
                assert answer.status_code == 400, (method, path, answer.status_code)
            walked += 1
    assert walked >= 5  # login, logout, reauth, enrol, look-up, reveal at least
    # Nothing happened, and each refusal is in the trail (a security decision).
    assert audit_count(runtime) == before + 2 * walked
    refusals = audit_rows(runtime, "staff.request_refused")
    assert len(refusals) == 2 * walked
    assert {row.detail["reason"] for row in refusals if row.detail} == {"csrf"}


def test_every_staff_route_without_a_session_redirects_to_login(
    staff_app: Flask, staff_client: FlaskClient, account_id: int
) -> None:
    token = csrf_token(staff_client)
    walked = 0
    for rule in staff_rules(staff_app):
        if access_of(staff_app, rule) == PUBLIC:
            continue
        path = url_of(rule, account_id)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            data = {"csrf_token": token} if method in UNSAFE else None
            answer = staff_client.open(path, method=method, data=data)
            assert answer.status_code == 303, (method, path, answer.status_code)
            assert answer.headers["Location"].startswith("/staff/login?next="), path
            walked += 1
    assert walked >= 6


def test_an_htmx_request_without_a_session_is_sent_to_login_by_header(
    staff_client: FlaskClient,
) -> None:
    answer = staff_client.get("/staff/audit", headers={"HX-Request": "true"})
    assert answer.status_code == 204
    assert answer.headers["HX-Redirect"].startswith("/staff/login?next=")


def test_a_viewer_is_refused_every_agent_and_admin_route(
    staff_app: Flask,
    staff_client: FlaskClient,
    viewer: StaffLogin,
    clock: Clock,
    runtime: Runtime,
    account_id: int,
) -> None:
    log_in(staff_client, viewer, clock)
    before = audit_count(runtime)
    refused = 0
    for rule in staff_rules(staff_app):
        access = access_of(staff_app, rule)
        if access == PUBLIC or RANK[StaffRole(str(access))] <= RANK[StaffRole.VIEWER]:
            continue
        path = url_of(rule, account_id)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            token = csrf_token(staff_client, "/staff/accounts")
            data = {"csrf_token": token} if method in UNSAFE else None
            answer = staff_client.open(path, method=method, data=data)
            assert answer.status_code == 403, (method, path, answer.status_code)
            refused += 1
    assert refused >= 2  # reveal, audit export at least
    # Each refusal is audited (who, which route, why), and nothing else happened.
    assert audit_count(runtime) == before + refused
    rows = audit_rows(runtime, "staff.access_refused")
    assert len(rows) == refused
    for row in rows:
        assert row.actor == f"staff:{viewer.id}"
        assert row.detail is not None
        assert row.detail["reason"] == "role"
        assert row.detail["role"] == "viewer"
        assert row.detail["route"].startswith("staff.")
        assert row.detail["needs"] in {"agent", "admin"}


def test_the_viewer_pages_open_for_a_viewer(
    staff_client: FlaskClient, viewer: StaffLogin, clock: Clock, account_id: int
) -> None:
    log_in(staff_client, viewer, clock)
    for path in ("/staff/", "/staff/accounts", f"/staff/accounts/{account_id}", "/staff/audit"):
        answer = staff_client.get(path)
        assert answer.status_code == 200, path
        assert "Reveal address" not in answer.get_data(as_text=True)


def test_an_htmx_request_may_send_its_csrf_token_as_a_header(
    staff_client: FlaskClient, viewer: StaffLogin, clock: Clock, runtime: Runtime, account_id: int
) -> None:
    log_in(staff_client, viewer, clock)
    token = csrf_token(staff_client, "/staff/accounts")
    answer = staff_client.post(
        "/staff/accounts",
        data={"q": "jane"},
        headers={"X-CSRFToken": token, "HX-Request": "true"},
        follow_redirects=True,
    )
    assert answer.status_code == 200
    assert f"/staff/accounts/{account_id}" in answer.get_data(as_text=True)
    assert audit_count(runtime, "staff.account_lookup") == 1
    refused = staff_client.post(
        "/staff/accounts", data={"q": "jane"}, headers={"X-CSRFToken": "forged"}
    )
    assert refused.status_code == 400
    assert audit_count(runtime, "staff.account_lookup") == 1


def test_an_htmx_action_that_needs_a_fresh_code_loads_the_reauth_page_whole(
    staff_client: FlaskClient, agent: StaffLogin, clock: Clock, account_id: int
) -> None:
    log_in(staff_client, agent, clock)
    clock.advance(timedelta(minutes=6))
    page = f"/staff/accounts/{account_id}"
    answer = staff_client.post(
        f"{page}/reveal",
        headers={
            "X-CSRFToken": csrf_token(staff_client, page),
            "HX-Request": "true",
            "Referer": f"http://localhost{page}",
        },
    )
    assert answer.status_code == 204
    assert answer.headers["HX-Redirect"] == f"/staff/reauth?next={page}"


def test_the_return_address_after_reauthentication_stays_on_this_site(
    staff_client: FlaskClient, agent: StaffLogin, clock: Clock
) -> None:
    log_in(staff_client, agent, clock)
    for target in (
        "https://evil.example/staff/",
        "//evil.example/staff/",
        "/v1/accounts",
        "/staff//x",
        # dot segments leave /staff once resolved (was: kept, a way off the staff site)
        "/staff/../v1/accounts",
        "/staff/%2e%2e/v1/accounts",
        "/staff/.%2E/email-change/confirm",
        "/staff/./../v1",
    ):
        page = staff_client.get(f"/staff/reauth?next={target}").get_data(as_text=True)
        assert 'name="next" type="hidden" value="/staff/"' in page, target


def test_a_csrf_token_read_before_the_login_does_not_pass_after_it(
    staff_client: FlaskClient, agent: StaffLogin, clock: Clock, runtime: Runtime, account_id: int
) -> None:
    """Trial: an attacker who fixed the Flask session cookie on a victim's browser before
    the login kept a token that passed after it (the CSRF secret outlived the login)."""
    before = csrf_token(staff_client)
    log_in(staff_client, agent, clock)
    answer = staff_client.post("/staff/accounts", data={"q": "jane", "csrf_token": before})
    assert answer.status_code == 400
    assert audit_count(runtime, "staff.account_lookup") == 0
    fresh = csrf_token(staff_client, "/staff/accounts")
    assert fresh != before
    assert (
        staff_client.post("/staff/accounts", data={"q": "jane", "csrf_token": fresh}).status_code
        == 303
    )


@pytest.mark.parametrize("origin", ["https://evil.example", "null", "http://localhost.evil:80"])
def test_a_form_sent_from_another_site_is_refused_even_with_a_valid_token(
    staff_client: FlaskClient,
    agent: StaffLogin,
    clock: Clock,
    runtime: Runtime,
    account_id: int,
    origin: str,
) -> None:
    log_in(staff_client, agent, clock)
    token = csrf_token(staff_client, "/staff/accounts")
    refused = staff_client.post(
        "/staff/accounts", data={"q": "jane", "csrf_token": token}, headers={"Origin": origin}
    )
    assert refused.status_code == 403
    assert audit_count(runtime, "staff.account_lookup") == 0
    same_site = staff_client.post(
        "/staff/accounts",
        data={"q": "jane", "csrf_token": token},
        headers={"Origin": "http://localhost"},  # the test client's own host
    )
    assert same_site.status_code == 303
    assert audit_count(runtime, "staff.account_lookup") == 1


def test_the_public_forms_take_a_null_origin_but_not_another_site(
    staff_client: FlaskClient, agent: StaffLogin, clock: Clock
) -> None:
    """The enrolment page's no-referrer policy makes browsers send ``Origin: null`` from
    it; a public form has no session to ride on and keeps its CSRF token."""
    clock.advance(timedelta(seconds=30))
    form = {
        "csrf_token": csrf_token(staff_client),
        "email": agent.email,
        "password": agent.password,
        "code": agent.code(clock.now()),
    }
    other = staff_client.post("/staff/login", data=form, headers={"Origin": "https://evil.example"})
    assert other.status_code == 403
    sandboxed = staff_client.post("/staff/login", data=form, headers={"Origin": "null"})
    assert sandboxed.status_code == 303


def test_an_unknown_staff_path_is_the_staff_sites_404_page_with_its_nav(
    staff_client: FlaskClient, agent: StaffLogin, clock: Clock
) -> None:
    """Under /staff a person gets the staff layout (nav, who is signed in); the API keeps
    problem+json for its own paths."""
    anonymous = staff_client.get("/staff/no-such-page")
    assert anonymous.status_code == 404
    assert anonymous.mimetype == "text/html"
    log_in(staff_client, agent, clock)
    for path, status in (("/staff/no-such-page", 404), ("/staff/accounts/1/nothing", 404)):
        answer = staff_client.get(path)
        assert (answer.status_code, answer.mimetype) == (status, "text/html"), path
        page = answer.get_data(as_text=True)
        assert 'href="/staff/leaks"' in page
        assert agent.email in page
    wrong_method = staff_client.get("/staff/logout")
    assert (wrong_method.status_code, wrong_method.mimetype) == (405, "text/html")
    assert "POST" in wrong_method.headers["Allow"]
    assert 'href="/staff/audit"' in wrong_method.get_data(as_text=True)
    api = staff_client.get("/v1/no-such-endpoint")
    assert (api.status_code, api.mimetype) == (404, "application/problem+json")
    assert staff_client.get("/staffing").mimetype == "application/problem+json"


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/staff/login", 200),
        ("GET", "/staff/no-such-page", 404),
        ("GET", "/staff/accounts/9223372036854775808", 404),  # beyond any id: unrouted
        ("GET", "/staff/accounts/1/nothing", 404),
        ("GET", "/staff/logout", 405),
        ("GET", "/staff/static/no-such-file.js", 404),
        ("POST", "/staff/logout", 400),  # no CSRF token
    ],
)
def test_every_staff_answer_has_the_security_headers(
    staff_client: FlaskClient, agent: StaffLogin, clock: Clock, method: str, path: str, status: int
) -> None:
    """An unrouted path's page (404, 405) belongs to no blueprint: it had no CSP, no
    frame-ancestors and no no-store, though it shows the signed-in user's email."""
    log_in(staff_client, agent, clock)
    answer = staff_client.open(path, method=method)
    assert answer.status_code == status
    assert "frame-ancestors 'none'" in answer.headers["Content-Security-Policy"]
    assert answer.headers["X-Frame-Options"] == "DENY"
    assert answer.headers["Cache-Control"] == "no-store"
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    api = staff_client.get("/v1/no-such-endpoint")
    assert "X-Frame-Options" not in api.headers  # the API's answers are not pages


def test_the_csrf_refusal_page_has_the_staff_layout(
    staff_client: FlaskClient, agent: StaffLogin, clock: Clock, runtime: Runtime
) -> None:
    # Without a session a forged form is only logged: anyone may send them, and each must
    # not cost a row in the trail.
    anonymous = staff_client.post("/staff/login", data={"csrf_token": "forged"})
    assert anonymous.status_code == 400
    assert audit_rows(runtime, "staff.request_refused") == []
    log_in(staff_client, agent, clock)
    answer = staff_client.post("/staff/logout", data={"csrf_token": "forged"})
    assert answer.status_code == 400
    page = answer.get_data(as_text=True)
    assert "Form expired" in page
    assert 'href="/staff/leaks"' in page
    assert agent.email in page
    [row] = audit_rows(runtime, "staff.request_refused")
    assert row.actor == f"staff:{agent.id}"


def test_no_staff_get_writes_an_audit_row_or_changes_a_staff_user(
    staff_app: Flask, staff_client: FlaskClient, runtime: Runtime, clock: Clock, account_id: int
) -> None:
    """A GET is safe (RFC 9110 section 9.2.1): walked over every staff page, with the
    query arguments the pages read, nothing is audited and no staff row changes (only the
    session's own last-use time moves)."""
    admin = make_staff(runtime, "admin@staff.example", StaffRole.ADMIN, now=clock.now())
    pending = create_staff_user_now(runtime, clock)
    log_in(staff_client, admin, clock)
    before = audit_count(runtime), staff_rows(runtime)
    walked = 0
    for rule in staff_rules(staff_app):
        if "GET" not in (rule.methods or ()):
            continue
        path = url_of(rule, account_id)
        if rule.endpoint == "staff.enrol":
            path = f"/staff/enrol/{pending}"
        for query in ("", "?q=jane", "?q=jane@example.org&leak=x&actor=x"):
            staff_client.get(path + query)
        walked += 1
    assert walked >= 10
    assert (audit_count(runtime), staff_rows(runtime)) == before


def create_staff_user_now(runtime: Runtime, clock: Clock) -> str:
    """An enrolment link's token for a new staff user (not enrolled)."""
    with runtime.db.transaction() as session:
        enrolment = create_staff_user(
            session, email="new@staff.example", role=StaffRole.VIEWER, actor="t", now=clock.now()
        )
    return enrolment.token


def staff_rows(runtime: Runtime) -> list[tuple[object, ...]]:
    with runtime.db.read_session() as session:
        table = StaffUser.__table__
        return [tuple(row) for row in session.execute(select(table).order_by(table.c.id))]
