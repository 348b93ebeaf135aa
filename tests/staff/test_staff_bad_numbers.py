"""Numbers a person (or a forged request) puts in a staff URL or form: one too big for the
code or the database, negative, not digits, another script's digits. Each is a clean 4xx
page, never a 500 (issue 17, second trial); on SQLite and PostgreSQL."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.routing import IntegerConverter

from service.models import StaffRole
from service.runtime import Runtime
from tests.support.factories import LEAK, expose, make_account
from tests.support.staff import Clock, StaffLogin, csrf_token, log_in, make_staff, reauthenticate

# Beyond a Python timedelta, beyond PostgreSQL's bigint by one, negative, no number, and
# Arabic-Indic digits (Python's int() reads them as 12).
BAD_NUMBERS = ("99999999999999999999", str(2**63), "-5", "12x", "١٢", "1_000", " ")
TOO_BIG_IDS = (2**63, 10**30)
NAV = '<nav aria-label="Main">'


@pytest.fixture
def admin(runtime: Runtime, clock: Clock) -> StaffLogin:
    return make_staff(runtime, "admin@staff.example", StaffRole.ADMIN, now=clock.now())


def refused_cleanly(response: object, status: int = 400) -> str:
    text = response.get_data(as_text=True)  # type: ignore[attr-defined]
    assert response.status_code == status, text[:300]  # type: ignore[attr-defined]
    assert NAV in text  # the staff page with its nav, not a bare error
    return text


def test_every_bad_hold_length_is_the_400_page(
    runtime: Runtime, staff_client: FlaskClient, agent: StaffLogin, clock: Clock
) -> None:
    account_id = make_account(runtime, "jane", "jane@example.org")
    log_in(staff_client, agent, clock)
    page = f"/staff/accounts/{account_id}"
    token = csrf_token(staff_client, page)
    for hours in (*BAD_NUMBERS, "0"):
        response = staff_client.post(
            f"{page}/force-step-up", data={"csrf_token": token, "hours": hours}
        )
        if hours == " ":  # blank: no end of its own, as the form says
            assert response.status_code == 303
            continue
        assert "whole hours" in refused_cleanly(response), hours
    # Within what the code holds, the domain's bounds judge (1 h to 365 d), with its 422.
    too_long = staff_client.post(
        f"{page}/force-step-up", data={"csrf_token": token, "hours": "23999999999"}
    )
    assert "a hold lasts from 1 hour to 365 days" in refused_cleanly(too_long, 422)
    ok = staff_client.post(f"{page}/force-step-up", data={"csrf_token": token, "hours": "8760"})
    assert ok.status_code == 303


def test_every_bad_audit_page_cursor_is_the_400_page(
    staff_client: FlaskClient, agent: StaffLogin, clock: Clock
) -> None:
    log_in(staff_client, agent, clock)
    for before in BAD_NUMBERS:
        refused_cleanly(staff_client.get("/staff/audit", query_string={"before": before}))
    assert staff_client.get("/staff/audit?before=5").status_code == 200


def test_every_bad_notice_id_and_confirmed_count_is_the_400_page(
    runtime: Runtime, staff_client: FlaskClient, agent: StaffLogin, clock: Clock
) -> None:
    expose(runtime, make_account(runtime, "ann", "ann@example.org"))
    log_in(staff_client, agent, clock)
    token = csrf_token(staff_client, "/staff/queues/failed-notices")
    bulk = "/staff/queues/bulk-dismiss"
    for bad in (*BAD_NUMBERS, "²"):
        if not bad.strip():
            continue  # blank: all of the leak; a first (dry-run) post
        retry = staff_client.post(
            f"/staff/queues/failed-notices/{LEAK}/retry",
            data={"csrf_token": token, "ids": f"3, {bad}"},
        )
        refused_cleanly(retry)
        confirm = staff_client.post(
            bulk,
            data={"csrf_token": token, "leak": LEAK, "reason": "x", "confirmed_count": bad},
        )
        refused_cleanly(confirm)


def int_routes(app: Flask) -> list[tuple[str, str, list[str]]]:
    """(rule, method, int arguments) of every route with an ``<int:...>`` part."""
    found = []
    for rule in app.url_map.iter_rules():
        converters = rule._converters.items()
        ints = [name for name, conv in converters if isinstance(conv, IntegerConverter)]
        if ints:
            for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
                found.append((rule.rule, method, ints))
    return found


def test_an_id_too_big_for_the_database_is_a_404_on_every_int_route(
    staff_app: Flask, staff_client: FlaskClient, admin: StaffLogin, clock: Clock
) -> None:
    routes = int_routes(staff_app)
    assert any(rule.startswith("/staff/accounts/") for rule, _, _ in routes)
    log_in(staff_client, admin, clock)
    reauthenticate(staff_client, admin, clock)
    token = csrf_token(staff_client, "/staff/accounts")
    for rule, method, ints in routes:
        for big in TOO_BIG_IDS:
            path = rule
            for name in re.findall(r"<([^>]+)>", rule):
                value = str(big) if name.split(":")[-1] in ints else "x"
                path = path.replace(f"<{name}>", value)
            response = staff_client.open(path, method=method, data={"csrf_token": token})
            assert response.status_code == 404, (method, path, response.status_code)
            if path.startswith("/staff/"):
                assert NAV in response.get_data(as_text=True), path
