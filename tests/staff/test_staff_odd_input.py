"""Odd input on the staff pages, as a person or a tampered form sends it: every answer is
a staff page with a 4xx, never a 500, and nothing is stored from it."""

from __future__ import annotations

import html

import pytest
from flask.testing import FlaskClient

from service.runtime import Runtime
from tests.support.factories import expose, make_account
from tests.support.staff import Clock, StaffLogin, audit_count, csrf_token, log_in

NUL = "\x00"


@pytest.fixture
def signed_in(staff_client: FlaskClient, agent: StaffLogin, clock: Clock) -> FlaskClient:
    log_in(staff_client, agent, clock)
    return staff_client


@pytest.fixture
def account_id(runtime: Runtime) -> int:
    account = make_account(runtime, "jane", "jane@example.org")
    expose(runtime, account, slug="exchange-2019")
    return account


@pytest.mark.parametrize(
    ("path", "status"),
    [
        (f"/staff/leaks/{NUL}", 404),
        (f"/staff/leaks/exchange{NUL}/progress", 404),
        (f"/staff/leaks/{NUL}/funnel.svg", 404),
        (f"/staff/leaks/{NUL}/preview", 404),
        (f"/staff/queues/failed-notices?leak={NUL}", 400),
        (f"/staff/queues/bulk-dismiss?leak=x{NUL}", 400),
        (f"/staff/audit?actor={NUL}", 400),
        (f"/staff/audit?account=jane{NUL}", 400),
        (f"/staff/audit?leak={NUL}", 400),
        (f"/staff/audit?action=staff.{NUL}", 400),
        (f"/staff/login?next=/staff/{NUL}", 400),
    ],
)
def test_a_nul_in_a_page_address_is_a_4xx_page_not_a_500(
    signed_in: FlaskClient, runtime: Runtime, path: str, status: int
) -> None:
    """PostgreSQL holds no NUL in any text: each of these was the 500 page there."""
    before = audit_count(runtime)
    answer = signed_in.get(path)
    assert (answer.status_code, answer.mimetype) == (status, "text/html"), path
    assert "NUL" in answer.get_data(as_text=True)
    assert audit_count(runtime) == before


@pytest.mark.parametrize(
    ("path", "form"),
    [
        ("/staff/accounts", {"q": NUL}),
        ("/staff/accounts", {"q": f"jane{NUL}@example.org"}),
        ("/staff/accounts/{id}/lock", {"reason": f"called{NUL}in"}),
        ("/staff/accounts/{id}/clear-hold", {"reason": f"ok{NUL}"}),
        ("/staff/accounts/{id}/exposures/exchange-2019/resolve", {"reason": f"{NUL}"}),
        (f"/staff/accounts/{{id}}/exposures/{NUL}/dismiss", {"reason": "why"}),
        (f"/staff/accounts/{{id}}/warnings/x{NUL}/resend", {}),
        (f"/staff/queues/email-change/{NUL}/deny", {"reason": "no"}),
        ("/staff/queues/bulk-dismiss", {"leak": "exchange-2019", "reason": f"a{NUL}b"}),
        ("/staff/queues/failed-notices/exchange-2019/retry", {"ids": f"1{NUL}"}),
        ("/staff/audit/export.csv", {"leak": NUL}),
        ("/staff/audit/export.csv", {"actor": f"staff:1{NUL}"}),
    ],
)
def test_a_nul_in_a_form_is_refused_and_nothing_is_stored(
    signed_in: FlaskClient, runtime: Runtime, account_id: int, path: str, form: dict[str, str]
) -> None:
    """A reason, a look-up or a filter holding NUL: the 400 page naming the field (404 for
    a path), not a 500 on PostgreSQL and a stored NUL on SQLite; no audit row either."""
    token = csrf_token(signed_in, f"/staff/accounts/{account_id}")
    before = audit_count(runtime)
    answer = signed_in.post(path.format(id=account_id), data={"csrf_token": token, **form})
    assert answer.mimetype == "text/html", path
    assert answer.status_code in {400, 404}, path
    page = html.unescape(answer.get_data(as_text=True))
    assert "NUL" in page
    if answer.status_code == 400:
        [field] = [name for name, value in form.items() if NUL in value]
        assert f'"{field}"' in page  # the field is named
    assert audit_count(runtime) == before


@pytest.mark.parametrize(
    "value",
    [
        "0001-01-01T00:00+14:00",  # year 0 in UTC
        "0001-01-01T05:00:00+05:01",
        "9999-12-31T23:59-14:00",  # year 10000 in UTC
        "9999-12-31T23:59:59.999999-00:01",
    ],
)
def test_an_audit_time_past_the_calendar_in_utc_is_named_not_a_500(
    signed_in: FlaskClient, runtime: Runtime, value: str
) -> None:
    """The filters read any ISO 8601 time with an offset; one whose UTC time falls outside
    years 1-9999 raised OverflowError (a 500) on the page and in the export."""
    for name in ("since", "until"):
        page = signed_in.get("/staff/audit", query_string={name: value})
        assert (page.status_code, page.mimetype) == (200, "text/html")
        assert f"{name}: not a date and time from year 1 to 9999" in page.get_data(as_text=True)
        before = audit_count(runtime)
        export = signed_in.post(
            "/staff/audit/export.csv",
            data={"csrf_token": csrf_token(signed_in, "/staff/audit"), name: value},
        )
        assert export.status_code == 400
        assert f"{name}: not a date and time" in export.get_data(as_text=True)
        assert audit_count(runtime) == before


def test_an_audit_time_at_the_calendar_ends_within_it_filters(
    signed_in: FlaskClient, runtime: Runtime
) -> None:
    """The ends themselves, in UTC or with an offset that keeps them inside, still filter."""
    for query in (
        {"since": "0001-01-01T00:00"},
        {"since": "0001-01-01T00:00-01:00"},
        {"until": "9999-12-31T23:59+01:00"},
    ):
        page = signed_in.get("/staff/audit", query_string=query)
        assert page.status_code == 200
        text = page.get_data(as_text=True)
        assert "not a date and time" not in text
        assert "staff.login" in text  # the agent's own login, inside both ends
