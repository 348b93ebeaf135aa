"""POST /v1/accounts/{id}/email-change: the step-up it needs, the addresses it refuses, the
two messages it queues; a refusal changes nothing and leaves the token unspent."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from jobs.ingest.pipeline import ingest_leak
from service.db import utcnow
from service.email_change.tokens import LinkPurpose
from service.models import ChangeState, NoticeKind, NoticeState
from service.runtime import Runtime
from tests.support.email_change import (
    account_row,
    assurance_token,
    audit_actions,
    change_notices,
    link_token,
    requests_of,
)
from tests.support.factories import expose, make_account
from tests.support.http import assert_problem
from tests.support.leakfiles import write_lines

OLD = "Jane.Doe@example.org"
NEW = "jane.new@example.net"


def url(external_id: str = "jane") -> str:
    return f"/v1/accounts/{external_id}/email-change"


def ask(
    client: FlaskClient, auth: dict[str, str], token: str | None, new: str = NEW, **extra: object
):  # type: ignore[no-untyped-def]
    body: dict[str, object] = {"new_email": new, **extra}
    if token is not None:
        body["assurance_token"] = token
    return client.post(url(), json=body, headers=auth)


def nothing_written(runtime: Runtime) -> None:
    assert requests_of(runtime) == []
    assert change_notices(runtime) == []
    assert audit_actions(runtime) == []


def test_a_request_answers_202_and_queues_two_one_recipient_messages(
    runtime: Runtime, client: FlaskClient, auth: dict[str, str]
) -> None:
    make_account(runtime, "jane", OLD)
    response = ask(client, auth, assurance_token(runtime, "jane"))
    assert response.status_code == 202, response.get_json()
    body = response.get_json()
    assert set(body) == {
        "request_id",
        "state",
        "priority",
        "expires_at",
        "address_leaked",
        "address_restored",
    }
    assert body["address_restored"] is None  # a revert's answer only
    assert body["state"] == "awaiting_confirmation"
    assert body["priority"] == "normal"
    assert body["address_leaked"] is False
    [request] = requests_of(runtime)
    assert request.id == body["request_id"]
    assert request.new_email == NEW
    assert request.old_email == OLD
    assert request.confirm_expires_at is not None
    assert abs(request.confirm_expires_at - utcnow() - timedelta(hours=24)) < timedelta(minutes=1)
    assert request.revert_expires_at is not None
    assert abs(request.revert_expires_at - utcnow() - timedelta(days=7)) < timedelta(minutes=1)
    kinds = sorted(notice.kind.value for notice in change_notices(runtime))
    assert kinds == ["email_change_alert", "email_change_confirm"]
    assert {n.email_change_id for n in change_notices(runtime)} == {request.id}
    # The address is not changed yet; the tokens are stored only as hashes.
    assert account_row(runtime, "jane").email == OLD
    confirm = link_token(runtime, request.id, LinkPurpose.CONFIRM)
    assert request.confirm_token_hash is not None
    assert confirm.encode() not in request.confirm_token_hash
    [event] = audit_actions(runtime)
    assert event["action"] == "email_change.requested"
    assert event["detail"]["to"] == "j***@example.net"
    assert "jane.new" not in str(event)
    assert "Jane.Doe" not in str(event)


def test_an_open_exposure_makes_the_request_high_priority(
    runtime: Runtime, client: FlaskClient, auth: dict[str, str]
) -> None:
    account_id = make_account(runtime, "jane", OLD)
    expose(runtime, account_id)
    response = ask(client, auth, assurance_token(runtime, "jane"))
    assert response.status_code == 202
    assert response.get_json()["priority"] == "high"


@pytest.mark.parametrize("case", ["missing", "forged", "other_account", "expired", "old_epoch"])
def test_without_a_valid_step_up_403_and_nothing_changes(
    runtime: Runtime, client: FlaskClient, auth: dict[str, str], case: str
) -> None:
    make_account(runtime, "jane", OLD)
    make_account(runtime, "mallory", "mallory@example.org")
    token: str | None
    if case == "missing":
        token = None
    elif case == "forged":
        token = assurance_token(runtime, "jane")[:-4] + "AAAA"
    elif case == "other_account":
        token = assurance_token(runtime, "mallory")
    elif case == "expired":
        token = assurance_token(runtime, "jane", now=utcnow() - timedelta(hours=1))
    else:
        token = assurance_token(runtime, "jane")
        # The address changes through the login service: what the step-up vouched for ends.
        client.put(
            url().removesuffix("/email-change"), json={"email": "j2@example.org"}, headers=auth
        )
    assert_problem(ask(client, auth, token), 403, "step_up_required")
    nothing_written(runtime)


def test_a_token_serves_one_change_and_a_refusal_does_not_spend_it(
    runtime: Runtime, client: FlaskClient, auth: dict[str, str]
) -> None:
    make_account(runtime, "jane", OLD)
    token = assurance_token(runtime, "jane")
    assert_problem(ask(client, auth, token, new="JANE.DOE@example.org"), 422, "address_unchanged")
    assert_problem(ask(client, auth, token, new="not an address"), 422, "invalid_email")
    nothing_written(runtime)
    assert ask(client, auth, token).status_code == 202
    assert_problem(ask(client, auth, token, new="other@example.net"), 403, "step_up_required")
    assert len(requests_of(runtime)) == 1


def test_an_address_another_account_holds_is_409(
    runtime: Runtime, client: FlaskClient, auth: dict[str, str]
) -> None:
    make_account(runtime, "jane", OLD)
    make_account(runtime, "john", "John.Smith@example.net")
    problem = assert_problem(
        ask(client, auth, assurance_token(runtime, "jane"), new="john.smith@EXAMPLE.net"),
        409,
        "address_in_use",
    )
    assert "john" not in problem.get("detail", "").lower()
    nothing_written(runtime)


def test_a_leaked_address_is_refused_unless_accepted(
    runtime: Runtime, client: FlaskClient, auth: dict[str, str], tmp_path: Path
) -> None:
    make_account(runtime, "jane", OLD)
    ingest_leak(runtime, write_lines(tmp_path / "leak.txt", ["leaked@example.net"]), slug="l1")
    token = assurance_token(runtime, "jane")
    assert_problem(ask(client, auth, token, new="Leaked@example.net"), 422, "address_leaked")
    nothing_written(runtime)
    response = ask(client, auth, token, new="Leaked@example.net", accept_leaked_address=True)
    assert response.status_code == 202
    assert response.get_json()["address_leaked"] is True
    assert audit_actions(runtime)[-1]["detail"]["accepted_leaked"] is True


def test_every_answer_about_the_request_says_the_same_of_a_leaked_address(
    runtime: Runtime, client: FlaskClient, auth: dict[str, str], tmp_path: Path
) -> None:
    """The request's answer, the pending change's GET (and the account's), the
    confirmation's and the revert's answer all say ``address_leaked`` the same way."""
    make_account(runtime, "jane", OLD)
    ingest_leak(runtime, write_lines(tmp_path / "leak.txt", ["leaked@example.net"]), slug="l1")
    token = assurance_token(runtime, "jane")
    asked = ask(client, auth, token, new="Leaked@example.net", accept_leaked_address=True)
    assert asked.status_code == 202
    request_id = asked.get_json()["request_id"]
    pending = client.get("/v1/accounts/jane/email-change", headers=auth).get_json()
    account = client.get("/v1/accounts/jane", headers=auth).get_json()
    confirm = link_token(runtime, request_id, LinkPurpose.CONFIRM)
    confirmed = client.post("/v1/email-change/confirm", json={"token": confirm}, headers=auth)
    assert confirmed.status_code == 200, confirmed.get_json()
    revert = link_token(runtime, request_id, LinkPurpose.REVERT)
    reverted = client.post("/v1/email-change/revert", json={"token": revert}, headers=auth)
    assert reverted.status_code == 200, reverted.get_json()
    answers = [
        asked.get_json(),
        pending,
        account["pending_email_change"],
        confirmed.get_json(),
        reverted.get_json(),
    ]
    assert [answer["address_leaked"] for answer in answers] == [True] * 5


def test_a_newer_request_replaces_the_pending_one(
    runtime: Runtime, client: FlaskClient, auth: dict[str, str]
) -> None:
    make_account(runtime, "jane", OLD)
    first = ask(client, auth, assurance_token(runtime, "jane")).get_json()["request_id"]
    first_link = link_token(runtime, first, LinkPurpose.CONFIRM)
    second = ask(client, auth, assurance_token(runtime, "jane"), new="third@example.net")
    assert second.status_code == 202
    states = {r.id: r.state for r in requests_of(runtime)}
    assert states[first] is ChangeState.REPLACED
    assert states[second.get_json()["request_id"]] is ChangeState.AWAITING_CONFIRMATION
    # The first request's unsent messages are cancelled; its link is dead.
    first_notices = [n for n in change_notices(runtime) if n.email_change_id == first]
    assert {n.state for n in first_notices} == {NoticeState.CANCELLED}
    assert_problem(
        client.post("/v1/email-change/confirm", json={"token": first_link}, headers=auth),
        409,
        "request_closed",
    )
    assert account_row(runtime, "jane").email == OLD
    kinds = [n.kind for n in change_notices(runtime) if n.state is NoticeState.PENDING]
    assert sorted(kinds) == [NoticeKind.EMAIL_CHANGE_ALERT, NoticeKind.EMAIL_CHANGE_CONFIRM]


def test_the_revert_link_of_a_replaced_request_stops_the_newer_one(
    runtime: Runtime, client: FlaskClient, auth: dict[str, str]
) -> None:
    make_account(runtime, "jane", OLD)
    first = ask(client, auth, assurance_token(runtime, "jane")).get_json()["request_id"]
    second = ask(client, auth, assurance_token(runtime, "jane"), new="third@example.net")
    second_id = second.get_json()["request_id"]
    revert = link_token(runtime, first, LinkPurpose.REVERT)
    response = client.post("/v1/email-change/revert", json={"token": revert}, headers=auth)
    assert response.status_code == 200
    states = {r.id: r.state for r in requests_of(runtime)}
    assert states == {first: ChangeState.REVERTED, second_id: ChangeState.REVERTED}
    confirm = link_token(runtime, second_id, LinkPurpose.CONFIRM)
    answer = client.post("/v1/email-change/confirm", json={"token": confirm}, headers=auth)
    assert answer.status_code in (400, 409)
    assert account_row(runtime, "jane").email == OLD
    actions = [event["action"] for event in audit_actions(runtime)]
    assert actions[-2:] == ["email_change.voided_by_revert", "email_change.reverted"]


def test_unknown_account_is_404(client: FlaskClient, auth: dict[str, str]) -> None:
    assert_problem(ask(client, auth, "x"), 404)


def test_a_revert_link_also_undoes_a_later_change_that_took_effect(
    runtime: Runtime, client: FlaskClient, auth: dict[str, str]
) -> None:
    make_account(runtime, "jane", OLD)
    first = ask(client, auth, assurance_token(runtime, "jane")).get_json()["request_id"]
    second = ask(client, auth, assurance_token(runtime, "jane"), new="third@example.net")
    second_id = second.get_json()["request_id"]
    confirm = link_token(runtime, second_id, LinkPurpose.CONFIRM)
    assert (
        client.post("/v1/email-change/confirm", json={"token": confirm}, headers=auth).status_code
        == 200
    )
    assert account_row(runtime, "jane").email == "third@example.net"
    # The person reads the first alert and says "not me": the account comes back.
    revert = link_token(runtime, first, LinkPurpose.REVERT)
    assert (
        client.post("/v1/email-change/revert", json={"token": revert}, headers=auth).status_code
        == 200
    )
    assert account_row(runtime, "jane").email == OLD
    states = {r.id: r.state for r in requests_of(runtime)}
    assert states == {first: ChangeState.REVERTED, second_id: ChangeState.REVERTED}
    causes = [e["detail"]["cause"] for e in audit_actions(runtime, "account.address_changed")]
    assert causes == ["email_change_confirmed", "email_change_reverted"]
