"""The staff site in a real headless Chromium (Debian's, through Playwright's
``executable_path``) against the app on loopback, on PostgreSQL: enrol through the link,
log in with TOTP, look up an account, re-authenticate, reveal, find both in the audit log
and its CSV export; a viewer refused an agent's action; a form without its CSRF token
refused. Screenshots of each page go to tests/staff/artifacts/ (not committed)."""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pyotp
import pytest
from flask import Flask
from playwright.sync_api import Browser, ConsoleMessage, Page, expect

from service.models import StaffRole
from service.runtime import Runtime
from tests.support.cli import output
from tests.support.factories import expose, make_account
from tests.support.live_server import LiveServer
from tests.support.staff import PASSWORD, Clock, make_staff

ARTIFACTS = Path(__file__).parent / "artifacts"
ADDRESS = "jane.doe@example.org"
pytestmark = [pytest.mark.postgres, pytest.mark.parametrize("db_url", ["postgres"], indirect=True)]


@pytest.fixture
def server(runtime: Runtime, make_app: Callable[..., Flask]) -> Iterator[LiveServer]:
    app = make_app()
    app.config["TESTING"] = False  # as deployed
    with LiveServer(app) as live:
        yield live


@pytest.fixture
def console_errors() -> list[str]:
    return []


@pytest.fixture
def new_page(browser: Browser, console_errors: list[str]) -> Iterator[Callable[[], Page]]:
    contexts = []

    def make() -> Page:
        context = browser.new_context(
            viewport={"width": 1366, "height": 768}, accept_downloads=True
        )
        contexts.append(context)
        opened = context.new_page()

        def keep(message: ConsoleMessage) -> None:
            # A 401, 400 or 403 page is "failed to load" to the console: expected here.
            if message.type == "error" and not message.text.startswith("Failed to load"):
                console_errors.append(message.text)  # a CSP violation, a script error

        opened.on("console", keep)
        return opened

    yield make
    for context in contexts:
        context.close()


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def sign_in(page: Page, base: str, email: str, password: str, code: str) -> None:
    page.goto(f"{base}/staff/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_label("Code from your authenticator app").fill(code)
    page.get_by_role("button", name="Sign in").click()


def test_enrol_log_in_look_up_reauthenticate_reveal_and_audit(
    runtime: Runtime,
    make_app: Callable[..., Flask],
    server: LiveServer,
    new_page: Callable[[], Page],
    clock: Clock,
    console_errors: list[str],
    tmp_path: Path,
) -> None:
    account_id = make_account(runtime, "jane", ADDRESS)
    expose(runtime, account_id, slug="exchange-2019")
    printed = output(
        make_app().test_cli_runner(), "staff", "create-user", "ada@staff.example", "--role", "agent"
    )
    link = re.search(r"/staff/enrol/\S+", printed)
    assert link is not None
    page = new_page()

    # Enrol: the secret is shown as text beside the QR code; no camera needed.
    page.goto(server.url + link.group(0))
    expect(page.get_by_alt_text("QR code of your authenticator secret")).to_be_visible()
    shot(page, "01-enrol")
    secret = page.locator("#totp-secret").inner_text().replace(" ", "")
    page.get_by_label("New password").fill(PASSWORD)
    page.get_by_label("The same password again").fill(PASSWORD)
    page.get_by_label("Code your authenticator app shows now").fill(
        pyotp.TOTP(secret).at(clock.now())
    )
    page.get_by_role("button", name="Finish and sign in").click()
    expect(page.get_by_role("heading", name="Leakguard staff")).to_be_visible()

    # Log out, then in again with password and the next TOTP code.
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    sign_in(page, server.url, "ada@staff.example", PASSWORD, "000000")
    expect(page.get_by_role("alert")).to_have_text("The email, password or code is not right.")
    shot(page, "02-login-refused")
    clock.advance(timedelta(seconds=30))
    sign_in(page, server.url, "ada@staff.example", PASSWORD, pyotp.TOTP(secret).at(clock.now()))
    expect(page.get_by_role("heading", name="Leakguard staff")).to_be_visible()
    assert page.evaluate("typeof htmx.ajax") == "function"  # served by the app, not blocked
    shot(page, "03-home")

    # Look up by another spelling of the address; open the account.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Accounts").click()
    page.get_by_label("External id or exact email address").fill("Jane.Doe+x@EXAMPLE.org")
    page.get_by_role("button", name="Look up").click()
    expect(page.get_by_role("heading", name="1 account found by address")).to_be_visible()
    # Post/redirect/get: the result page's URL carries no address, and a reload is safe.
    assert page.url == f"{server.url}/staff/accounts"
    shot(page, "04-lookup")
    page.get_by_role("link", name="jane").click()
    expect(page.locator("#masked-address")).to_have_text("j***@example.org")
    expect(page.get_by_text("exchange-2019").first).to_be_visible()
    shot(page, "05-account")

    # Six minutes on, revealing asks for a fresh code first, then comes back.
    clock.advance(timedelta(minutes=6))
    page.get_by_role("button", name="Reveal address").click()
    expect(page.get_by_role("heading", name="Confirm it is you")).to_be_visible()
    shot(page, "06-reauth")
    page.get_by_label("Code from your authenticator app").fill(pyotp.TOTP(secret).at(clock.now()))
    page.get_by_role("button", name="Confirm").click()
    expect(page.locator("#masked-address")).to_be_visible()
    page.get_by_role("button", name="Reveal address").click()
    expect(page.locator("#revealed-address")).to_have_text(ADDRESS)
    shot(page, "07-revealed")

    # Both acts are in the audit log, and in its CSV export.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Audit log").click()
    page.get_by_label("Account (external id)").fill("jane")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_role("cell", name="staff.account_lookup")).to_be_visible()
    expect(page.get_by_role("cell", name="staff.address_revealed")).to_be_visible()
    shot(page, "08-audit")
    # Trial: at 1366 px the detail column was cut off at the right edge.
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    with page.expect_download() as download:
        page.get_by_role("button", name=re.compile("^Export CSV")).click()
    saved = tmp_path / "audit.csv"
    download.value.save_as(saved)
    rows = list(csv.DictReader(saved.open(encoding="utf-8")))
    assert {row["action"] for row in rows} >= {"staff.account_lookup", "staff.address_revealed"}
    assert ADDRESS not in saved.read_text(encoding="utf-8")

    # A form whose CSRF token is gone is refused, and changes nothing.
    page.goto(f"{server.url}/staff/accounts")
    page.locator("#main input[name=csrf_token]").evaluate("input => input.remove()")
    page.get_by_label("External id or exact email address").fill("jane")
    page.get_by_role("button", name="Look up").click()
    expect(page.get_by_role("heading", name="Form expired")).to_be_visible()
    shot(page, "09-csrf-refused")
    assert console_errors == []


def test_a_viewer_is_refused_an_agents_action(
    runtime: Runtime, server: LiveServer, new_page: Callable[[], Page], clock: Clock
) -> None:
    account_id = make_account(runtime, "jane", ADDRESS)
    viewer = make_staff(runtime, "vic@staff.example", StaffRole.VIEWER, now=clock.now())
    clock.advance(timedelta(seconds=30))
    page = new_page()
    sign_in(page, server.url, viewer.email, viewer.password, viewer.code(clock.now()))
    page.goto(f"{server.url}/staff/accounts/{account_id}")
    expect(page.locator("#masked-address")).to_be_visible()
    expect(page.get_by_role("button", name="Reveal address")).to_have_count(0)
    expect(page.get_by_role("button", name=re.compile("^Export CSV"))).to_have_count(0)
    # Post the agent's form anyway, with a valid CSRF token of the viewer's own session.
    page.evaluate(
        """(action) => {
            const form = document.createElement('form');
            form.method = 'post';
            form.action = action;
            const token = document.querySelector('header input[name=csrf_token]').cloneNode();
            form.appendChild(token);
            document.body.appendChild(form);
            form.submit();
        }""",
        f"/staff/accounts/{account_id}/reveal",
    )
    expect(page.get_by_role("heading", name="Forbidden")).to_be_visible()
    expect(page.get_by_text("Your role (viewer) may not do this")).to_be_visible()
    assert ADDRESS not in page.content()
    shot(page, "10-viewer-refused")
