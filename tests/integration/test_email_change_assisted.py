"""Support-assisted email change: filed through the API or the CLI, queued (open exposures
first, then oldest), approved or denied by a second person; each step audited, addresses
masked; on SQLite and PostgreSQL."""

from __future__ import annotations

import getpass
from typing import Any

from flask.testing import FlaskClient, FlaskCliRunner

from service.clients import Scope
from service.email_change.tokens import LinkPurpose
from service.models import ChangeState, NoticeKind
from service.runtime import Runtime
from tests.support.cli import invoke, json_output, one_error_line, output
from tests.support.email_change import (
    account_row,
    audit_actions,
    change_notices,
    link_token,
    requests_of,
)
from tests.support.factories import expose, make_account, make_api_key
from tests.support.http import assert_problem, bearer


def test_the_api_files_a_request_for_review_and_sends_nothing(
    runtime: Runtime, client: FlaskClient
) -> None:
    make_account(runtime, "jane", "jane@example.org")
    assist = bearer(make_api_key(runtime, Scope.EMAIL_CHANGE_ASSIST))
    write_only = bearer(make_api_key(runtime, Scope.EMAIL_CHANGE_WRITE))
    body = {"new_email": "jane.new@example.net", "ticket": "SUP-1234"}
    assert_problem(
        client.post("/v1/accounts/jane/email-change:assisted", json=body, headers=write_only), 403
    )
    response = client.post("/v1/accounts/jane/email-change:assisted", json=body, headers=assist)
    assert response.status_code == 202, response.get_json()
    assert response.get_json()["state"] == "awaiting_review"
    assert response.get_json()["expires_at"] is None
    assert change_notices(runtime) == []
    [event] = audit_actions(runtime)
    assert event["action"] == "email_change.assisted_requested"
    assert event["detail"]["ticket"] == "SUP-1234"
    assert event["detail"]["to"] == "j***@example.net"
    bad = {"new_email": "jane.new@example.net", "ticket": "no spaces allowed"}
    assert_problem(
        client.post("/v1/accounts/jane/email-change:assisted", json=bad, headers=assist), 422
    )


def test_the_queue_puts_open_exposures_first_then_oldest(
    runtime: Runtime, runner: FlaskCliRunner
) -> None:
    for name in ("first", "second", "exposed"):
        account_id = make_account(runtime, name, f"{name}@example.org")
        if name == "exposed":
            expose(runtime, account_id)
        output(
            runner,
            "email-change",
            "request-assisted",
            name,
            "--new-email",
            f"{name}.new@example.net",
            "--ticket",
            f"T-{name}",
        )
    queue = json_output(invoke(runner, "email-change", "queue", "--json"))
    assert [item["account_id"] for item in queue] == ["exposed", "first", "second"]
    assert queue[0]["open_exposure"] is True
    assert queue[0]["priority"] == "high"
    assert queue[1]["new_email"] == "f***@example.net"
    text = output(runner, "email-change", "queue")
    assert "first.new@" not in text
    assert text.index("exposed") < text.index("first") < text.index("second")


def test_approval_sends_both_messages_and_needs_a_second_person(
    runtime: Runtime, runner: FlaskCliRunner, client: FlaskClient, auth: dict[str, str]
) -> None:
    make_account(runtime, "jane", "jane@example.org")
    line = output(
        runner,
        "email-change",
        "request-assisted",
        "jane",
        "--new-email",
        "jane.new@example.net",
        "--ticket",
        "SUP-9",
    )
    request_id = line.split()[0]
    [request] = requests_of(runtime)
    requester = request.requested_by.split(":", 1)[-1]
    error = one_error_line(
        invoke(runner, "email-change", "approve", request_id, "--by", requester, "--reason", "ok")
    )
    assert "someone other" in error
    result = invoke(
        runner,
        "email-change",
        "approve",
        request_id,
        "--by",
        "second-agent",
        "--reason",
        "identity checked by video call",
    )
    assert result.exit_code == 0, result.output
    assert "jane.new" not in result.output
    kinds = sorted(n.kind for n in change_notices(runtime))
    assert kinds == [NoticeKind.EMAIL_CHANGE_ALERT, NoticeKind.EMAIL_CHANGE_CONFIRM]
    assert requests_of(runtime)[0].state is ChangeState.AWAITING_CONFIRMATION
    # The new mailbox still proves itself.
    token = link_token(runtime, request_id, LinkPurpose.CONFIRM)
    response = client.post("/v1/email-change/confirm", json={"token": token}, headers=auth)
    assert response.status_code == 200
    assert account_row(runtime, "jane").email == "jane.new@example.net"
    actions = [e["action"] for e in audit_actions(runtime)]
    assert actions == [
        "email_change.assisted_requested",
        "email_change.approved",
        "email_change.confirmed",
    ]
    approved = audit_actions(runtime)[1]
    assert approved["actor"] == "second-agent"
    assert approved["detail"]["reason"] == "identity checked by video call"
    # Decided once.
    again = invoke(runner, "email-change", "deny", request_id, "--by", "x", "--reason", "late")
    assert "not awaiting review" in one_error_line(again)


def test_denial_sends_nothing_and_ends_the_request(
    runtime: Runtime, runner: FlaskCliRunner
) -> None:
    make_account(runtime, "jane", "jane@example.org")
    request_id = output(
        runner,
        "email-change",
        "request-assisted",
        "jane",
        "--new-email",
        "jane.new@example.net",
        "--ticket",
        "SUP-10",
    ).split()[0]
    output(runner, "email-change", "deny", request_id, "--by", "lead", "--reason", "no proof")
    assert requests_of(runtime)[0].state is ChangeState.DENIED
    assert change_notices(runtime) == []
    assert json_output(invoke(runner, "email-change", "queue", "--json")) == []
    assert audit_actions(runtime)[-1]["action"] == "email_change.denied"


def test_bad_input_is_one_line_and_changes_nothing(
    runtime: Runtime, runner: FlaskCliRunner
) -> None:
    make_account(runtime, "jane", "jane@example.org")
    make_account(runtime, "john", "john@example.org")
    cases = [
        ("request-assisted", "nobody", "--new-email", "a@example.net", "--ticket", "T1"),
        ("request-assisted", "jane", "--new-email", "not-an-address", "--ticket", "T1"),
        ("request-assisted", "jane", "--new-email", "JANE@example.org", "--ticket", "T1"),
        ("request-assisted", "jane", "--new-email", "john@example.org", "--ticket", "T1"),
        ("request-assisted", "jane", "--new-email", "a@example.net", "--ticket", "bad ticket"),
        ("approve", "no-such-request", "--by", "a", "--reason", "b"),
        ("clear-hold", "nobody", "--by", "a", "--reason", "b"),
        # --by lands in cleared_by and the audit row's actor (String(200)): PostgreSQL
        # refused 201 characters with a trace, SQLite stored them.
        ("clear-hold", "jane", "--by", "b" * 201, "--reason", "b"),
        ("clear-hold", "jane", "--by", "sam\nroot", "--reason", "b"),
    ]
    for args in cases:
        one_error_line(invoke(runner, "email-change", *args))
    assert requests_of(runtime) == []
    assert audit_actions(runtime) == []


def test_approval_writes_to_the_address_the_account_has_now(
    runtime: Runtime, runner: FlaskCliRunner, client: FlaskClient, auth: dict[str, str]
) -> None:
    make_account(runtime, "jane", "jane@example.org")
    request_id = output(
        runner,
        "email-change",
        "request-assisted",
        "jane",
        "--new-email",
        "jane.new@example.net",
        "--ticket",
        "SUP-11",
    ).split()[0]
    client.put("/v1/accounts/jane", json={"email": "jane.moved@example.org"}, headers=auth)
    output(runner, "email-change", "approve", request_id, "--by", "lead", "--reason", "ok")
    assert requests_of(runtime)[0].old_email == "jane.moved@example.org"


def test_the_filer_cannot_approve_under_another_spelling_of_the_name(
    runtime: Runtime, runner: FlaskCliRunner, client: FlaskClient, monkeypatch: Any
) -> None:
    """Four eyes compare persons: ``--by cli:NAME``, ``--by api:NAME`` or another case of
    the filer's name is the filer (CLI-filed: ``cli:<user>``; API-filed: ``api:<client>``)."""
    monkeypatch.setattr(getpass, "getuser", lambda: "agent-smith")
    make_account(runtime, "jane", "jane@example.org")
    by_cli = output(
        runner,
        "email-change",
        "request-assisted",
        "jane",
        "--new-email",
        "jane.new@example.net",
        "--ticket",
        "SUP-20",
    ).split()[0]
    for spelling in ("agent-smith", "cli:agent-smith", "CLI:Agent-Smith", " AGENT-SMITH "):
        error = one_error_line(
            invoke(runner, "email-change", "approve", by_cli, "--by", spelling, "--reason", "x")
        )
        assert "someone other" in error, spelling
    make_account(runtime, "john", "john@example.org")
    assist = bearer(make_api_key(runtime, Scope.EMAIL_CHANGE_ASSIST, name="desk-7"))
    body = {"new_email": "john.new@example.net", "ticket": "SUP-21"}
    by_api = client.post("/v1/accounts/john/email-change:assisted", json=body, headers=assist)
    assert by_api.status_code == 202
    request_id = by_api.get_json()["request_id"]
    for spelling in ("desk-7", "api:desk-7", "API:DESK-7"):
        error = one_error_line(
            invoke(runner, "email-change", "approve", request_id, "--by", spelling, "--reason", "x")
        )
        assert "someone other" in error, spelling
    assert {r.state for r in requests_of(runtime)} == {ChangeState.AWAITING_REVIEW}
    assert change_notices(runtime) == []
    output(runner, "email-change", "approve", by_cli, "--by", "lead", "--reason", "checked")
    assert ChangeState.AWAITING_CONFIRMATION in {r.state for r in requests_of(runtime)}


def test_a_second_assisted_request_is_refused_unless_the_first_is_cancelled(
    runtime: Runtime, runner: FlaskCliRunner, client: FlaskClient
) -> None:
    """At most one open request per account, and no agent's work is thrown away without
    being told: a second assisted request is refused on every face, naming the open
    request's ticket, until the operator explicitly cancels the first."""
    make_account(runtime, "jane", "jane@example.org")
    first = output(
        runner,
        "email-change",
        "request-assisted",
        "jane",
        "--new-email",
        "jane.new@example.net",
        "--ticket",
        "SUP-1",
    ).split()[0]
    again = ("--new-email", "jane.other@example.net", "--ticket", "SUP-2")
    error = one_error_line(invoke(runner, "email-change", "request-assisted", "jane", *again))
    assert "SUP-1" in error
    assert first in error
    assist = bearer(make_api_key(runtime, Scope.EMAIL_CHANGE_ASSIST))
    path = "/v1/accounts/jane/email-change:assisted"
    body: dict[str, Any] = {"new_email": "jane.other@example.net", "ticket": "SUP-2"}
    refused = client.post(path, json=body, headers=assist)
    problem = assert_problem(refused, 409)
    assert problem["code"] == "assisted_request_open"
    assert (problem["ticket"], problem["request_id"]) == ("SUP-1", first)
    assert "SUP-1" in problem["detail"]
    [request] = requests_of(runtime)
    assert (request.id, request.state) == (first, ChangeState.AWAITING_REVIEW)
    # Approved and waiting for the new mailbox: still open, still refused.
    output(runner, "email-change", "approve", first, "--by", "lead", "--reason", "ok")
    assert assert_problem(client.post(path, json=body, headers=assist), 409)["ticket"] == "SUP-1"
    # Cancelled explicitly: the first is closed as replaced (audited), the second filed.
    replaced = client.post(path, json={**body, "cancel_open_request": True}, headers=assist)
    assert replaced.status_code == 202, replaced.get_json()
    states = {r.id: r.state for r in requests_of(runtime)}
    assert states[first] is ChangeState.REPLACED
    assert states[replaced.get_json()["request_id"]] is ChangeState.AWAITING_REVIEW
    assert "email_change.replaced" in [e["action"] for e in audit_actions(runtime)]
    third = invoke(
        runner,
        "email-change",
        "request-assisted",
        "jane",
        "--new-email",
        "jane.third@example.net",
        "--ticket",
        "SUP-3",
        "--cancel-open-request",
    )
    assert third.exit_code == 0, third.output
    assert [r.ticket for r in requests_of(runtime) if r.state is ChangeState.AWAITING_REVIEW] == [
        "SUP-3"
    ]
