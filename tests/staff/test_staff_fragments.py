"""htmx fragments (the leak list's rows, a leak's progress, its funnel chart) after the
session ended: the browser is sent to log in and comes back to the page it shows, never
to the bare fragment (issue 17, second trial); on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from flask import Flask
from flask.testing import FlaskClient

from service.runtime import Runtime
from service.staff.access import fragment_parent
from service.staff.sessions import IDLE_TIMEOUT
from tests.support.factories import make_account
from tests.support.staff import Clock, StaffLogin, csrf_token, log_in

TEMPLATES = Path(__file__).resolve().parents[2] / "service/staff/templates/staff"
# An htmx request's target in a template: hx-get="{{ url_for('staff.leak_rows') }}".
HX_TARGET = re.compile(r"""hx-(?:get|post|put|patch|delete)="\{\{ url_for\('([a-z_.]+)'""")


def next_of(answer: object) -> str:
    target = answer.headers["HX-Redirect"]  # type: ignore[attr-defined]
    assert target.startswith("/staff/login?")
    [value] = parse_qs(urlsplit(target).query)["next"]
    return str(value)


def poll(client: FlaskClient, path: str, shown: str | None = None) -> str:
    headers = {"HX-Request": "true"}
    if shown is not None:
        headers["HX-Current-URL"] = shown
    answer = client.get(path, headers=headers)
    assert answer.status_code == 204, path
    return next_of(answer)


def test_every_htmx_target_in_a_template_is_a_fragment_of_a_page(staff_app: Flask) -> None:
    targets = {
        endpoint
        for template in TEMPLATES.glob("*.html")
        for endpoint in HX_TARGET.findall(template.read_text())
    }
    assert {"staff.leak_rows", "staff.leak_progress"} <= targets
    for endpoint in targets:
        parent = fragment_parent(staff_app.view_functions[endpoint])
        assert parent in staff_app.view_functions, endpoint


def test_an_idle_poll_sends_the_login_back_to_the_page_it_polls_from(
    staff_client: FlaskClient, agent: StaffLogin, clock: Clock
) -> None:
    log_in(staff_client, agent, clock)
    clock.advance(IDLE_TIMEOUT + timedelta(minutes=1))
    shown = "http://localhost/staff/leaks?sort=new"
    assert poll(staff_client, "/staff/leaks/rows", shown) == "/staff/leaks?sort=new"
    # No HX-Current-URL, or one of another site: the page the fragment belongs to.
    assert poll(staff_client, "/staff/leaks/rows") == "/staff/leaks"
    assert poll(staff_client, "/staff/leaks/rows", "https://evil.example/staff/x") == "/staff/leaks"
    assert poll(staff_client, "/staff/leaks/rows", "http://localhost/elsewhere") == "/staff/leaks"
    assert poll(staff_client, "/staff/leaks/s1/progress") == "/staff/leaks/s1"
    assert poll(staff_client, "/staff/leaks/s1/funnel.svg") == "/staff/leaks/s1"
    # A plain request of a fragment, as a stale login link may carry it: the same.
    plain = staff_client.get("/staff/leaks/s1/progress")
    assert plain.headers["Location"] == "/staff/login?next=/staff/leaks/s1"


def test_signing_in_with_a_fragment_as_next_lands_on_its_page(
    staff_client: FlaskClient, agent: StaffLogin, clock: Clock
) -> None:
    for fragment, page in (
        ("/staff/leaks/rows", "/staff/leaks"),
        ("/staff/leaks/s1/progress?x=1", "/staff/leaks/s1"),
        ("/staff/leaks", "/staff/leaks"),  # a page is kept as it is
    ):
        clock.advance(timedelta(seconds=30))
        answer = staff_client.post(
            "/staff/login",
            data={
                "csrf_token": csrf_token(staff_client),
                "email": agent.email,
                "password": agent.password,
                "code": agent.code(clock.now()),
                "next": fragment,
            },
        )
        assert answer.status_code == 303, answer.get_data(as_text=True)
        assert answer.headers["Location"] == page


def test_an_htmx_action_without_a_referer_comes_back_to_the_page_htmx_names(
    runtime: Runtime, staff_client: FlaskClient, agent: StaffLogin, clock: Clock
) -> None:
    account_id = make_account(runtime, "jane", "jane@example.org")
    log_in(staff_client, agent, clock)
    page = f"/staff/accounts/{account_id}"
    token = csrf_token(staff_client, page)
    clock.advance(timedelta(minutes=6))  # past the re-authentication window
    answer = staff_client.post(
        f"{page}/reveal",
        headers={
            "X-CSRFToken": token,
            "HX-Request": "true",
            "HX-Current-URL": f"http://localhost{page}",
        },
    )
    assert answer.status_code == 204
    assert answer.headers["HX-Redirect"] == f"/staff/reauth?next={page}"
