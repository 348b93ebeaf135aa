"""Confirming and reverting through /v1 (the same domain step as the link pages): single
use, expiry, confirm after revert, the cooling-off, the hold on sign-ins until support
clears it; on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy import select, update

from jobs.ingest.pipeline import ingest_leak
from service.clients import Scope
from service.db import utcnow
from service.email_change.tokens import LinkPurpose
from service.models import (
    ChangeState,
    EmailChangeRequest,
    Exposure,
    ExposureState,
    Notice,
    NoticeKind,
    NoticeState,
)
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
from tests.support.factories import expose, make_account, make_api_key
from tests.support.http import assert_problem, bearer
from tests.support.leakfiles import write_lines

OLD = "jane@example.org"
NEW = "jane.new@example.net"


def start(runtime: Runtime, client: FlaskClient, auth: dict[str, str], new: str = NEW) -> str:
    response = client.post(
        "/v1/accounts/jane/email-change",
        json={"new_email": new, "assurance_token": assurance_token(runtime, "jane")},
        headers=auth,
    )
    assert response.status_code == 202, response.get_json()
    return str(response.get_json()["request_id"])


def follow(client: FlaskClient, auth: dict[str, str], purpose: str, token: str):  # type: ignore[no-untyped-def]
    return client.post(f"/v1/email-change/{purpose}", json={"token": token}, headers=auth)


def risk(client: FlaskClient, auth: dict[str, str]) -> dict[str, object]:
    response = client.post("/v1/risk/check", json={"account_id": "jane"}, headers=auth)
    assert response.status_code == 200, response.get_json()
    return dict(response.get_json())


def test_confirming_applies_the_change_once(
    runtime: Runtime, client: FlaskClient, auth: dict[str, str]
) -> None:
    account_id = make_account(runtime, "jane", OLD)
    expose(runtime, account_id)
    request_id = start(runtime, client, auth)
    token = link_token(runtime, request_id, LinkPurpose.CONFIRM)
    response = follow(client, auth, "confirm", token)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["state"] == "confirmed"
    account = client.get("/v1/accounts/jane", headers=auth).get_json()
    assert account["email"] == NEW
    assert account["email_changed_at"] is not None
    assert account["pending_email_change"] is None
    # Part 1 ran: the old address's exposure ended; the risk check lets the account in.
    with runtime.db.read_session() as session:
        states = set(session.scalars(select(Exposure.state)))
    assert states == {ExposureState.RESOLVED}
    assert risk(client, auth)["decision"] == "allow"
    changed = [n for n in change_notices(runtime) if n.kind is NoticeKind.EMAIL_CHANGED]
    assert len(changed) == 1
    assert_problem(follow(client, auth, "confirm", token), 409, "request_closed")
    actions = [event["action"] for event in audit_actions(runtime)]
    assert actions == ["email_change.requested", "email_change.confirmed"]
    address_events = audit_actions(runtime, "account.address_changed")
    assert [e["detail"]["cause"] for e in address_events] == ["email_change_confirmed"]


def test_pending_change_is_shown_and_can_be_cancelled(
    runtime: Runtime, client: FlaskClient, auth: dict[str, str]
) -> None:
    make_account(runtime, "jane", OLD)
    assert_problem(
        client.get("/v1/accounts/jane/email-change", headers=auth), 404, "no_pending_change"
    )
    request_id = start(runtime, client, auth)
    shown = client.get("/v1/accounts/jane/email-change", headers=auth).get_json()
    assert shown["request_id"] == request_id
    assert shown["state"] == "awaiting_confirmation"
    assert shown["new_email"] == "j***@example.net"
    pending = client.get("/v1/accounts/jane", headers=auth).get_json()["pending_email_change"]
    assert pending["request_id"] == request_id
    assert client.delete("/v1/accounts/jane/email-change", headers=auth).status_code == 204
    assert_problem(
        client.get("/v1/accounts/jane/email-change", headers=auth), 404, "no_pending_change"
    )
    assert {n.state for n in change_notices(runtime)} == {NoticeState.CANCELLED}
    token = link_token(runtime, request_id, LinkPurpose.CONFIRM)
    assert_problem(follow(client, auth, "confirm", token), 409, "request_closed")
    assert account_row(runtime, "jane").email == OLD


def test_resend_gives_a_new_link_and_voids_the_old(
    runtime: Runtime, client: FlaskClient, auth: dict[str, str]
) -> None:
    make_account(runtime, "jane", OLD)
    request_id = start(runtime, client, auth)
    first = link_token(runtime, request_id, LinkPurpose.CONFIRM)
    response = client.post("/v1/accounts/jane/email-change/resend", headers=auth)
    assert response.status_code == 202
    second = link_token(runtime, request_id, LinkPurpose.CONFIRM)
    assert second != first
    confirms = [n for n in change_notices(runtime) if n.kind is NoticeKind.EMAIL_CHANGE_CONFIRM]
    assert [n.state for n in confirms] == [NoticeState.CANCELLED, NoticeState.PENDING]
    assert_problem(follow(client, auth, "confirm", first), 400, "link_invalid")
    assert follow(client, auth, "confirm", second).status_code == 200


def test_resend_is_rate_limited_per_account(
    runtime: Runtime,
    make_app,
    auth: dict[str, str],  # type: ignore[no-untyped-def]
) -> None:
    client = make_app(rate_limit_email_change_resend="2/hour").test_client()
    make_account(runtime, "jane", OLD)
    start(runtime, client, auth)
    for _ in range(2):
        assert client.post("/v1/accounts/jane/email-change/resend", headers=auth).status_code == 202
    assert_problem(
        client.post("/v1/accounts/jane/email-change/resend", headers=auth), 429, "too_many_requests"
    )


def test_an_expired_link_is_410_and_changes_nothing(
    runtime: Runtime, client: FlaskClient, auth: dict[str, str]
) -> None:
    make_account(runtime, "jane", OLD)
    request_id = start(runtime, client, auth)
    with runtime.db.transaction() as session:
        session.execute(
            update(EmailChangeRequest).values(
                confirm_expires_at=utcnow() - timedelta(seconds=1),
                revert_expires_at=utcnow() - timedelta(seconds=1),
            )
        )
    for purpose in LinkPurpose:
        token = link_token(runtime, request_id, purpose)
        assert_problem(follow(client, auth, purpose.value, token), 410, "link_expired")
    assert account_row(runtime, "jane").email == OLD
    [request] = requests_of(runtime)
    assert request.state is ChangeState.AWAITING_CONFIRMATION


@pytest.mark.parametrize("token", ["", "x" * 101, "tampered-token-AAAAAAAAAAAAAAAAAAAAAAAAAAAAA"])
def test_a_tampered_token_is_refused(
    runtime: Runtime, client: FlaskClient, auth: dict[str, str], token: str
) -> None:
    make_account(runtime, "jane", OLD)
    start(runtime, client, auth)
    response = follow(client, auth, "confirm", token)
    assert response.status_code in (400, 422)
    assert response.mimetype == "application/problem+json"
    assert account_row(runtime, "jane").email == OLD


def test_revert_before_confirmation_voids_it_and_holds_the_account(
    runtime: Runtime, client: FlaskClient, auth: dict[str, str], runner: FlaskCliRunner
) -> None:
    make_account(runtime, "jane", OLD)
    request_id = start(runtime, client, auth)
    epoch = account_row(runtime, "jane").security_epoch
    response = follow(client, auth, "revert", link_token(runtime, request_id, LinkPurpose.REVERT))
    assert response.status_code == 200
    assert response.get_json()["state"] == "reverted"
    assert account_row(runtime, "jane").email == OLD
    assert account_row(runtime, "jane").security_epoch > epoch
    # A confirmation after the revert is refused and changes nothing.
    confirm = link_token(runtime, request_id, LinkPurpose.CONFIRM)
    assert_problem(follow(client, auth, "confirm", confirm), 409, "request_closed")
    assert account_row(runtime, "jane").email == OLD
    # No new change during the cooling-off: 409 with Retry-After, the token unspent.
    token = assurance_token(runtime, "jane")
    response = client.post(
        "/v1/accounts/jane/email-change",
        json={"new_email": "third@example.net", "assurance_token": token},
        headers=auth,
    )
    assert_problem(response, 409, "cooling_off")
    retry_after = int(response.headers["Retry-After"])
    assert 71 * 3600 < retry_after <= 72 * 3600
    assert len(requests_of(runtime)) == 1
    # Every sign-in steps up, with its own reason, until support clears the hold.
    verdict = risk(client, auth)
    assert verdict["decision"] == "step_up"
    assert verdict["reasons"] == ["email_change_reverted"]
    result = invoke(
        runner, "email-change", "clear-hold", "jane", "--by", "sam", "--reason", "called back"
    )
    assert result.exit_code == 0, result.output
    assert risk(client, auth)["decision"] == "allow"
    assert audit_actions(runtime)[-1]["action"] == "email_change.hold_cleared"
    # The cooling-off outlives the clearing.
    assert_problem(
        client.post(
            "/v1/accounts/jane/email-change",
            json={"new_email": "third@example.net", "assurance_token": token},
            headers=auth,
        ),
        409,
        "cooling_off",
    )


def test_revert_after_confirmation_restores_the_old_address(
    runtime: Runtime, client: FlaskClient, auth: dict[str, str]
) -> None:
    account_id = make_account(runtime, "jane", OLD)
    expose(runtime, account_id)
    request_id = start(runtime, client, auth)
    follow(client, auth, "confirm", link_token(runtime, request_id, LinkPurpose.CONFIRM))
    assert account_row(runtime, "jane").email == NEW
    response = follow(client, auth, "revert", link_token(runtime, request_id, LinkPurpose.REVERT))
    assert response.status_code == 200
    assert account_row(runtime, "jane").email == OLD
    causes = [e["detail"]["cause"] for e in audit_actions(runtime, "account.address_changed")]
    assert causes == ["email_change_confirmed", "email_change_reverted"]
    verdict = risk(client, auth)
    assert verdict["decision"] == "step_up"
    assert "email_change_reverted" in verdict["reasons"]
    # A second use of the revert link does nothing more.
    again = follow(client, auth, "revert", link_token(runtime, request_id, LinkPurpose.REVERT))
    assert_problem(again, 409, "request_closed")


def test_the_cooling_off_follows_the_setting(
    runtime: Runtime,
    make_app,
    auth: dict[str, str],  # type: ignore[no-untyped-def]
) -> None:
    client = make_app(email_change_cooldown_hours=0).test_client()
    make_account(runtime, "jane", OLD)
    request_id = start(runtime, client, auth)
    follow(client, auth, "revert", link_token(runtime, request_id, LinkPurpose.REVERT))
    start(runtime, client, auth, new="third@example.net")


def pass_step_up_on(
    runtime: Runtime, client: FlaskClient, auth: dict[str, str], device: str
) -> None:
    challenge = client.post(
        "/v1/step-up/challenges", json={"account_id": "jane", "method": "email_code"}, headers=auth
    ).get_json()["challenge_id"]
    body = {
        "account_id": "jane",
        "method": "email_code",
        "code": runtime.step_up.email_code(challenge),
        "challenge_id": challenge,
        "context": {"device_id": device},
    }
    answer = client.post("/v1/step-up/verify", json=body, headers=auth)
    assert answer.status_code == 200, answer.get_data(as_text=True)


def test_a_trusted_device_does_not_lift_the_hold_of_a_revert(
    runtime: Runtime, client: FlaskClient, auth: dict[str, str], runner: FlaskCliRunner
) -> None:
    device = "the-owners-laptop"
    account_id = make_account(runtime, "jane", OLD)
    expose(runtime, account_id)
    pass_step_up_on(runtime, client, auth, device)
    on_device = {"account_id": "jane", "context": {"device_id": device}}
    verdict = client.post("/v1/risk/check", json=on_device, headers=auth).get_json()
    assert verdict["reasons"] == ["trusted_device"]
    request_id = start(runtime, client, auth)
    follow(client, auth, "revert", link_token(runtime, request_id, LinkPurpose.REVERT))
    # The revert ended the trust; a step-up passed on the device afterwards trusts it
    # again, and still the hold asks for a step-up on every sign-in.
    verdict = client.post("/v1/risk/check", json=on_device, headers=auth).get_json()
    assert verdict["decision"] == "step_up"
    pass_step_up_on(runtime, client, auth, device)
    verdict = client.post("/v1/risk/check", json=on_device, headers=auth).get_json()
    assert verdict["decision"] == "step_up"
    assert "email_change_reverted" in verdict["reasons"]
    invoke(runner, "email-change", "clear-hold", "jane", "--by", "sam", "--reason", "verified")
    verdict = client.post("/v1/risk/check", json=on_device, headers=auth).get_json()
    assert (verdict["decision"], verdict["reasons"]) == ("allow", ["trusted_device"])


def test_nothing_pending_is_404_for_delete_and_resend(
    runtime: Runtime, client: FlaskClient, auth: dict[str, str]
) -> None:
    make_account(runtime, "jane", OLD)
    for response in (
        client.delete("/v1/accounts/jane/email-change", headers=auth),
        client.post("/v1/accounts/jane/email-change/resend", headers=auth),
    ):
        assert_problem(response, 404, "no_pending_change")
    assert_problem(client.delete("/v1/accounts/nobody/email-change", headers=auth), 404)


def test_an_address_taken_before_confirmation_is_refused_at_confirmation(
    runtime: Runtime, client: FlaskClient, auth: dict[str, str]
) -> None:
    make_account(runtime, "jane", OLD)
    request_id = start(runtime, client, auth)
    make_account(runtime, "quick", "Jane.New@example.net")
    token = link_token(runtime, request_id, LinkPurpose.CONFIRM)
    assert_problem(follow(client, auth, "confirm", token), 409, "address_in_use")
    assert account_row(runtime, "jane").email == OLD
    assert requests_of(runtime)[0].state is ChangeState.AWAITING_CONFIRMATION


def test_a_confirmation_after_the_login_service_moved_the_account_is_refused(
    runtime: Runtime, client: FlaskClient, auth: dict[str, str]
) -> None:
    make_account(runtime, "jane", OLD)
    request_id = start(runtime, client, auth)
    client.put("/v1/accounts/jane", json={"email": "moved@example.org"}, headers=auth)
    token = link_token(runtime, request_id, LinkPurpose.CONFIRM)
    assert_problem(follow(client, auth, "confirm", token), 409, "request_closed")
    assert account_row(runtime, "jane").email == "moved@example.org"


def test_requests_are_rate_limited_per_new_address_across_accounts(
    runtime: Runtime,
    make_app,
    auth: dict[str, str],  # type: ignore[no-untyped-def]
) -> None:
    client = make_app(rate_limit_email_change_address="2/hour").test_client()
    for name in ("a1", "a2", "a3"):
        make_account(runtime, name, f"{name}@example.org")
    answers = [
        client.post(
            f"/v1/accounts/{name}/email-change",
            # Spellings of one mailbox share one budget.
            json={"new_email": new, "assurance_token": assurance_token(runtime, name)},
            headers=auth,
        )
        for name, new in (
            ("a1", "target@example.net"),
            ("a2", "Target+x@Example.net"),
            ("a3", "TARGET@example.net"),
        )
    ]
    assert [a.status_code for a in answers[:2]] == [202, 202]
    assert_problem(answers[2], 429, "too_many_requests")
    assert "Retry-After" in answers[2].headers


def test_requests_are_rate_limited_per_account(
    runtime: Runtime,
    make_app,
    auth: dict[str, str],  # type: ignore[no-untyped-def]
) -> None:
    client = make_app(rate_limit_email_change_account="2/hour").test_client()
    make_account(runtime, "jane", OLD)
    statuses = [
        client.post(
            "/v1/accounts/jane/email-change",
            json={
                "new_email": f"n{i}@example.net",
                "assurance_token": assurance_token(runtime, "jane"),
            },
            headers=auth,
        ).status_code
        for i in range(3)
    ]
    assert statuses == [202, 202, 429]


def test_housekeeping_expires_a_request_whose_link_ran_out(
    runtime: Runtime, client: FlaskClient, auth: dict[str, str], runner: FlaskCliRunner
) -> None:
    make_account(runtime, "jane", OLD)
    request_id = start(runtime, client, auth)
    with runtime.db.transaction() as session:
        session.execute(
            update(EmailChangeRequest).values(confirm_expires_at=utcnow() - timedelta(seconds=1))
        )
    result = invoke(runner, "housekeeping", "--json")
    assert '"email_changes_expired": 1' in result.output
    [request] = requests_of(runtime)
    assert request.state is ChangeState.EXPIRED
    assert_problem(
        client.get("/v1/accounts/jane/email-change", headers=auth), 404, "no_pending_change"
    )
    # The old mailbox can still say it was not them.
    revert = link_token(runtime, request_id, LinkPurpose.REVERT)
    assert follow(client, auth, "revert", revert).status_code == 200
    assert "0 email changes expired" in invoke(runner, "housekeeping").output


def test_refused_requests_do_not_use_up_the_owners_budgets(
    runtime: Runtime,
    make_app,
    auth: dict[str, str],  # type: ignore[no-untyped-def]
) -> None:
    """Requests refused before their assurance token is found valid (none, forged,
    another account's), and resends with nothing pending, count only against the client:
    the account's owner and the address keep their whole budgets."""
    client = make_app(
        rate_limit_email_change_account="2/hour",
        rate_limit_email_change_address="2/hour",
        rate_limit_email_change_resend="2/hour",
    ).test_client()
    make_account(runtime, "jane", OLD)
    make_account(runtime, "mallory", "mallory@example.org")
    for token in (None, "forged", assurance_token(runtime, "mallory")) * 2:
        body: dict[str, object] = {"new_email": NEW}
        if token is not None:
            body["assurance_token"] = token
        refused = client.post("/v1/accounts/jane/email-change", json=body, headers=auth)
        assert_problem(refused, 403, "step_up_required")
    for _ in range(3):
        nothing = client.post("/v1/accounts/jane/email-change/resend", headers=auth)
        assert_problem(nothing, 404, "no_pending_change")
    # The owner's two requests to NEW, and two resends, all pass; then the budgets end.
    start(runtime, client, auth)
    start(runtime, client, auth)
    for _ in range(2):
        assert client.post("/v1/accounts/jane/email-change/resend", headers=auth).status_code == 202
    assert_problem(
        client.post("/v1/accounts/jane/email-change/resend", headers=auth), 429, "too_many_requests"
    )
    third = client.post(
        "/v1/accounts/jane/email-change",
        json={
            "new_email": "other@example.net",
            "assurance_token": assurance_token(runtime, "jane"),
        },
        headers=auth,
    )
    assert_problem(third, 429, "too_many_requests")


def test_refusals_after_a_valid_step_up_count(
    runtime: Runtime,
    make_app,
    auth: dict[str, str],  # type: ignore[no-untyped-def]
) -> None:
    """One step-up cannot probe addresses without bound: a refusal reached with a valid
    assurance token (here: the address is another account's) counts."""
    client = make_app(rate_limit_email_change_account="2/hour").test_client()
    make_account(runtime, "jane", OLD)
    make_account(runtime, "john", "john@example.org")
    token = assurance_token(runtime, "jane")
    statuses = [
        client.post(
            "/v1/accounts/jane/email-change",
            json={"new_email": "john@example.org", "assurance_token": token},
            headers=auth,
        ).status_code
        for _ in range(3)
    ]
    assert statuses == [409, 409, 429]


def test_a_refused_assisted_request_does_not_count(
    runtime: Runtime,
    make_app,
) -> None:
    client = make_app(rate_limit_email_change_account="1/hour").test_client()
    assist = bearer(make_api_key(runtime, Scope.EMAIL_CHANGE_ASSIST))
    make_account(runtime, "jane", OLD)
    make_account(runtime, "john", "john@example.org")
    path = "/v1/accounts/jane/email-change:assisted"
    taken = {"new_email": "john@example.org", "ticket": "SUP-1"}
    for _ in range(2):
        assert_problem(client.post(path, json=taken, headers=assist), 409, "address_in_use")
    fine = {"new_email": NEW, "ticket": "SUP-2"}
    assert client.post(path, json=fine, headers=assist).status_code == 202
    # The same request again could not succeed (SUP-2 is open): its own refusal, not 429.
    assert_problem(client.post(path, json=fine, headers=assist), 409, "assisted_request_open")
    replace = {**fine, "ticket": "SUP-3", "cancel_open_request": True}
    assert_problem(client.post(path, json=replace, headers=assist), 429, "too_many_requests")


def test_a_spent_resend_budget_still_says_nothing_is_pending(
    runtime: Runtime,
    make_app,
    auth: dict[str, str],  # type: ignore[no-untyped-def]
) -> None:
    """A resend with nothing pending was 429 once the account's resend budget was spent,
    though it could not have sent anything: the endpoint's own 404 is the true answer.
    An unknown account stays the 404 it is under the budget; a resend that would go out
    is still refused."""
    client = make_app(rate_limit_email_change_resend="1/hour").test_client()
    make_account(runtime, "jane", OLD)
    resend = "/v1/accounts/jane/email-change/resend"
    start(runtime, client, auth)
    assert client.post(resend, headers=auth).status_code == 202
    assert client.delete("/v1/accounts/jane/email-change", headers=auth).status_code == 204
    for _ in range(2):
        assert_problem(client.post(resend, headers=auth), 404, "no_pending_change")
    unknown = client.post("/v1/accounts/nobody/email-change/resend", headers=auth)
    assert_problem(unknown, 404)
    assert unknown.get_json()["code"] != "too_many_requests"
    start(runtime, client, auth)
    refused = client.post(resend, headers=auth)
    assert_problem(refused, 429, "too_many_requests")
    assert int(refused.headers["Retry-After"]) > 0
    # The refused resend changed nothing: one confirmation waits, the request's own.
    confirms = [n for n in change_notices(runtime) if n.kind is NoticeKind.EMAIL_CHANGE_CONFIRM]
    assert [n.state for n in confirms][-1] == NoticeState.PENDING
    assert sum(n.state is NoticeState.PENDING for n in confirms) == 1


def test_a_spent_change_budget_still_refuses_a_request_without_a_step_up_as_such(
    runtime: Runtime,
    make_app,
    auth: dict[str, str],  # type: ignore[no-untyped-def]
) -> None:
    """Past the account's (or the address's) budget, a request without a valid assurance
    token was 429: it could never have succeeded, and for the address budget the 429 told
    a caller with no step-up that someone had been moving accounts to that address. Such
    a request is now 403 step_up_required as under the budget; one with a valid token is
    still 429, and changes nothing."""
    client = make_app(
        rate_limit_email_change_account="1/hour", rate_limit_email_change_address="1/hour"
    ).test_client()
    make_account(runtime, "jane", OLD)
    make_account(runtime, "mallory", "mallory@example.org")
    start(runtime, client, auth)  # jane's budget and NEW's budget are spent
    # The account's budget (jane), the address's (mallory asks for NEW too).
    for account, other in (("jane", "mallory"), ("mallory", "jane")):
        for token in (None, "forged", assurance_token(runtime, other)):
            body: dict[str, object] = {"new_email": NEW}
            if token is not None:
                body["assurance_token"] = token
            refused = client.post(f"/v1/accounts/{account}/email-change", json=body, headers=auth)
            assert_problem(refused, 403, "step_up_required")
    assert_problem(
        client.post(
            "/v1/accounts/nobody/email-change",
            json={"new_email": NEW, "assurance_token": "forged"},
            headers=auth,
        ),
        404,
    )
    over_account = client.post(
        "/v1/accounts/jane/email-change",
        json={
            "new_email": "other@example.net",
            "assurance_token": assurance_token(runtime, "jane"),
        },
        headers=auth,
    )
    assert_problem(over_account, 429, "too_many_requests")
    over_address = client.post(
        "/v1/accounts/mallory/email-change",
        json={"new_email": NEW, "assurance_token": assurance_token(runtime, "mallory")},
        headers=auth,
    )
    assert_problem(over_address, 429, "too_many_requests")
    assert [r.new_email for r in requests_of(runtime)] == [NEW]


def test_a_spent_assisted_budget_still_gives_a_refused_request_its_own_answer(
    runtime: Runtime,
    make_app,
) -> None:
    """Only an accepted assisted request counts; past the budget a request that would be
    refused (an open assisted request, a taken address) got 429 instead of its refusal."""
    client = make_app(rate_limit_email_change_account="1/hour").test_client()
    assist = bearer(make_api_key(runtime, Scope.EMAIL_CHANGE_ASSIST))
    make_account(runtime, "jane", OLD)
    make_account(runtime, "john", "john@example.org")
    path = "/v1/accounts/jane/email-change:assisted"
    assert (
        client.post(path, json={"new_email": NEW, "ticket": "SUP-1"}, headers=assist).status_code
        == 202
    )
    again = client.post(path, json={"new_email": NEW, "ticket": "SUP-2"}, headers=assist)
    assert_problem(again, 409, "assisted_request_open")
    taken = {"new_email": "john@example.org", "ticket": "SUP-2", "cancel_open_request": True}
    assert_problem(client.post(path, json=taken, headers=assist), 409, "address_in_use")
    replace = {"new_email": "jane3@example.net", "ticket": "SUP-3", "cancel_open_request": True}
    assert_problem(client.post(path, json=replace, headers=assist), 429, "too_many_requests")
    assert [r.ticket for r in requests_of(runtime)] == ["SUP-1"]


def test_a_revert_reopens_the_exposure_and_warns_no_one_twice(
    runtime: Runtime, client: FlaskClient, auth: dict[str, str], tmp_path: Path
) -> None:
    """Leaked address, warned; moved by a confirmed change; reverted. The exposure row is
    the same one, open again; the sent warning row is kept and no second warning waits;
    how the exposure had ended is in the audit trail."""
    ingest_leak(runtime, write_lines(tmp_path / "leak.txt", [OLD]), slug="l1")
    make_account(runtime, "jane", OLD)
    with runtime.db.transaction() as session:
        [exposure_id] = session.scalars(select(Exposure.id))
        session.execute(
            update(Notice)
            .where(Notice.kind == NoticeKind.LEAK_WARNING)
            .values(state=NoticeState.SENT, sent_at=utcnow())
        )
    request_id = start(runtime, client, auth)
    follow(client, auth, "confirm", link_token(runtime, request_id, LinkPurpose.CONFIRM))
    with runtime.db.read_session() as session:
        assert session.scalars(select(Exposure.state)).all() == [ExposureState.RESOLVED]
    reverted = follow(client, auth, "revert", link_token(runtime, request_id, LinkPurpose.REVERT))
    assert reverted.status_code == 200
    assert account_row(runtime, "jane").email == OLD
    with runtime.db.read_session() as session:
        exposures = session.execute(select(Exposure.id, Exposure.state)).all()
        warnings = session.execute(
            select(Notice.state).where(Notice.kind == NoticeKind.LEAK_WARNING)
        ).all()
    assert [(row.id, row.state) for row in exposures] == [(exposure_id, ExposureState.OPEN)]
    assert [row.state for row in warnings] == [NoticeState.SENT]
    [reopened] = audit_actions(runtime, "exposure.reopened")
    assert reopened["detail"]["leak"] == "l1"
    assert reopened["detail"]["was"]["state"] == "resolved"
    assert reopened["detail"]["was"]["end_cause"] == "address_changed"
    assert risk(client, auth)["decision"] == "step_up"


CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')


@pytest.mark.parametrize("via", ["api", "page"])
def test_a_revert_never_puts_back_an_address_another_account_holds_now(
    runtime: Runtime, client: FlaskClient, auth: dict[str, str], via: str
) -> None:
    """Confirmed, then the login service gives the old address to another account, then
    the old mailbox says "not me": the change is voided and the account held as for any
    revert, but the old address is not put back (two accounts would hold it); support is
    told by the audit trail, and the answer says ``address_restored: false``."""
    make_account(runtime, "jane", OLD)
    request_id = start(runtime, client, auth)
    follow(client, auth, "confirm", link_token(runtime, request_id, LinkPurpose.CONFIRM))
    given = client.put("/v1/accounts/john", json={"email": OLD.upper()}, headers=auth)
    assert given.status_code in (200, 201)
    token = link_token(runtime, request_id, LinkPurpose.REVERT)
    if via == "api":
        reverted = follow(client, auth, "revert", token)
        assert reverted.status_code == 200, reverted.get_json()
        assert reverted.get_json()["state"] == "reverted"
        assert reverted.get_json()["address_restored"] is False
    else:
        html = client.get(f"/email-change/revert?token={token}").get_data(as_text=True)
        csrf = CSRF.search(html)
        assert csrf is not None
        page = client.post(
            "/email-change/revert", data={"token": token, "csrf_token": csrf.group(1)}
        )
        assert page.status_code == 200
        assert "could not be put back" in page.get_data(as_text=True)
    assert account_row(runtime, "jane").email == NEW
    assert account_row(runtime, "john").email == OLD.upper()
    assert requests_of(runtime)[0].state is ChangeState.REVERTED
    [event] = audit_actions(runtime, "email_change.revert_unrestored")
    assert event["detail"]["from"] == "j***@example.org"
    verdict = risk(client, auth)
    assert verdict["decision"] == "step_up"
    assert "email_change_reverted" in verdict["reasons"]


def test_a_revert_answers_whether_the_address_came_back(
    runtime: Runtime, client: FlaskClient, auth: dict[str, str]
) -> None:
    make_account(runtime, "jane", OLD)
    first = start(runtime, client, auth)
    answer = follow(client, auth, "revert", link_token(runtime, first, LinkPurpose.REVERT))
    assert answer.get_json()["address_restored"] is None  # it had not taken effect
    make_account(runtime, "mary", "mary@example.org")
    response = client.post(
        "/v1/accounts/mary/email-change",
        json={
            "new_email": "mary.new@example.net",
            "assurance_token": assurance_token(runtime, "mary"),
        },
        headers=auth,
    )
    second = response.get_json()["request_id"]
    follow(client, auth, "confirm", link_token(runtime, second, LinkPurpose.CONFIRM))
    answer = follow(client, auth, "revert", link_token(runtime, second, LinkPurpose.REVERT))
    assert answer.get_json()["address_restored"] is True
    assert account_row(runtime, "mary").email == "mary@example.org"
