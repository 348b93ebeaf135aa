"""The incident, account and queue pages in a real headless Chromium against the app on
loopback, on PostgreSQL with a real Redis: upload a leak and watch it finish, open its
funnel, resolve an exposure and see the next risk check change, approve an assisted email
change after re-authenticating, and find each act in the audit log. Screenshots of the main
pages go to tests/staff/artifacts/ (ignored by git) to be looked at."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask
from playwright.sync_api import Browser, Page, expect
from redis import Redis
from sqlalchemy import select

from jobs.ingest.parts import PART_QUEUE
from jobs.queues import get_queue
from service.db import utcnow
from service.email_change import assisted
from service.email_change.context import ChangeTools
from service.models import ChangeState, Notice, StaffRole
from service.notices.outbox import record_bounces
from service.risk import Decision, assess
from service.runtime import Runtime
from tests.support.delivery import BurstWorker, deliver, runtime_with
from tests.support.email_change import requests_of
from tests.support.factories import LEAK, expose, make_account
from tests.support.live_server import LiveServer
from tests.support.staff import Clock, StaffLogin, make_staff

ARTIFACTS = Path(__file__).parent / "artifacts"
WAIT_MS = 20_000


@pytest.fixture
def pg_runtime(runtime: Runtime, db_url: str, redis_url: str) -> Runtime:
    if not db_url.startswith("postgresql"):
        pytest.skip("the browser flows run on PostgreSQL, as deployed")
    return runtime_with(runtime, redis_url=redis_url, ingest_chunk_records=50)


@pytest.fixture
def server(pg_runtime: Runtime, make_app: Callable[..., Flask]) -> Iterator[LiveServer]:
    app = make_app(pg_runtime.settings)
    app.config["TESTING"] = False  # as deployed: CSRF on
    with LiveServer(app) as live:
        yield live


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    opened = context.new_page()
    yield opened
    context.close()


@pytest.fixture
def admin(runtime: Runtime, clock: Clock) -> StaffLogin:
    return make_staff(runtime, "admin@staff.example", StaffRole.ADMIN, now=clock.now())


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def sign_in(page: Page, server: LiveServer, staff: StaffLogin, clock: Clock) -> None:
    clock.advance(timedelta(seconds=30))  # a fresh TOTP step
    page.goto(f"{server.url}/staff/login")
    page.get_by_label("Email").fill(staff.email)
    page.get_by_label("Password").fill(staff.password)
    page.get_by_label("Code from your authenticator app").fill(staff.code(clock.now()))
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Leakguard staff")).to_be_visible()


def nav(page: Page, label: str) -> None:
    page.get_by_role("navigation", name="Main").get_by_role("link", name=label).click()


def reauthenticate(page: Page, staff: StaffLogin, clock: Clock) -> None:
    expect(page.get_by_role("heading", name="Confirm it is you")).to_be_visible()
    clock.advance(timedelta(seconds=30))
    page.get_by_label("Code from your authenticator app").fill(staff.code(clock.now()))
    page.get_by_role("button", name="Confirm").click()


def audit_rows(page: Page, server: LiveServer, **filters: str) -> str:
    query = "&".join(f"{key}={value}" for key, value in filters.items())
    page.goto(f"{server.url}/staff/audit?{query}")
    return page.locator("main table").inner_text()


def test_upload_a_leak_watch_it_finish_and_open_its_funnel(
    pg_runtime: Runtime,
    server: LiveServer,
    page: Page,
    agent: StaffLogin,
    clock: Clock,
    redis_url: str,
    tmp_path: Path,
) -> None:
    for n in range(12):
        make_account(pg_runtime, f"user{n}", f"user{n}@example.org")
    lines = [f"user{n}@example.org" for n in range(12)]
    lines += [f"stranger{n}@example.net" for n in range(400)]
    leak_file = tmp_path / "mass-mail.txt"
    leak_file.write_text("\n".join(lines) + "\n")
    sign_in(page, server, agent, clock)
    nav(page, "Leaks")
    page.get_by_role("link", name="Upload a leak file").click()
    page.get_by_label("Leak file").set_input_files(str(leak_file))
    page.get_by_label("Leak slug").fill("exchange-2019")
    page.get_by_label("Name in notices").fill("the exchange's mass mail")
    page.get_by_role("button", name="Upload and ingest").click()
    expect(page.get_by_role("heading", name="Leak exchange-2019")).to_be_visible()
    progress = page.locator("#leak-progress")
    expect(progress.locator(".badge").first).to_have_text("running")
    shot(page, "leak-running")
    # The workers take the parts; the page, polling, follows them to the end.
    connection = Redis.from_url(redis_url)
    try:
        queue = get_queue(PART_QUEUE, connection)
        BurstWorker([queue], connection=connection).work(burst=True, logging_level="WARNING")
    finally:
        connection.close()
    expect(progress.locator(".badge").first).to_have_text("complete", timeout=WAIT_MS)
    expect(progress).to_contain_text("12 accounts, 12 warnings queued")
    # The warnings go out (to the mail folder); the funnel counts them on the next look.
    assert deliver(pg_runtime, redis_url) == 12
    with pg_runtime.db.transaction() as session:
        message_id = session.scalars(select(Notice.message_id).limit(1)).one()
        assert message_id is not None
        record_bounces(session, [(message_id, 550, "no such user")], now=utcnow())
    page.reload()
    stages = {"matched": "12", "warned": "12", "delivered": "11", "failed": "1"}
    for stage, count in stages.items():
        expect(page.locator(f'td[data-stage="{stage}"]')).to_have_text(count)
    chart = page.get_by_role("img", name="Bar chart of the funnel of leak exchange-2019")
    expect(chart).to_be_visible()
    assert chart.evaluate("img => img.naturalWidth") > 0  # the SVG loaded and drew
    shot(page, "leak-funnel")
    page.locator(".funnel").screenshot(path=str(ARTIFACTS / "funnel.png"))
    page.get_by_role("link", name="All leaks").click()
    expect(page.locator("#leak-rows")).to_contain_text("exchange-2019")
    shot(page, "leaks")
    assert "staff.leak.uploaded" in audit_rows(page, server, leak="exchange-2019")


def test_resolve_an_exposure_and_the_next_risk_check_changes(
    pg_runtime: Runtime, server: LiveServer, page: Page, agent: StaffLogin, clock: Clock
) -> None:
    account_id = make_account(pg_runtime, "jane", "jane@example.org")
    expose(pg_runtime, account_id)

    def verdict() -> Decision:
        return assess(
            pg_runtime.db,
            pg_runtime.step_up,
            "jane",
            password=None,
            assurance_token=None,
            actor="login",
            context=None,
            now=utcnow(),
        ).decision

    assert verdict() is Decision.STEP_UP
    sign_in(page, server, agent, clock)
    page.goto(f"{server.url}/staff/accounts/{account_id}")
    expect(page.get_by_role("heading", name="Account jane")).to_be_visible()
    shot(page, "account")
    page.get_by_label(f"Reason for {LEAK}").fill("helped on the phone, ticket 12")
    page.get_by_role("button", name="Resolve", exact=True).click()
    expect(page.locator(".flash")).to_have_text(f"exposure to {LEAK} resolved")
    assert verdict() is Decision.ALLOW
    shot(page, "account-resolved")
    rows = audit_rows(page, server, account="jane")
    assert "staff.exposure.resolved" in rows
    assert "exposure.resolved" in rows
    shot(page, "audit-log")


def test_approve_an_assisted_email_change_after_a_fresh_code(
    pg_runtime: Runtime,
    server: LiveServer,
    page: Page,
    agent: StaffLogin,
    admin: StaffLogin,
    clock: Clock,
) -> None:
    account_id = make_account(pg_runtime, "jane", "jane@example.org")
    expose(pg_runtime, account_id)
    make_account(pg_runtime, "joe", "joe@example.org")
    for name in ("joe", "jane"):
        with pg_runtime.db.transaction() as session:
            assisted.request_assisted(
                session,
                ChangeTools.of(pg_runtime),
                name,
                f"{name}@new.example",
                ticket=f"SUP-{name}",
                actor=f"staff:{agent.id}",
                now=utcnow(),
            )
    sign_in(page, server, admin, clock)
    nav(page, "Queues")
    page.get_by_role("link", name="Email changes to review").click()
    rows = page.locator("main tbody tr")
    expect(rows.first).to_contain_text("SUP-jane")  # an open exposure goes first
    expect(rows.first).to_contain_text("open exposure")
    shot(page, "queue-email-change")
    clock.advance(timedelta(minutes=10))  # the sign-in's code is no longer fresh
    rows.first.get_by_label("Reason").fill("identity checked on a call")
    rows.first.get_by_role("button", name="Approve").click()
    reauthenticate(page, admin, clock)
    expect(page.get_by_role("heading", name="Email changes to review")).to_be_visible()
    page.locator("main tbody tr").first.get_by_label("Reason").fill("identity checked on a call")
    page.locator("main tbody tr").first.get_by_role("button", name="Approve").click()
    expect(page.locator(".flash")).to_contain_text("approved: confirmation to j***@new.example")
    states = {request.ticket: request.state for request in requests_of(pg_runtime)}
    assert states == {
        "SUP-jane": ChangeState.AWAITING_CONFIRMATION,
        "SUP-joe": ChangeState.AWAITING_REVIEW,
    }
    assert "staff.email_change.approved" in audit_rows(page, server, account="jane")
