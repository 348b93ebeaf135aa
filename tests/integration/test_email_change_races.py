"""The email change under concurrency, on SQLite and PostgreSQL: two confirmations at once
apply once, a confirmation racing a revert ends reverted, two requests at once leave one
open request, and one assurance token is spent once."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from service.email_change.tokens import LinkPurpose
from service.models import OPEN_STATES, ChangeState, NoticeKind
from service.runtime import Runtime
from tests.support.email_change import (
    account_row,
    assurance_token,
    audit_actions,
    change_notices,
    link_token,
    requests_of,
)
from tests.support.factories import make_account

OLD = "jane@example.org"
NEW = "jane.new@example.net"
THREADS = 6


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    """The app with room for every thread's request in the per-account budget."""
    return make_app(rate_limit_email_change_account="1000/hour")


def at_once(app: Flask, calls: list[Callable[[FlaskClient], TestResponse]]) -> list[TestResponse]:
    """Run each call on its own client and thread, all released together."""
    barrier = threading.Barrier(len(calls))
    answers: list[TestResponse | None] = [None] * len(calls)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        client = app.test_client()
        try:
            barrier.wait(timeout=10)
            answers[index] = calls[index](client)
        except BaseException as exc:  # noqa: BLE001  (reported by the assertion below)
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert all(answer is not None for answer in answers)
    return [answer for answer in answers if answer is not None]


def start(runtime: Runtime, app: Flask, auth: dict[str, str]) -> str:
    response = app.test_client().post(
        "/v1/accounts/jane/email-change",
        json={"new_email": NEW, "assurance_token": assurance_token(runtime, "jane")},
        headers=auth,
    )
    assert response.status_code == 202
    return str(response.get_json()["request_id"])


def post(path: str, body: dict[str, object], auth: dict[str, str]):  # type: ignore[no-untyped-def]
    return lambda client: client.post(path, json=body, headers=auth)


def test_two_confirmations_at_once_apply_once(
    runtime: Runtime, app: Flask, auth: dict[str, str]
) -> None:
    make_account(runtime, "jane", OLD)
    request_id = start(runtime, app, auth)
    token = link_token(runtime, request_id, LinkPurpose.CONFIRM)
    answers = at_once(app, [post("/v1/email-change/confirm", {"token": token}, auth)] * THREADS)
    statuses = Counter(answer.status_code for answer in answers)
    assert statuses[200] == 1, statuses
    assert set(statuses) <= {200, 409}
    assert account_row(runtime, "jane").email == NEW
    assert len(audit_actions(runtime, "account.address_changed")) == 1
    changed = [n for n in change_notices(runtime) if n.kind is NoticeKind.EMAIL_CHANGED]
    assert len(changed) == 1


def test_a_confirmation_racing_a_revert_ends_reverted(
    runtime: Runtime, app: Flask, auth: dict[str, str]
) -> None:
    make_account(runtime, "jane", OLD)
    request_id = start(runtime, app, auth)
    confirm = link_token(runtime, request_id, LinkPurpose.CONFIRM)
    revert = link_token(runtime, request_id, LinkPurpose.REVERT)
    answers = at_once(
        app,
        [
            post("/v1/email-change/confirm", {"token": confirm}, auth),
            post("/v1/email-change/revert", {"token": revert}, auth),
        ],
    )
    assert answers[1].status_code == 200  # a revert is never refused by a confirmation
    assert answers[0].status_code in (200, 409)
    [request] = requests_of(runtime)
    assert request.state is ChangeState.REVERTED
    assert account_row(runtime, "jane").email == OLD


def test_two_requests_at_once_leave_one_open_request(
    runtime: Runtime, app: Flask, auth: dict[str, str]
) -> None:
    make_account(runtime, "jane", OLD)
    calls = [
        post(
            "/v1/accounts/jane/email-change",
            {
                "new_email": f"new{i}@example.net",
                "assurance_token": assurance_token(runtime, "jane"),
            },
            auth,
        )
        for i in range(THREADS)
    ]
    answers = at_once(app, calls)
    assert [answer.status_code for answer in answers] == [202] * THREADS
    states = Counter(request.state for request in requests_of(runtime))
    assert states == {ChangeState.AWAITING_CONFIRMATION: 1, ChangeState.REPLACED: THREADS - 1}
    open_ids = {r.id for r in requests_of(runtime) if r.state in OPEN_STATES}
    pending_confirms = [
        n
        for n in change_notices(runtime)
        if n.kind is NoticeKind.EMAIL_CHANGE_CONFIRM and n.state.value == "pending"
    ]
    assert {n.email_change_id for n in pending_confirms} == open_ids


def test_one_token_sent_twice_at_once_is_spent_once(
    runtime: Runtime, app: Flask, auth: dict[str, str]
) -> None:
    make_account(runtime, "jane", OLD)
    token = assurance_token(runtime, "jane")
    calls = [
        post(
            "/v1/accounts/jane/email-change",
            {"new_email": f"new{i}@example.net", "assurance_token": token},
            auth,
        )
        for i in range(THREADS)
    ]
    answers = at_once(app, calls)
    statuses = Counter(answer.status_code for answer in answers)
    assert statuses == {202: 1, 403: THREADS - 1}
    assert len(requests_of(runtime)) == 1


# Spellings of one mailbox: the domain's case and the local part's case fold to one key.
SPELLINGS = ["Shared@Example.net", "shared@example.NET", "SHARED@example.net", "shared@EXAMPLE.net"]


def test_confirmations_of_one_address_for_several_accounts_let_one_win(
    runtime: Runtime, app: Flask, auth: dict[str, str]
) -> None:
    """Accounts asking for spellings of one address may all be asked (nobody holds it
    yet); confirmed at once, exactly one gets it and the others get 409 address_in_use."""
    tokens = []
    for index, spelling in enumerate(SPELLINGS):
        name = f"user{index}"
        make_account(runtime, name, f"{name}@example.org")
        response = app.test_client().post(
            f"/v1/accounts/{name}/email-change",
            json={"new_email": spelling, "assurance_token": assurance_token(runtime, name)},
            headers=auth,
        )
        assert response.status_code == 202, response.get_json()
        request_id = response.get_json()["request_id"]
        tokens.append(link_token(runtime, request_id, LinkPurpose.CONFIRM))
    answers = at_once(
        app, [post("/v1/email-change/confirm", {"token": token}, auth) for token in tokens]
    )
    statuses = Counter(answer.status_code for answer in answers)
    assert statuses == {200: 1, 409: len(SPELLINGS) - 1}, statuses
    for answer in answers:
        if answer.status_code == 409:
            assert answer.get_json()["code"] == "address_in_use"
    holders = [
        name
        for name in (f"user{i}" for i in range(len(SPELLINGS)))
        if account_row(runtime, name).email.lower() == "shared@example.net"
    ]
    assert len(holders) == 1
    states = Counter(request.state for request in requests_of(runtime))
    # The losers' requests are as they were: nothing of a refused confirmation is kept.
    assert states == {
        ChangeState.CONFIRMED: 1,
        ChangeState.AWAITING_CONFIRMATION: len(SPELLINGS) - 1,
    }
