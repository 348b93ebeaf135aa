"""The email-change link pages in a real headless Chromium, on SQLite and PostgreSQL: the
page shows one button, opening it (again and again) changes nothing, pressing the button
confirms or reverts, and a form whose CSRF token is missing or wrong is refused."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from flask import Flask
from playwright.sync_api import Browser, Page

from service.email_change.tokens import LinkPurpose
from service.models import ChangeState
from service.runtime import Runtime
from tests.support.email_change import (
    account_row,
    assurance_token,
    link_token,
    requests_of,
)
from tests.support.factories import make_account, make_api_key
from tests.support.http import bearer
from tests.support.live_server import LiveServer

OLD = "jane@example.org"
NEW = "jane.new@example.net"


@pytest.fixture
def server(runtime: Runtime, make_app: Callable[..., Flask]) -> Iterator[LiveServer]:
    app = make_app()
    app.config["TESTING"] = False  # as deployed: CSRF checks on
    with LiveServer(app) as live:
        yield live


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context()
    opened = context.new_page()
    yield opened
    context.close()


@pytest.fixture
def request_id(runtime: Runtime, make_app: Callable[..., Flask]) -> str:
    make_account(runtime, "jane", OLD)
    response = (
        make_app()
        .test_client()
        .post(
            "/v1/accounts/jane/email-change",
            json={"new_email": NEW, "assurance_token": assurance_token(runtime, "jane")},
            headers=bearer(make_api_key(runtime)),
        )
    )
    assert response.status_code == 202
    return str(response.get_json()["request_id"])


def link(server: LiveServer, runtime: Runtime, request_id: str, purpose: LinkPurpose) -> str:
    token = link_token(runtime, request_id, purpose)
    return f"{server.url}/email-change/{purpose.value}?token={token}"


def test_the_page_shows_one_button_and_opening_it_changes_nothing(
    runtime: Runtime, server: LiveServer, page: Page, request_id: str
) -> None:
    url = link(server, runtime, request_id, LinkPurpose.CONFIRM)
    for _ in range(3):  # a scanner, a preview, the person: all only look
        answer = page.goto(url)
        assert answer is not None
        assert answer.status == 200
        assert answer.headers["referrer-policy"] == "no-referrer"
    assert page.locator("button").count() == 1
    assert page.locator("button").inner_text() == "Confirm this address"
    assert requests_of(runtime)[0].state is ChangeState.AWAITING_CONFIRMATION
    assert account_row(runtime, "jane").email == OLD


def test_pressing_the_button_confirms(
    runtime: Runtime, server: LiveServer, page: Page, request_id: str
) -> None:
    page.goto(link(server, runtime, request_id, LinkPurpose.CONFIRM))
    with page.expect_navigation():
        page.click("button")
    assert page.locator("#outcome").inner_text() == "Your new email address is confirmed"
    assert account_row(runtime, "jane").email == NEW
    # The link is spent: opened again, it says the request is closed and shows no button.
    answer = page.goto(link(server, runtime, request_id, LinkPurpose.CONFIRM))
    assert answer is not None
    assert answer.status == 409
    assert "This request was closed" in page.content()
    assert page.locator("button").count() == 0


def test_pressing_the_revert_button_undoes_the_change(
    runtime: Runtime, server: LiveServer, page: Page, request_id: str
) -> None:
    page.goto(link(server, runtime, request_id, LinkPurpose.REVERT))
    assert "j***@example.net" in page.content()
    assert NEW not in page.content()
    with page.expect_navigation():
        page.click("button")
    assert page.locator("#outcome").inner_text() == "The change is undone"
    assert requests_of(runtime)[0].state is ChangeState.REVERTED


@pytest.mark.parametrize("tamper", ["remove", "wrong", "other_session"])
def test_a_missing_or_wrong_csrf_token_is_refused(
    runtime: Runtime,
    server: LiveServer,
    page: Page,
    browser: Browser,
    request_id: str,
    tamper: str,
) -> None:
    page.goto(link(server, runtime, request_id, LinkPurpose.CONFIRM))
    if tamper == "remove":
        page.evaluate("document.querySelector('input[name=csrf_token]').remove()")
    elif tamper == "wrong":
        page.evaluate("document.querySelector('input[name=csrf_token]').value = 'forged'")
    else:
        # The form of another visitor's page, posted from this browser (no matching cookie).
        other = browser.new_context()
        try:
            stranger = other.new_page()
            stranger.goto(link(server, runtime, request_id, LinkPurpose.CONFIRM))
            foreign = stranger.locator("input[name=csrf_token]").get_attribute("value")
        finally:
            other.close()
        page.context.clear_cookies()
        page.evaluate(
            "value => document.querySelector('input[name=csrf_token]').value = value", foreign
        )
    with page.expect_navigation():
        page.click("button")
    assert page.locator("#outcome").inner_text() == "Nothing was changed"
    assert requests_of(runtime)[0].state is ChangeState.AWAITING_CONFIRMATION
    assert account_row(runtime, "jane").email == OLD
