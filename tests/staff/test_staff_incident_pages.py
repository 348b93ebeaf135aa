"""The incident and queue pages through the test client, with CSRF on as deployed: roles,
the staff audit row of each act, the htmx partials, the upload, the bulk dismissal's
dry-run count; on SQLite and PostgreSQL."""

from __future__ import annotations

import gzip
import io
import re
from datetime import timedelta
from html import unescape
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select, update

from jobs.ingest.pipeline import ingest_leak
from service.db import utcnow
from service.email_change import assisted
from service.email_change.context import ChangeTools
from service.leaks.lifecycle import end_exposure
from service.models import (
    AuditEvent,
    ChangeState,
    EmailChangeRequest,
    Leak,
    Notice,
    NoticeState,
    StaffRole,
)
from service.runtime import Runtime
from service.staff import queues as queues_module
from service.staff.queues import ExposureFilter
from tests.support.factories import LEAK, expose, make_account
from tests.support.staff import Clock, StaffLogin, csrf_token, log_in, make_staff, reauthenticate


def staff_rows(runtime: Runtime, action: str) -> list[AuditEvent]:
    with runtime.db.read_session() as session:
        return list(
            session.scalars(
                select(AuditEvent)
                .where(AuditEvent.action == f"staff.{action}")
                .order_by(AuditEvent.id)
            )
        )


def post(client: FlaskClient, path: str, form_page: str, **data: str) -> object:
    return client.post(path, data={"csrf_token": csrf_token(client, form_page), **data})


@pytest.fixture
def admin(runtime: Runtime, clock: Clock) -> StaffLogin:
    return make_staff(runtime, "admin@staff.example", StaffRole.ADMIN, now=clock.now())


def test_the_leak_list_and_page_show_counts_funnel_and_poll_while_running(
    runtime: Runtime, staff_client: FlaskClient, viewer: StaffLogin, clock: Clock
) -> None:
    expose(runtime, make_account(runtime, "ann", "ann@example.org"))
    log_in(staff_client, viewer, clock)
    page = staff_client.get("/staff/leaks").get_data(as_text=True)
    assert f'href="/staff/leaks/{LEAK}"' in page
    assert "hx-trigger" not in page  # nothing runs: nothing polls
    assert "Upload a leak file" not in page  # a viewer uploads nothing
    detail = staff_client.get(f"/staff/leaks/{LEAK}").get_data(as_text=True)
    assert f'src="/staff/leaks/{LEAK}/funnel.svg"' in detail
    assert re.search(r'data-stage="matched">1<', detail)
    assert "Retract" not in detail
    assert "Pause warnings" not in detail
    svg = staff_client.get(f"/staff/leaks/{LEAK}/funnel.svg")
    assert svg.mimetype == "image/svg+xml"
    assert svg.get_data(as_text=True).startswith("<svg")
    rows = staff_client.get("/staff/leaks/rows").get_data(as_text=True)
    assert rows.startswith("\n<tbody") or rows.lstrip().startswith("<tbody")
    preview = staff_client.get(f"/staff/leaks/{LEAK}/preview").get_data(as_text=True)
    assert preview.count("<pre") == 4
    assert staff_client.get("/staff/leaks/no-such-leak").status_code == 404


def test_a_viewer_is_refused_every_campaign_action(
    runtime: Runtime, staff_client: FlaskClient, viewer: StaffLogin, clock: Clock
) -> None:
    expose(runtime, make_account(runtime, "ann", "ann@example.org"))
    log_in(staff_client, viewer, clock)
    token = csrf_token(staff_client, "/staff/leaks")
    for path in ("pause", "resume", "test-send", "retract"):
        response = staff_client.post(f"/staff/leaks/{LEAK}/{path}", data={"csrf_token": token})
        assert response.status_code == 403, path
    assert staff_client.get("/staff/leaks/upload").status_code == 403


def test_pause_and_resume_are_audited_once_each(
    runtime: Runtime, staff_client: FlaskClient, agent: StaffLogin, clock: Clock
) -> None:
    expose(runtime, make_account(runtime, "ann", "ann@example.org"))
    log_in(staff_client, agent, clock)
    page = f"/staff/leaks/{LEAK}"
    response = post(staff_client, f"{page}/pause", page)
    assert response.status_code == 303
    assert "warnings paused" in staff_client.get(page).get_data(as_text=True)
    post(staff_client, f"{page}/resume", page)
    [paused] = staff_rows(runtime, "campaign.paused")
    [resumed] = staff_rows(runtime, "campaign.resumed")
    assert paused.target == LEAK
    assert paused.actor == resumed.actor == f"staff:{agent.id}"
    assert staff_client.post(f"{page}/pause").status_code == 400  # no CSRF token


def test_retraction_needs_an_admin_a_fresh_code_and_the_slug_typed(
    runtime: Runtime, staff_client: FlaskClient, admin: StaffLogin, clock: Clock
) -> None:
    expose(runtime, make_account(runtime, "ann", "ann@example.org"))
    log_in(staff_client, admin, clock)
    page = f"/staff/leaks/{LEAK}"
    clock.advance(timedelta(minutes=10))
    stale = post(staff_client, f"{page}/retract", page, typed=LEAK, reason="typo")
    assert stale.status_code == 303
    assert stale.headers["Location"].startswith("/staff/reauth")
    reauthenticate(staff_client, admin, clock)
    for typed in ("exchange", f"{LEAK} "):  # exactly as typed: no trimming
        wrong = post(staff_client, f"{page}/retract", page, typed=typed, reason="typo")
        assert wrong.status_code == 422
    with runtime.db.read_session() as session:
        assert session.scalar(select(Leak.retracted_at)) is None
    done = post(staff_client, f"{page}/retract", page, typed=LEAK, reason="typo")
    assert done.status_code == 303
    assert "Retracted" in staff_client.get(page).get_data(as_text=True)
    [row] = staff_rows(runtime, "leak.retracted")
    assert row.detail is not None
    assert row.detail["exposures_ended"] == 1


def test_an_upload_from_the_page_ingests_and_refuses_as_the_cli(
    runtime: Runtime, staff_client: FlaskClient, agent: StaffLogin, clock: Clock
) -> None:
    make_account(runtime, "ann", "ann@example.org")
    log_in(staff_client, agent, clock)
    token = csrf_token(staff_client, "/staff/leaks/upload")
    empty = staff_client.post(
        "/staff/leaks/upload",
        data={
            "csrf_token": token,
            "slug": "fresh",
            "fmt": "auto",
            "file": (io.BytesIO(b""), "empty.txt"),
        },
        content_type="multipart/form-data",
    )
    assert empty.status_code == 422
    assert "empty.txt: the file is empty; nothing recorded" in empty.get_data(as_text=True)
    done = staff_client.post(
        "/staff/leaks/upload",
        data={
            "csrf_token": token,
            "slug": "fresh",
            "fmt": "auto",
            "file": (io.BytesIO(b"ann@example.org\nx@example.net\n"), "list.txt"),
        },
        content_type="multipart/form-data",
    )
    assert done.status_code == 303
    assert done.headers["Location"] == "/staff/leaks/fresh"
    page = staff_client.get("/staff/leaks/fresh").get_data(as_text=True)
    assert "1 accounts flagged" in page
    future = staff_client.post(
        "/staff/leaks/upload",
        data={
            "csrf_token": token,
            "slug": "later",
            "fmt": "auto",
            "observed_at": "2999-01-01",
            "file": (io.BytesIO(b"ann@example.org\n"), "list.txt"),
        },
        content_type="multipart/form-data",
    )
    assert "is in the future" in future.get_data(as_text=True)
    dated = staff_client.post(
        "/staff/leaks/upload",
        data={
            "csrf_token": token,
            "slug": "dated",
            "fmt": "auto",
            "name": "The exchange",
            "name_de": "Die Börse",
            "observed_at": "2019-11-01",
            "file": (io.BytesIO(b"ann@example.org\ny@example.net\n"), "other.txt"),
        },
        content_type="multipart/form-data",
    )
    assert dated.status_code == 303
    with runtime.db.read_session() as session:
        leak = session.scalars(select(Leak).where(Leak.slug == "dated")).one()
        assert session.scalar(select(Leak.id).where(Leak.slug == "later")) is None
    assert (leak.names, leak.observed_at.isoformat()) == ({"de": "Die Börse"}, "2019-11-01")
    [row, _] = staff_rows(runtime, "leak.uploaded")
    assert row.detail is not None
    assert row.detail["file"] == "list.txt"
    # The CLI's refusals, in the form's words: its field labels, never a CLI flag.
    cases = [
        (
            "again",
            "lines",
            b"ann@example.org\nx@example.net\n",
            'tick "Ingest a file another leak has recorded, as this leak too"',
        ),
        (
            "junk",
            "lines",
            b"ann@example.org\n" + b"not an address\n" * 30,
            'chosen in "Format"); nothing recorded;',
        ),
        (
            "junk",
            "lines",
            b"ann@example.org\n" + b"not an address\n" * 30,
            'tick "Ingest even if most of the first records are no address" to ingest it anyway',
        ),
    ]
    for slug, fmt, body, wording in cases:
        refused_page = staff_client.post(
            "/staff/leaks/upload",
            data={"csrf_token": token, "slug": slug, "fmt": fmt, "file": (io.BytesIO(body), "f")},
            content_type="multipart/form-data",
        )
        alert = re.search(r'role="alert">(.*?)</p>', refused_page.get_data(as_text=True), re.S)
        assert refused_page.status_code == 422
        assert alert is not None
        assert wording in unescape(alert.group(1)), alert.group(1)
        assert not re.search(r"--[a-z]", alert.group(1)), alert.group(1)
    # Every refusal is in the trail: who, the route, why, the slug and file asked for.
    refused = staff_rows(runtime, "leak.upload_refused")
    assert [(r.actor, r.detail["leak"], r.detail["file"]) for r in refused if r.detail] == [
        (f"staff:{agent.id}", "fresh", "empty.txt"),
        (f"staff:{agent.id}", "later", "list.txt"),
        *[(f"staff:{agent.id}", slug, "f") for slug, _, _, _ in cases],
    ]
    assert all(r.detail and r.detail["route"] == "staff.leak_upload" for r in refused)
    assert refused[0].detail is not None
    assert refused[0].detail["reason"] == "upload_refused"


def test_the_email_change_queue_approves_after_a_fresh_code_and_denies(
    runtime: Runtime,
    staff_client: FlaskClient,
    agent: StaffLogin,
    admin: StaffLogin,
    clock: Clock,
) -> None:
    tools = ChangeTools.of(runtime)
    ids = []
    for name in ("ann", "bob"):
        make_account(runtime, name, f"{name}@example.org")
        with runtime.db.transaction() as session:
            ids.append(
                assisted.request_assisted(
                    session,
                    tools,
                    name,
                    f"{name}@new.example",
                    ticket=f"SUP-{name}",
                    actor=f"staff:{agent.id}",
                    now=utcnow(),
                ).request_id
            )
    log_in(staff_client, admin, clock)
    page = "/staff/queues/email-change"
    listing = staff_client.get(page).get_data(as_text=True)
    assert "SUP-ann" in listing
    assert "a***@new.example" in listing
    clock.advance(timedelta(minutes=10))
    stale = post(staff_client, f"{page}/{ids[0]}/approve", page, reason="id checked")
    assert stale.headers["Location"].startswith("/staff/reauth")
    reauthenticate(staff_client, admin, clock)
    assert post(staff_client, f"{page}/{ids[0]}/approve", page, reason="ok").status_code == 303
    assert post(staff_client, f"{page}/{ids[1]}/deny", page, reason="no id").status_code == 303
    with runtime.db.read_session() as session:
        rows = session.execute(select(EmailChangeRequest.id, EmailChangeRequest.state))
        states = {row.id: row.state for row in rows}
    assert states == {ids[0]: ChangeState.AWAITING_CONFIRMATION, ids[1]: ChangeState.DENIED}
    [approved] = staff_rows(runtime, "email_change.approved")
    assert approved.target == "account:ann"
    assert len(staff_rows(runtime, "email_change.denied")) == 1


def file_for_review(runtime: Runtime, name: str, *, actor: str) -> str:
    make_account(runtime, name, f"{name}@example.org")
    with runtime.db.transaction() as session:
        return assisted.request_assisted(
            session,
            ChangeTools.of(runtime),
            name,
            f"{name}@new.example",
            ticket=f"SUP-{name}",
            actor=actor,
            now=utcnow(),
        ).request_id


def test_whoever_filed_a_request_cannot_approve_it_on_the_page(
    runtime: Runtime, staff_client: FlaskClient, agent: StaffLogin, clock: Clock
) -> None:
    """Four eyes compare persons across the faces: the staff member is their email, so the
    same person filing from the CLI (login name the address), the API or the page is
    refused, in any case or compatibility form of the name."""
    filers = ("staff:agent@staff.example", "cli:Agent@Staff.Example", "api:AGENT@staff.example")
    ids = [file_for_review(runtime, f"u{n}", actor=filer) for n, filer in enumerate(filers)]
    ids.append(file_for_review(runtime, "fw", actor="cli:\uff41gent@staff.example"))  # NFKC
    log_in(staff_client, agent, clock)
    reauthenticate(staff_client, agent, clock)
    page = "/staff/queues/email-change"
    for request_id in ids:
        refused = post(staff_client, f"{page}/{request_id}/approve", page, reason="ok")
        assert refused.status_code == 422
        assert "someone other than who filed it" in refused.get_data(as_text=True)
    assert staff_rows(runtime, "email_change.approved") == []
    # Each refused act is a security decision in the trail.
    rows = staff_rows(runtime, "action_refused")
    assert [(r.actor, r.detail and r.detail["route"]) for r in rows] == [
        (f"staff:{agent.id}", "staff.email_change_approve")
    ] * len(ids)


def test_a_review_reason_pasted_with_tabs_is_taken_and_a_refusal_names_no_cli_flag(
    runtime: Runtime, staff_client: FlaskClient, agent: StaffLogin, clock: Clock
) -> None:
    """A reason pasted from a ticket (a tab, a line break) was refused on the page as
    "--reason must be 1-500 printable characters"; other support reasons take it with
    each run of whitespace one space, and a refusal names the reason, not a CLI flag."""
    first = file_for_review(runtime, "ann", actor="cli:ops")
    second = file_for_review(runtime, "bob", actor="cli:ops")
    log_in(staff_client, agent, clock)
    page = "/staff/queues/email-change"
    denied = post(staff_client, f"{page}/{first}/deny", page, reason="no ID\tSUP-12\r\nsee call")
    assert denied.status_code == 303
    with runtime.db.read_session() as session:
        stored = session.get(EmailChangeRequest, first)
        assert stored is not None
        assert (stored.state, stored.review_reason) == (ChangeState.DENIED, "no ID SUP-12 see call")
    refused = post(staff_client, f"{page}/{second}/deny", page, reason="bell\x07")
    assert refused.status_code == 422
    text = unescape(refused.get_data(as_text=True))
    assert "the reason must be 1-500 printable characters" in text
    assert "--reason" not in text


def test_a_staff_members_id_is_not_a_cli_users_name(
    runtime: Runtime, staff_client: FlaskClient, agent: StaffLogin, clock: Clock
) -> None:
    """An operator whose login name happens to be the staff member's row id is someone
    else: the page names the reviewer by email, and the approval goes through."""
    request_id = file_for_review(runtime, "ann", actor=f"cli:{agent.id}")
    log_in(staff_client, agent, clock)
    reauthenticate(staff_client, agent, clock)
    page = "/staff/queues/email-change"
    assert post(staff_client, f"{page}/{request_id}/approve", page, reason="ok").status_code == 303
    with runtime.db.read_session() as session:
        request = session.get_one(EmailChangeRequest, request_id)
    assert request.state is ChangeState.AWAITING_CONFIRMATION
    assert request.reviewed_by == f"staff:{agent.email}"


def test_bulk_dismissal_shows_its_count_then_acts_on_that_set(
    runtime: Runtime, staff_client: FlaskClient, agent: StaffLogin, clock: Clock
) -> None:
    for n in range(3):
        expose(runtime, make_account(runtime, f"a{n}", f"a{n}@example.org"))
    log_in(staff_client, agent, clock)
    page = "/staff/queues/bulk-dismiss"
    dry = post(staff_client, page, page, leak=LEAK, kind="", reason="wrong file")
    text = dry.get_data(as_text=True)
    assert dry.status_code == 200
    assert re.search(r"<strong>3</strong> open exposures match now", text)
    assert staff_rows(runtime, "exposures.bulk_dismissed") == []
    changed = post(
        staff_client, page, page, leak=LEAK, kind="", reason="wrong file", confirmed_count="2"
    )
    assert changed.status_code == 409
    assert "3 open exposures match now, not 2" in changed.get_data(as_text=True)
    assert re.search(
        r'name="confirmed_count" type="hidden" value="3"', changed.get_data(as_text=True)
    )
    forged = post(
        staff_client, page, page, leak=LEAK, kind="", reason="wrong file", confirmed_count="x"
    )
    assert forged.status_code == 400
    done = post(
        staff_client, page, page, leak=LEAK, kind="", reason="wrong file", confirmed_count="3"
    )
    assert done.status_code == 303
    [row] = staff_rows(runtime, "exposures.bulk_dismissed")
    assert row.detail is not None
    assert row.detail["dismissed"] == 3


def test_a_bulk_dismissal_over_the_batch_says_how_many_are_left(
    runtime: Runtime,
    staff_client: FlaskClient,
    agent: StaffLogin,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A press ends at most MAX_BULK of the counted set: the page said "Dismissed 5000"
    after "Dismiss these 6000", as if none were left."""
    monkeypatch.setattr(queues_module, "MAX_BULK", 2)
    for n in range(3):
        expose(runtime, make_account(runtime, f"a{n}", f"a{n}@example.org"))
    log_in(staff_client, agent, clock)
    page = "/staff/queues/bulk-dismiss"
    done = post(
        staff_client, page, page, leak=LEAK, kind="", reason="wrong file", confirmed_count="3"
    )
    assert done.status_code == 303
    shown = unescape(staff_client.get(done.headers["Location"]).get_data(as_text=True))
    assert (
        f"Dismissed 2 open exposures of {LEAK}; 1 still open: count again to dismiss the rest."
        in shown
    )
    again = post(staff_client, page, page, leak=LEAK, kind="", reason="wrong file")
    assert re.search(r"<strong>1</strong> open exposures match now", again.get_data(as_text=True))
    last = post(
        staff_client, page, page, leak=LEAK, kind="", reason="wrong file", confirmed_count="1"
    )
    shown = unescape(staff_client.get(last.headers["Location"]).get_data(as_text=True))
    assert f"Dismissed 1 open exposures of {LEAK}." in shown


def test_the_failed_warnings_page_lists_a_bounded_number_and_counts_them_all(
    runtime: Runtime,
    staff_client: FlaskClient,
    agent: StaffLogin,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A relay that refused a whole campaign fails every warning: the page listed each
    one (6,000 were 870 kB; 100,000 some 14 MB) and the queues page loaded them all to
    count them. It lists the oldest MAX_FAILED_SHOWN and says how many there are."""
    monkeypatch.setattr(queues_module, "MAX_FAILED_SHOWN", 2)
    for n in range(5):
        expose(runtime, make_account(runtime, f"f{n}", f"f{n}@example.org"))
    with runtime.db.transaction() as session:
        session.execute(
            update(Notice).values(
                state=NoticeState.FAILED, failed_at=utcnow(), last_error="550 refused"
            )
        )
        ids = list(session.scalars(select(Notice.id).order_by(Notice.id)))
    log_in(staff_client, agent, clock)
    overview = staff_client.get("/staff/queues").get_data(as_text=True)
    assert re.search(r'Failed warnings <span class="badge">5</span>', overview)
    page = unescape(staff_client.get("/staff/queues/failed-notices").get_data(as_text=True))
    listed = [int(n) for n in re.findall(r'<tr><td class="num">(\d+)</td>', page)]
    assert listed == ids[:2]  # the oldest
    assert f"The oldest 2 of 5 failed warnings of {LEAK}" in page
    retried = post(
        staff_client,
        f"/staff/queues/failed-notices/{LEAK}/retry",
        "/staff/queues/failed-notices",
        ids="",
    )
    assert retried.status_code == 303
    shown = unescape(staff_client.get(retried.headers["Location"]).get_data(as_text=True))
    assert f"5 failed warnings of {LEAK} are pending again" in shown


def test_failed_warnings_page_lists_and_a_viewer_cannot_retry(
    runtime: Runtime, staff_client: FlaskClient, viewer: StaffLogin, clock: Clock
) -> None:
    expose(runtime, make_account(runtime, "ann", "ann@example.org"))
    log_in(staff_client, viewer, clock)
    page = staff_client.get("/staff/queues/failed-notices").get_data(as_text=True)
    assert "No failed warning" in page
    assert staff_client.get("/staff/queues").status_code == 200
    token = csrf_token(staff_client, "/staff/queues")
    for action in ("retry", "cancel"):
        response = staff_client.post(
            f"/staff/queues/failed-notices/{LEAK}/{action}", data={"csrf_token": token}
        )
        assert response.status_code == 403


def test_a_refused_test_send_shows_on_the_leak_page_in_the_forms_words(
    runtime: Runtime, staff_client: FlaskClient, agent: StaffLogin, clock: Clock
) -> None:
    expose(runtime, make_account(runtime, "ann", "ann@example.org"))
    log_in(staff_client, agent, clock)
    page = f"/staff/leaks/{LEAK}"
    for typed in ("not an address", "a@b.c, d@e.f"):
        refused = post(
            staff_client, f"{page}/test-send", page, recipient=typed, kind="email", language="en"
        )
        text = unescape(refused.get_data(as_text=True))
        assert refused.status_code == 422, text[:300]
        assert '"Seed address (one of your own)" is not one valid email address' in text
        assert "--to" not in text
        assert 'id="test-send-error"' in text
        assert f'value="{typed}"' in text  # what was typed stays in the form
        assert "Send a test warning" in text  # the leak page, not a separate error page
    refusals = staff_rows(runtime, "action_refused")
    assert [row.detail["reason"] for row in refusals if row.detail] == ["seed_refused"] * 2
    blank = post(staff_client, f"{page}/test-send", page, recipient="", kind="email", language="en")
    assert blank.status_code == 400
    assert "Name one seed address in" in unescape(blank.get_data(as_text=True))


def test_a_sent_test_warning_names_no_server_path(
    runtime: Runtime, staff_client: FlaskClient, agent: StaffLogin, clock: Clock
) -> None:
    expose(runtime, make_account(runtime, "ann", "ann@example.org"))
    log_in(staff_client, agent, clock)
    page = f"/staff/leaks/{LEAK}"
    sent = post(
        staff_client,
        f"{page}/test-send",
        page,
        recipient="seed@ops.example",
        kind="email",
        language="en",
    )
    assert sent.status_code == 303
    text = unescape(staff_client.get(page).get_data(as_text=True))
    assert "Test warning sent to s***@ops.example via the mail folder." in text
    assert str(runtime.settings.resolved_mail_dir) not in text


def test_a_bulk_confirmation_sent_twice_or_overtaken_says_so_without_a_button(
    runtime: Runtime,
    staff_client: FlaskClient,
    agent: StaffLogin,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for n in range(3):
        expose(runtime, make_account(runtime, f"a{n}", f"a{n}@example.org"))
    log_in(staff_client, agent, clock)
    page = "/staff/queues/bulk-dismiss"
    confirm = {"leak": LEAK, "kind": "", "reason": "wrong file", "confirmed_count": "3"}
    # A colleague dismissed a1 after this page counted 3 (the race: the set read, then
    # one of its exposures ended before this confirmation reached it).
    counted = queues_module._selection
    with runtime.db.read_session() as session:
        stale = counted(session, ExposureFilter(LEAK, None))
    with runtime.db.transaction() as session:
        end_exposure(
            session, "a1", LEAK, action="dismiss", reason="x", actor="cli:ops", now=utcnow()
        )
    monkeypatch.setattr(queues_module, "_selection", lambda session, wanted: stale)
    overtaken = post(staff_client, page, page, **confirm)
    text = unescape(overtaken.get_data(as_text=True))
    assert overtaken.status_code == 409
    assert "has no open exposure" not in text
    assert "The set changed since you counted" in text
    monkeypatch.setattr(queues_module, "_selection", counted)
    assert staff_rows(runtime, "exposures.bulk_dismissed") == []
    assert post(staff_client, page, page, **{**confirm, "confirmed_count": "2"}).status_code == 303
    # The same confirmation again (a double click, a second tab): nothing left.
    again = post(staff_client, page, page, **{**confirm, "confirmed_count": "2"})
    text = unescape(again.get_data(as_text=True))
    assert again.status_code == 409
    assert "Nothing left to dismiss" in text
    assert "Dismiss these" not in text
    assert len(staff_rows(runtime, "exposures.bulk_dismissed")) == 1


def test_the_leak_page_says_a_file_was_truncated_or_had_long_lines(
    runtime: Runtime, staff_client: FlaskClient, viewer: StaffLogin, clock: Clock, tmp_path: Path
) -> None:
    lines = [f"user{n}@example.org" for n in range(3_000)]
    lines[7] = "x" * (70 * 1024) + "@example.org"
    data = gzip.compress(("\n".join(lines) + "\n").encode())
    path = tmp_path / "cut.txt.gz"
    path.write_bytes(data[: int(len(data) * 0.9)])
    ingest_leak(runtime, path, slug="cut")
    log_in(staff_client, viewer, clock)
    page = unescape(staff_client.get("/staff/leaks/cut").get_data(as_text=True))
    assert f"truncated</span> after {path.stat().st_size:,} bytes" in page
    assert "1 line(s) over 64 KiB counted invalid" in page
