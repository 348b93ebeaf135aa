"""The links of a closed request, on SQLite and PostgreSQL: every way a request closes
(cancelled, replaced, confirmed, reverted, superseded by another change of the address:
PUT, batch, import)
leaves its links answering 409 ``request_closed`` on the API and a "this request was
closed" page (409, no button) on the link pages; a token that never was one stays 400
``link_invalid``; a confirmation link that ran out stays 410 ``link_expired``."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from sqlalchemy import update

from service.db import utcnow
from service.email_change.request import expire_requests
from service.email_change.tokens import LinkPurpose
from service.models import ChangeState, EmailChangeRequest, NoticeState
from service.runtime import Runtime
from tests.support.cli import invoke
from tests.support.email_change import (
    account_row,
    assurance_token,
    audit_actions,
    change_notices,
    link_token,
    requests_of,
)
from tests.support.factories import make_account
from tests.support.http import assert_problem

OLD = "jane@example.org"
NEW = "jane.new@example.net"
MOVED = "jane.moved@example.org"
Close = Callable[[Runtime, FlaskClient, dict[str, str], str], None]


def start(runtime: Runtime, client: FlaskClient, auth: dict[str, str], new: str = NEW) -> str:
    response = client.post(
        "/v1/accounts/jane/email-change",
        json={"new_email": new, "assurance_token": assurance_token(runtime, "jane")},
        headers=auth,
    )
    assert response.status_code == 202, response.get_json()
    return str(response.get_json()["request_id"])


def follow(client: FlaskClient, auth: dict[str, str], purpose: LinkPurpose, token: str):  # type: ignore[no-untyped-def]
    return client.post(f"/v1/email-change/{purpose.value}", json={"token": token}, headers=auth)


def cancel(runtime: Runtime, client: FlaskClient, auth: dict[str, str], request_id: str) -> None:
    assert client.delete("/v1/accounts/jane/email-change", headers=auth).status_code == 204


def replace(runtime: Runtime, client: FlaskClient, auth: dict[str, str], request_id: str) -> None:
    start(runtime, client, auth, new="third@example.net")


def confirm(runtime: Runtime, client: FlaskClient, auth: dict[str, str], request_id: str) -> None:
    token = link_token(runtime, request_id, LinkPurpose.CONFIRM)
    assert follow(client, auth, LinkPurpose.CONFIRM, token).status_code == 200


def revert(runtime: Runtime, client: FlaskClient, auth: dict[str, str], request_id: str) -> None:
    token = link_token(runtime, request_id, LinkPurpose.REVERT)
    assert follow(client, auth, LinkPurpose.REVERT, token).status_code == 200


def move_by_put(
    runtime: Runtime, client: FlaskClient, auth: dict[str, str], request_id: str
) -> None:
    moved = client.put("/v1/accounts/jane", json={"email": MOVED}, headers=auth)
    assert moved.status_code == 200, moved.get_json()


def move_by_batch(
    runtime: Runtime, client: FlaskClient, auth: dict[str, str], request_id: str
) -> None:
    body = {"accounts": [{"external_id": "jane", "email": MOVED}]}
    moved = client.post("/v1/accounts:batch", json=body, headers=auth)
    assert moved.status_code == 200, moved.get_json()


def move_by_import(
    runtime: Runtime, client: FlaskClient, auth: dict[str, str], request_id: str
) -> None:
    path = Path(tempfile.mkdtemp()) / "accounts.csv"
    path.write_text(f"external_id,email\njane,{MOVED}\n", encoding="utf-8")
    result = invoke(client.application.test_cli_runner(), "accounts", "import", str(path))
    assert result.exit_code == 0, result.output


# How each closes the request, and which of its links are then closed (a replaced or
# confirmed request's revert link still works: "not me" must still be possible).
CLOSINGS: list[tuple[str, Close, ChangeState, tuple[LinkPurpose, ...]]] = [
    ("cancelled", cancel, ChangeState.CANCELLED, (LinkPurpose.CONFIRM, LinkPurpose.REVERT)),
    ("replaced", replace, ChangeState.REPLACED, (LinkPurpose.CONFIRM,)),
    ("confirmed", confirm, ChangeState.CONFIRMED, (LinkPurpose.CONFIRM,)),
    ("reverted", revert, ChangeState.REVERTED, (LinkPurpose.CONFIRM, LinkPurpose.REVERT)),
    ("put", move_by_put, ChangeState.SUPERSEDED, (LinkPurpose.CONFIRM, LinkPurpose.REVERT)),
]
MOVES = {"put": move_by_put, "batch": move_by_batch, "import": move_by_import}


@pytest.mark.parametrize(
    ("name", "close", "state", "closed"), CLOSINGS, ids=[c[0] for c in CLOSINGS]
)
def test_the_links_of_a_closed_request_say_it_is_closed(
    runtime: Runtime,
    client: FlaskClient,
    auth: dict[str, str],
    name: str,
    close: Close,
    state: ChangeState,
    closed: tuple[LinkPurpose, ...],
) -> None:
    make_account(runtime, "jane", OLD)
    request_id = start(runtime, client, auth)
    tokens = {purpose: link_token(runtime, request_id, purpose) for purpose in LinkPurpose}
    close(runtime, client, auth, request_id)
    assert {r.id: r.state for r in requests_of(runtime)}[request_id] is state
    for purpose in closed:
        page = client.get(f"/email-change/{purpose.value}?token={tokens[purpose]}")
        assert page.status_code == 409, (name, purpose)
        html = page.get_data(as_text=True)
        assert "This request was closed" in html
        assert "<button" not in html
        assert_problem(follow(client, auth, purpose, tokens[purpose]), 409, "request_closed")
    # A token that never was one is still just invalid.
    for purpose in LinkPurpose:
        made_up = tokens[purpose][:-4] + "AAAA"
        assert_problem(follow(client, auth, purpose, made_up), 400, "link_invalid")
        assert client.get(f"/email-change/{purpose.value}?token={made_up}").status_code == 400


def test_an_expired_request_says_expired(
    runtime: Runtime, client: FlaskClient, auth: dict[str, str]
) -> None:
    make_account(runtime, "jane", OLD)
    request_id = start(runtime, client, auth)
    token = link_token(runtime, request_id, LinkPurpose.CONFIRM)
    with runtime.db.transaction() as session:
        session.execute(
            update(EmailChangeRequest).values(confirm_expires_at=utcnow() - timedelta(seconds=1))
        )
        assert expire_requests(session, now=utcnow(), limit=10) == 1
    assert requests_of(runtime)[0].state is ChangeState.EXPIRED
    assert_problem(follow(client, auth, LinkPurpose.CONFIRM, token), 410, "link_expired")
    assert client.get(f"/email-change/confirm?token={token}").status_code == 410


@pytest.mark.parametrize("path", sorted(MOVES))
def test_a_change_of_the_address_by_another_path_supersedes_the_pending_request(
    runtime: Runtime, client: FlaskClient, auth: dict[str, str], path: str
) -> None:
    make_account(runtime, "jane", OLD)
    request_id = start(runtime, client, auth)
    confirm_link = link_token(runtime, request_id, LinkPurpose.CONFIRM)
    MOVES[path](runtime, client, auth, request_id)
    [request] = requests_of(runtime)
    assert request.state is ChangeState.SUPERSEDED
    assert request.closed_at is not None
    # Nothing of it goes out any more, nothing is pending, nothing can be resent.
    assert {n.state for n in change_notices(runtime)} == {NoticeState.CANCELLED}
    assert_problem(
        client.get("/v1/accounts/jane/email-change", headers=auth), 404, "no_pending_change"
    )
    assert client.get("/v1/accounts/jane", headers=auth).get_json()["pending_email_change"] is None
    resend = client.post("/v1/accounts/jane/email-change/resend", headers=auth)
    assert_problem(resend, 404, "no_pending_change")
    assert len(change_notices(runtime)) == 2  # the confirmation and the alert, cancelled
    assert_problem(follow(client, auth, LinkPurpose.CONFIRM, confirm_link), 409, "request_closed")
    assert account_row(runtime, "jane").email == MOVED
    [event] = audit_actions(runtime, "email_change.superseded")
    assert event["actor"].startswith("cause:account_")


def test_a_respelling_of_the_same_mailbox_keeps_the_pending_request(
    runtime: Runtime, client: FlaskClient, auth: dict[str, str]
) -> None:
    make_account(runtime, "jane", OLD)
    request_id = start(runtime, client, auth)
    moved = client.put("/v1/accounts/jane", json={"email": OLD.upper()}, headers=auth)
    assert moved.status_code == 200
    assert requests_of(runtime)[0].state is ChangeState.AWAITING_CONFIRMATION
    token = link_token(runtime, request_id, LinkPurpose.CONFIRM)
    assert follow(client, auth, LinkPurpose.CONFIRM, token).status_code == 200


@pytest.mark.parametrize("path", sorted(MOVES))
def test_every_path_that_moves_the_account_sets_email_changed_at(
    runtime: Runtime, client: FlaskClient, auth: dict[str, str], path: str
) -> None:
    make_account(runtime, "jane", OLD)
    respelled = client.put("/v1/accounts/jane", json={"email": OLD.upper()}, headers=auth)
    assert respelled.status_code == 200
    assert respelled.get_json()["email_changed_at"] is None  # the same mailbox
    before = utcnow()
    MOVES[path](runtime, client, auth, "")
    changed_at = account_row(runtime, "jane").email_changed_at
    assert changed_at is not None
    assert changed_at >= before - timedelta(seconds=1)
    shown = client.get("/v1/accounts/jane", headers=auth).get_json()["email_changed_at"]
    assert shown is not None
