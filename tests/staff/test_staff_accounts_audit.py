"""Account look-up (audited, addresses hashed), the account page, the audit log page with
its filters, pages and CSV export, and one audit row per state-changing staff call."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta
from html import unescape
from urllib.parse import quote

from flask.testing import FlaskClient
from sqlalchemy import event
from werkzeug.test import TestResponse

from service.audit import record_event
from service.db import bulk
from service.models import StaffUser
from service.runtime import Runtime
from service.staff.audit import record_staff_action
from service.staff.audit_log import AuditFilter, read_audit_page
from tests.support.factories import expose, make_account, make_leak
from tests.support.staff import (
    Clock,
    StaffLogin,
    audit_count,
    audit_rows,
    csrf_token,
    log_in,
    reauthenticate,
)

ADDRESS = "jane.doe@example.org"


def look_up(client: FlaskClient, query: str) -> str:
    """Post a look-up; it redirects (post/redirect/get) to the result page, which carries
    no query in its URL."""
    answer = client.post(
        "/staff/accounts", data={"csrf_token": csrf_token(client, "/staff/accounts"), "q": query}
    )
    assert answer.status_code == 303
    assert answer.headers["Location"] == "/staff/accounts"
    page = client.get(answer.headers["Location"])
    assert page.status_code == 200
    return page.get_data(as_text=True)


def export(client: FlaskClient, **filters: str) -> TestResponse:
    """Post the audit page's export form with ``filters``."""
    token = csrf_token(client, "/staff/audit")
    return client.post("/staff/audit/export.csv", data={"csrf_token": token, **filters})


def test_look_up_by_external_id_or_any_form_of_the_address_is_audited_without_it(
    staff_client: FlaskClient, viewer: StaffLogin, clock: Clock, runtime: Runtime
) -> None:
    account_id = make_account(runtime, "jane", ADDRESS)
    log_in(staff_client, viewer, clock)
    assert f"/staff/accounts/{account_id}" in look_up(staff_client, "jane")
    page = look_up(staff_client, "Jane.Doe+staff@EXAMPLE.org")
    assert f"/staff/accounts/{account_id}" in page
    assert "j***@example.org" in page
    assert ADDRESS not in page.lower()
    assert "jane.doe+staff" not in page.lower()
    assert "No account" in look_up(staff_client, "nobody@example.org")
    # A GET looks nothing up (it is safe): ``?q=`` is not read, nothing is audited, and a
    # reload of the result page repeats no look-up.
    by_get = staff_client.get("/staff/accounts?q=jane").get_data(as_text=True)
    assert f"/staff/accounts/{account_id}" not in by_get
    assert "No account" in staff_client.get("/staff/accounts").get_data(as_text=True)
    rows = audit_rows(runtime, "staff.account_lookup")
    assert [(r.target, r.detail) for r in rows] == [
        ("account:jane", {"by": "external_id", "found": 1}),
        ("account:jane", {"by": "address", "found": 1}),
        (None, {"by": "address", "found": 0}),
    ]
    assert {r.actor for r in rows} == {f"staff:{viewer.id}"}


def test_look_up_by_an_address_without_an_at_sign_the_canonical_form_reads(
    staff_client: FlaskClient, viewer: StaffLogin, clock: Clock, runtime: Runtime
) -> None:
    """A ``mailto:`` link with its ``@`` percent-encoded (RFC 6068), as copied from a
    ticket or a mail client, is the address (README: the canonical form): it was read as
    an external id only, found nothing, and was shown back in the box and kept in the
    session cookie in clear."""
    account_id = make_account(runtime, "jane", ADDRESS)
    log_in(staff_client, viewer, clock)
    for spelling in (
        "mailto:jane.doe%40example.org",
        "MAILTO:Jane.Doe%2Bticket%40EXAMPLE.org",
        "<mailto:jane.doe%40example.org?subject=help>",
    ):
        page = look_up(staff_client, spelling)
        assert f"/staff/accounts/{account_id}" in page, spelling
        assert "j***@example.org" in page
        assert "%40" not in page
        assert "jane.doe" not in page.lower()
        cookie = staff_client.get_cookie("session")
        assert cookie is not None
        app = staff_client.application
        kept = app.session_interface.get_signing_serializer(app).loads(cookie.value)  # type: ignore[attr-defined]
        assert kept["staff_lookup"]["external_id"] is None
    rows = audit_rows(runtime, "staff.account_lookup")
    assert [r.detail for r in rows] == [{"by": "address", "found": 1}] * 3


def test_the_account_page_shows_the_masked_address_and_the_exposures(
    staff_client: FlaskClient, viewer: StaffLogin, clock: Clock, runtime: Runtime
) -> None:
    account_id = make_account(runtime, "jane", ADDRESS)
    expose(runtime, account_id, slug="exchange-2019")
    log_in(staff_client, viewer, clock)
    page = staff_client.get(f"/staff/accounts/{account_id}").get_data(as_text=True)
    assert "j***@example.org" in page
    assert ADDRESS not in page
    assert "exchange-2019" in page
    assert "not locked" in page
    assert staff_client.get("/staff/accounts/999999").status_code == 404


def test_reveal_shows_the_address_once_and_is_audited(
    staff_client: FlaskClient, agent: StaffLogin, clock: Clock, runtime: Runtime
) -> None:
    account_id = make_account(runtime, "jane", ADDRESS)
    log_in(staff_client, agent, clock)
    page = f"/staff/accounts/{account_id}"
    answer = staff_client.post(
        f"{page}/reveal", data={"csrf_token": csrf_token(staff_client, page)}
    )
    assert ADDRESS in answer.get_data(as_text=True)
    assert ADDRESS not in staff_client.get(page).get_data(as_text=True)
    [row] = audit_rows(runtime, "staff.address_revealed")
    assert row.target == "account:jane"
    assert row.actor == f"staff:{agent.id}"


def test_each_state_changing_staff_call_writes_one_audit_row(
    staff_client: FlaskClient, agent: StaffLogin, clock: Clock, runtime: Runtime
) -> None:
    account_id = make_account(runtime, "jane", ADDRESS)
    page = f"/staff/accounts/{account_id}"
    steps = [
        ("login", lambda: log_in(staff_client, agent, clock)),
        ("look-up", lambda: look_up(staff_client, "jane")),
        ("reauth", lambda: reauthenticate(staff_client, agent, clock)),
        (
            "reveal",
            lambda: staff_client.post(
                f"{page}/reveal", data={"csrf_token": csrf_token(staff_client, page)}
            ),
        ),
        (
            "export",
            lambda: export(staff_client).get_data(),
        ),
        (
            "logout",
            lambda: staff_client.post(
                "/staff/logout", data={"csrf_token": csrf_token(staff_client, "/staff/")}
            ),
        ),
    ]
    for name, step in steps:
        before = audit_count(runtime)
        step()
        assert audit_count(runtime) == before + 1, name


def test_record_staff_action_names_the_account_and_the_leak(
    runtime: Runtime, agent: StaffLogin, clock: Clock
) -> None:
    account_id = make_account(runtime, "jane", ADDRESS)
    leak_id = make_leak(runtime, "exchange-2019")
    with runtime.db.transaction() as session:
        staff = session.get(StaffUser, agent.id)
        assert staff is not None
        record_staff_action(
            session,
            staff,
            "exposure.resolve",
            account_id=account_id,
            leak_id=leak_id,
            detail={"reason": "changed"},
        )
        record_staff_action(session, staff, "campaign.pause", leak_id=leak_id)
    [one] = audit_rows(runtime, "staff.exposure.resolve")
    assert (one.actor, one.target, one.detail, one.at) == (
        f"staff:{agent.id}",
        "account:jane",
        {"reason": "changed", "leak": "exchange-2019"},
        clock.now(),
    )
    [two] = audit_rows(runtime, "staff.campaign.pause")
    assert two.target == "exchange-2019"


def seed_audit(runtime: Runtime, clock: Clock, rows: int) -> None:
    with runtime.db.transaction() as session:
        for n in range(rows):
            record_event(
                session,
                actor="risk-check" if n % 2 else "cli:ops",
                action="risk.step_up" if n % 2 else "leak.edited",
                target=f"account:user{n}@example.com" if n % 2 else "exchange-2019",
                detail={"n": n},
                now=clock.now() - timedelta(minutes=rows - n),
            )


def test_the_audit_log_filters_and_pages_through_every_row_once(
    staff_client: FlaskClient, viewer: StaffLogin, clock: Clock, runtime: Runtime
) -> None:
    seed_audit(runtime, clock, 120)  # row n at seeded - (120 - n) minutes
    seeded = clock.now()
    log_in(staff_client, viewer, clock)  # one more row: staff.login
    seen: list[str] = []
    path = "/staff/audit"
    pages = 0
    while path:
        html = unescape(staff_client.get(path).get_data(as_text=True))
        seen += re.findall(r'"n": (\d+)', html)
        older = re.search(r'href="([^"]+)" rel="next"', html)
        path = older.group(1) if older else ""
        pages += 1
    assert pages == 3
    assert sorted(map(int, seen)) == list(range(120))
    html = staff_client.get("/staff/audit").get_data(as_text=True)
    assert "user1@example.com" not in html
    assert "u***@example.com" in html

    def count(query: str) -> int:
        page = staff_client.get(f"/staff/audit?{query}").get_data(as_text=True)
        return page.count("<tr>") - 1  # the header's row

    assert count("action=risk.") == 50  # a prefix; first page
    assert count("action=leak.edited&leak=exchange-2019") == 50
    account_id = make_account(runtime, "jane", ADDRESS)
    leak_id = make_leak(runtime, "exchange-2019")
    with runtime.db.transaction() as session:
        staff = session.get(StaffUser, viewer.id)
        assert staff is not None
        record_staff_action(
            session, staff, "exposure.resolve", account_id=account_id, leak_id=leak_id
        )
    assert count("action=staff.&leak=exchange-2019") == 1  # found by the slug in its detail
    assert count("leak=exchange-2019&account=jane") == 1
    assert count(f"actor={viewer.email}") == 3  # enrolled, logged in, the resolve above
    # Any spelling of the staff email that signs in names the same person: case, a
    # full-width letter the domain's IDNA mapping folds (was: "No entries").
    for spelling in ("VIEWER@staff.EXAMPLE", "viewer@\uff53taff.example", " viewer@staff.example"):
        assert count(f"actor={quote(spelling)}") == 3, spelling
    since = (seeded - timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M")  # n 110-119
    until = (seeded - timedelta(minutes=4)).strftime("%Y-%m-%dT%H:%M")  # n 110-115
    assert count(f"actor=cli:ops&since={since}") == 5
    assert count(f"actor=cli:ops&since={since}&until={until}") == 3
    assert count("account=user1@example.com") == 1
    assert "not a date" in staff_client.get("/staff/audit?since=yesterday").get_data(as_text=True)


def test_the_csv_export_streams_every_matching_row_with_addresses_masked(
    staff_client: FlaskClient, agent: StaffLogin, clock: Clock, runtime: Runtime
) -> None:
    seed_audit(runtime, clock, 2500)
    log_in(staff_client, agent, clock)
    assert staff_client.get("/staff/audit/export.csv?action=risk.step_up").status_code == 405
    assert audit_rows(runtime, "staff.audit_exported") == []
    answer = export(staff_client, action="risk.step_up")
    assert answer.status_code == 200
    assert answer.is_streamed
    assert answer.mimetype == "text/csv"
    assert "attachment" in answer.headers["Content-Disposition"]
    body = answer.get_data(as_text=True)
    rows = list(csv.reader(io.StringIO(body)))
    assert rows[0] == ["id", "at", "actor", "action", "target", "detail"]
    assert len(rows) == 1 + 1250
    assert "@example.com" in body
    assert not re.search(r"user\d+@", body)
    [exported] = audit_rows(runtime, "staff.audit_exported")
    assert exported.detail == {"filters": {"action": "risk.step_up"}}
    assert export(staff_client, until="soon").status_code == 400


def test_the_csv_export_never_starts_a_cell_with_a_formula(
    staff_client: FlaskClient, agent: StaffLogin, clock: Clock, runtime: Runtime
) -> None:
    with runtime.db.transaction() as session:
        record_event(
            session,
            actor="=cmd|' /C calc'!A0",
            action="leak.edited",
            target="@SUM(1+1)",
            now=clock.now(),
        )
    log_in(staff_client, agent, clock)
    body = export(staff_client, action="leak.edited").get_data(as_text=True)
    [row] = list(csv.DictReader(io.StringIO(body)))
    assert row["actor"] == "'=cmd|' /C calc'!A0"
    assert row["target"] == "'@SUM(1+1)"


def test_the_audit_page_account_filter_reads_the_target_index(runtime: Runtime) -> None:
    """Without an index on ``audit_event.target`` the account filter (and the dossier's
    history, the funnel's stepped-up count) reads the whole table: the plan of the page's
    own statement must search the (target, action, at) index. PostgreSQL is told not to
    scan, as a test database is too small for the planner to prefer an index on its own."""
    statements: list[tuple[str, object]] = []

    def capture(*args: object) -> None:
        statement, parameters = args[2], args[3]
        if isinstance(statement, str) and "audit_event" in statement:
            statements.append((statement, parameters))

    event.listen(runtime.db.engine, "before_cursor_execute", capture)
    try:
        with runtime.db.read_session() as session:
            read_audit_page(session, AuditFilter(account="jane"))
    finally:
        event.remove(runtime.db.engine, "before_cursor_execute", capture)
    [(statement, parameters)] = statements
    with runtime.db.read_session() as session:
        connection = session.connection()
        if bulk.is_postgres(session):
            connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
            prefix = "EXPLAIN "
        else:
            prefix = "EXPLAIN QUERY PLAN "
        plan = " ".join(
            str(row[-1]) for row in connection.exec_driver_sql(prefix + statement, parameters)
        )
    assert "ix_audit_event_target_action_at" in plan, plan


def test_the_audit_detail_shows_text_as_written_on_the_page_and_in_the_csv(
    staff_client: FlaskClient, agent: StaffLogin, clock: Clock, runtime: Runtime
) -> None:
    with runtime.db.transaction() as session:
        record_event(
            session,
            actor="cli:ops",
            action="campaign.test_sent",
            detail={"to": "ü***@bücher.de", "note": "Grüße"},
            now=clock.now(),
        )
        # Written unmasked before addresses were masked on the way in: masked on the way out.
        record_event(
            session,
            actor="cli:ops",
            action="campaign.test_sent",
            detail={"to": "jürgen@bücher.de"},
            now=clock.now(),
        )
    log_in(staff_client, agent, clock)
    page = unescape(staff_client.get("/staff/audit?action=campaign.test_sent").get_data(True))
    assert '"to": "ü***@bücher.de"' in page
    assert "Grüße" in page
    assert "\\u00fc" not in page
    assert "jürgen" not in page
    assert "j***@bücher.de" in page
    body = export(staff_client, action="campaign.test_sent").get_data(as_text=True)
    assert "ü***@bücher.de" in body
    assert "Grüße" in body
    assert "\\u00fc" not in body
    assert "jürgen" not in body
