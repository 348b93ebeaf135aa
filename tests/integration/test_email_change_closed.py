"""The links of a closed request, on SQLite and PostgreSQL: every way a request closes
(cancelled, replaced, confirmed, reverted, superseded by another change of the address)
leaves its links answering 409 ``request_closed`` on the API and a "this request was
closed" page (409, no button) on the link pages; a token that never was one stays 400
``link_invalid``; a confirmation link that ran out stays 410 ``link_expired``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from flask.testing import FlaskClient
from sqlalchemy import update

from service.db import utcnow
from service.email_change.request import expire_requests
from service.email_change.tokens import LinkPurpose
from service.models import ChangeState, EmailChangeRequest
from service.runtime import Runtime
from tests.support.email_change import assurance_token, link_token, requests_of
from tests.support.factories import make_account
from tests.support.http import assert_problem

OLD = "jane@example.org"
NEW = "jane.new@example.net"
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


# How each closes the request, and which of its links are then closed (a replaced or
# confirmed request's revert link still works: "not me" must still be possible).
CLOSINGS: list[tuple[str, Close, ChangeState, tuple[LinkPurpose, ...]]] = [
    ("cancelled", cancel, ChangeState.CANCELLED, (LinkPurpose.CONFIRM, LinkPurpose.REVERT)),
    ("replaced", replace, ChangeState.REPLACED, (LinkPurpose.CONFIRM,)),
    ("confirmed", confirm, ChangeState.CONFIRMED, (LinkPurpose.CONFIRM,)),
    ("reverted", revert, ChangeState.REVERTED, (LinkPurpose.CONFIRM, LinkPurpose.REVERT)),
]


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
