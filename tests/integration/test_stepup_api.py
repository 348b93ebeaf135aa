"""The risk check and step-up over HTTP, on SQLite and PostgreSQL: decisions, concurrency,
rate limits on the real Redis, no account enumeration, audit rows, problem+json."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyotp
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event, select
from werkzeug.test import TestResponse

from service.clients import Scope
from service.db import utcnow
from service.models import AuditEvent, Notice, NoticeKind, StepUpChallenge
from service.risk import Reason
from service.runtime import Runtime
from service.stepup.support import force_step_up
from tests.support.factories import expose, make_account, make_api_key
from tests.support.http import assert_problem, bearer

LEAKED_PASSWORD = "hunter2-from-the-leak"


def post(client: FlaskClient, auth: dict[str, str], path: str, body: Any) -> TestResponse:
    return client.post(path, json=body, headers=auth)


def risk(client: FlaskClient, auth: dict[str, str], **body: Any) -> TestResponse:
    return post(client, auth, "/v1/risk/check", body)


def enroll(client: FlaskClient, auth: dict[str, str], external_id: str) -> pyotp.TOTP:
    response = client.post(f"/v1/accounts/{external_id}/totp", headers=auth)
    assert response.status_code == 201, response.get_data(as_text=True)
    body = response.get_json()
    assert body["qr_png"].startswith("data:image/png;base64,")
    assert body["qr_svg"].startswith("<svg")
    totp = pyotp.TOTP(body["secret"])
    confirmed = post(client, auth, f"/v1/accounts/{external_id}/totp/confirm", {"code": totp.now()})
    assert confirmed.status_code == 200, confirmed.get_data(as_text=True)
    return totp


def email_challenge(client: FlaskClient, auth: dict[str, str], external_id: str) -> str:
    response = post(
        client, auth, "/v1/step-up/challenges", {"account_id": external_id, "method": "email_code"}
    )
    assert response.status_code == 202, response.get_data(as_text=True)
    return str(response.get_json()["challenge_id"])


def verify(
    client: FlaskClient,
    auth: dict[str, str],
    external_id: str,
    method: str,
    code: str,
    **extra: Any,
) -> TestResponse:
    body = {"account_id": external_id, "method": method, "code": code, **extra}
    return post(client, auth, "/v1/step-up/verify", body)


# --- the risk check -----------------------------------------------------------------------


def test_unknown_account_is_allowed_with_its_reason(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    response = risk(client, auth, account_id="nobody")
    assert response.status_code == 200
    assert response.get_json() == {
        "decision": "allow",
        "reasons": ["unknown_account"],
        "methods": [],
        "retry_after": None,
        "exposures": [],
    }


def test_account_in_no_leak_is_allowed_with_one_read_and_no_write(
    runtime: Runtime, app: Flask, client: FlaskClient, auth: dict[str, str]
) -> None:
    make_account(runtime, "clean")
    statements: list[str] = []
    engine = app.extensions["leakguard"].db.engine

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement.split()[0].upper())

    risk(client, auth, account_id="clean")  # warm the pool: connection setup is not the path
    event.listen(engine, "before_cursor_execute", record)
    try:
        response = risk(client, auth, account_id="clean", password="whatever")
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert response.get_json()["decision"] == "allow"
    assert response.get_json()["reasons"] == []
    # One read of the account with its open exposures; the key was read by the warm-up
    # request and is remembered for AUTH_CACHE_TTL (service/api_clients.py).
    assert statements == ["SELECT"]


def test_exposed_account_must_step_up_with_the_methods_it_has(
    runtime: Runtime, client: FlaskClient, auth: dict[str, str]
) -> None:
    account_id = make_account(runtime, "exposed")
    expose(runtime, account_id)
    body = risk(client, auth, account_id="exposed").get_json()
    assert body["decision"] == "step_up"
    assert body["reasons"] == ["email_exposed"]
    assert body["methods"] == ["email_code"]
    assert [(e["leak"], e["kind"]) for e in body["exposures"]] == [("exchange-2019", "email")]
    assert body["exposures"][0]["since"]
    # Factors the person had before the leak are offered too.
    equipped = make_account(runtime, "equipped")
    totp = enroll(client, auth, "equipped")
    # codes beside an authenticator: with a step-up by it (the confirmation used this step)
    passed = verify(client, auth, "equipped", "totp", totp.at(time.time() + 30))
    token = passed.get_json()["assurance_token"]
    codes = client.post(
        "/v1/accounts/equipped/recovery-codes", headers=auth | {"Assurance-Token": token}
    )
    assert codes.status_code == 201
    expose(runtime, equipped)
    body = risk(client, auth, account_id="equipped").get_json()
    assert body["methods"] == ["totp", "email_code", "recovery_code"]


def test_leaked_password_is_denied_and_another_password_steps_up(
    runtime: Runtime, client: FlaskClient, auth: dict[str, str]
) -> None:
    account_id = make_account(runtime, "combo")
    enroll(client, auth, "combo")  # from before the leak
    expose(runtime, account_id, slug="combo-list", password=LEAKED_PASSWORD)
    denied = risk(client, auth, account_id="combo", password=LEAKED_PASSWORD).get_json()
    assert (denied["decision"], denied["reasons"]) == ("deny", ["leaked_password"])
    other = risk(client, auth, account_id="combo", password="a-new-password").get_json()
    assert (other["decision"], other["reasons"]) == (
        "step_up",
        ["email_exposed", "credential_exposed"],
    )
    # the mailbox's password may be the leaked one: no emailed code
    assert other["methods"] == ["totp"]
    assert other["exposures"][0]["kind"] == "credential"
    no_password = risk(client, auth, account_id="combo").get_json()
    assert no_password["decision"] == "step_up"


def test_passed_step_up_allows_and_bad_tokens_are_400(
    runtime: Runtime, client: FlaskClient, auth: dict[str, str]
) -> None:
    for external_id in ("stepper", "neighbour"):
        expose(runtime, make_account(runtime, external_id))
    challenge = email_challenge(client, auth, "stepper")
    code = runtime.step_up.email_code(challenge)
    passed = verify(client, auth, "stepper", "email_code", code, challenge_id=challenge)
    assert passed.status_code == 200, passed.get_data(as_text=True)
    token = passed.get_json()["assurance_token"]
    assert passed.get_json()["method"] == "email_code"
    allowed = risk(client, auth, account_id="stepper", assurance_token=token).get_json()
    assert (allowed["decision"], allowed["reasons"]) == ("allow", ["step_up_passed"])
    other = risk(client, auth, account_id="neighbour", assurance_token=token)
    assert_problem(other, 400, "assurance_token_invalid")
    # the second-to-last character: all of its bits are signature (the last one's are not)
    tampered = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    assert_problem(
        risk(client, auth, account_id="stepper", assurance_token=tampered),
        400,
        "assurance_token_invalid",
    )


def test_a_support_hold_steps_up_over_http_until_the_person_passes_one(
    runtime: Runtime, client: FlaskClient, auth: dict[str, str]
) -> None:
    """Support's forced step-up is seen by the very next risk check of the login service,
    for an account no leak names, and the step-up it then passes ends it."""
    make_account(runtime, "held")
    assert risk(client, auth, account_id="held").get_json()["decision"] == "allow"
    with runtime.db.transaction() as session:
        force_step_up(session, "held", actor="cli:sam", now=utcnow(), reason="SUP-3")
    held = risk(client, auth, account_id="held").get_json()
    assert (held["decision"], held["reasons"], held["methods"]) == (
        "step_up",
        ["support_hold"],
        ["email_code"],
    )
    challenge = email_challenge(client, auth, "held")
    code = runtime.step_up.email_code(challenge)
    passed = verify(client, auth, "held", "email_code", code, challenge_id=challenge)
    assert passed.status_code == 200, passed.get_data(as_text=True)
    after = risk(client, auth, account_id="held").get_json()
    assert (after["decision"], after["reasons"]) == ("allow", [])


def test_a_locked_method_is_refused_until_the_lock_ends_and_the_others_stay_open(
    runtime: Runtime, client: FlaskClient, auth: dict[str, str]
) -> None:
    expose(runtime, make_account(runtime, "victim"))
    for attempt in range(10):
        response = verify(client, auth, "victim", "recovery_code", "AAAA-BBBB-CCCC-DDDD-EEEE")
        assert_problem(response, 403, "locked" if attempt == 9 else "verification_failed")
    locked = verify(client, auth, "victim", "recovery_code", "AAAA-BBBB-CCCC-DDDD-EEEE")
    body = assert_problem(locked, 403, "locked")
    assert 14 * 60 < int(locked.headers["Retry-After"]) <= 15 * 60
    assert "until" in body["detail"]
    # another method is evaluated as ever, and the sign-in still steps up
    assert_problem(verify(client, auth, "victim", "totp", "123456"), 403, "verification_failed")
    decision = risk(client, auth, account_id="victim").get_json()
    assert (decision["decision"], decision["methods"]) == ("step_up", ["email_code"])


def test_non_allow_decisions_and_step_up_attempts_are_audited_with_masked_addresses(
    runtime: Runtime, client: FlaskClient, auth: dict[str, str]
) -> None:
    expose(runtime, make_account(runtime, "audited", "jane.audited@example.org"))
    make_account(runtime, "quiet")
    risk(client, auth, account_id="quiet")
    risk(client, auth, account_id="audited", context={"ip": "203.0.113.7", "user_agent": "UA/1"})
    verify(client, auth, "audited", "totp", "000000")
    with runtime.db.read_session() as session:
        events = session.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()
    rows = [(e.action, e.target) for e in events if e.target != "account:quiet"]
    assert ("risk.step_up", "account:audited") in rows
    assert ("step_up.failed", "account:audited") in rows
    assert not [e for e in events if e.target == "account:quiet"]
    for audit in events:
        text = repr(audit.detail)
        assert "jane.audited@example.org" not in text
    step_up = next(e for e in events if e.action == "risk.step_up")
    assert step_up.detail is not None
    assert step_up.detail["email"] == "j***@example.org"
    assert step_up.detail["ip"] == "203.0.113.7"
    assert step_up.actor.startswith("api:")


# --- step-up over HTTP --------------------------------------------------------------------


def test_totp_replay_over_http_is_refused(
    runtime: Runtime, client: FlaskClient, auth: dict[str, str]
) -> None:
    make_account(runtime, "totp-user")
    totp = enroll(client, auth, "totp-user")
    # The confirmation used the current step; the next step's code works once.
    code = totp.at(time.time() + 30)
    assert verify(client, auth, "totp-user", "totp", code).status_code == 200
    assert_problem(verify(client, auth, "totp-user", "totp", code), 403, "verification_failed")


def test_an_emailed_code_replayed_after_it_passed_is_refused_and_not_counted(
    runtime: Runtime, client: FlaskClient, auth: dict[str, str]
) -> None:
    expose(runtime, make_account(runtime, "twice"))
    challenge = email_challenge(client, auth, "twice")
    code = runtime.step_up.email_code(challenge)
    passed = verify(client, auth, "twice", "email_code", code, challenge_id=challenge)
    assert passed.status_code == 200, passed.get_data(as_text=True)
    token = passed.get_json()["assurance_token"]
    for _ in range(12):  # more than the 10 failures that lock a method
        replay = verify(client, auth, "twice", "email_code", code, challenge_id=challenge)
        # a wrong code's answer: a replay tells nobody anything more
        assert_problem(replay, 403, "verification_failed")
    # the token the pass earned still speaks for the account: nothing locked
    allowed = risk(client, auth, account_id="twice", assurance_token=token).get_json()
    assert (allowed["decision"], allowed["reasons"]) == ("allow", ["step_up_passed"])
    # a wrong code for the passed challenge is still a guess, counted as one
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    assert_problem(
        verify(client, auth, "twice", "email_code", wrong, challenge_id=challenge),
        403,
        "verification_failed",
    )
    with runtime.db.read_session() as session:
        actions = session.scalars(
            select(AuditEvent.action).where(AuditEvent.target == "account:twice")
        ).all()
    assert actions.count("step_up.replayed") == 12
    assert actions.count("step_up.failed") == 1


def test_a_used_recovery_code_replayed_is_refused_and_not_counted(
    runtime: Runtime, client: FlaskClient, auth: dict[str, str]
) -> None:
    make_account(runtime, "codes")
    issued = client.post("/v1/accounts/codes/recovery-codes", headers=auth)
    assert issued.status_code == 201, issued.get_data(as_text=True)
    first, second = issued.get_json()["codes"][:2]
    assert verify(client, auth, "codes", "recovery_code", first).status_code == 200
    for _ in range(11):
        assert_problem(
            verify(client, auth, "codes", "recovery_code", first), 403, "verification_failed"
        )  # eleven: counted, they would have locked the method
    assert verify(client, auth, "codes", "recovery_code", second).status_code == 200


def test_the_confirming_totp_code_sent_twice_is_a_replay(
    runtime: Runtime, client: FlaskClient, auth: dict[str, str]
) -> None:
    make_account(runtime, "confirm-twice")
    started = client.post("/v1/accounts/confirm-twice/totp", headers=auth)
    totp = pyotp.TOTP(started.get_json()["secret"])
    code = totp.now()
    path = "/v1/accounts/confirm-twice/totp/confirm"
    assert post(client, auth, path, {"code": code}).status_code == 200
    assert_problem(post(client, auth, path, {"code": code}), 403, "verification_failed")


def test_email_challenge_and_verify_answer_the_same_for_unknown_accounts(
    runtime: Runtime, client: FlaskClient, auth: dict[str, str]
) -> None:
    make_account(runtime, "real")
    answers = {}
    for external_id in ("real", "imaginary"):
        response = post(
            client,
            auth,
            "/v1/step-up/challenges",
            {"account_id": external_id, "method": "email_code"},
        )
        assert response.status_code == 202
        answers[external_id] = response.get_json()
    assert answers["real"].keys() == answers["imaginary"].keys()
    assert answers["real"]["method"] == answers["imaginary"]["method"]
    wrong = {
        external_id: verify(
            client, auth, external_id, "email_code", "123456", challenge_id=answer["challenge_id"]
        )
        for external_id, answer in answers.items()
    }
    assert wrong["real"].status_code == wrong["imaginary"].status_code == 403
    assert wrong["real"].get_json() == wrong["imaginary"].get_json()


def test_bad_step_up_requests_are_problems(client: FlaskClient, auth: dict[str, str]) -> None:
    cases: list[tuple[dict[str, Any], int]] = [
        ({"account_id": "a", "method": "sms", "code": "1"}, 422),
        ({"account_id": "a", "method": "totp"}, 422),
        ({"account_id": "a", "method": "totp", "code": 123456}, 422),
        ({"account_id": "a", "method": "email_code", "code": "1", "challenge_id": "x"}, 422),
        ({"account_id": "", "method": "totp", "code": "1"}, 422),
    ]
    for body, status in cases:
        assert_problem(post(client, auth, "/v1/step-up/verify", body), status)
    assert_problem(post(client, auth, "/v1/risk/check", {"account_id": 5}), 422)
    assert_problem(
        post(client, auth, "/v1/risk/check", {"account_id": "a", "context": {"ip": "999.1.1.1"}}),
        422,
    )
    assert_problem(client.post("/v1/accounts/nobody/totp", headers=auth), 404)
    assert_problem(client.post("/v1/accounts/nobody/recovery-codes", headers=auth), 404)


def test_scopes_separate_risk_checks_from_step_up(runtime: Runtime, client: FlaskClient) -> None:
    risk_only = bearer(make_api_key(runtime, Scope.RISK_CHECK))
    assert risk(client, risk_only, account_id="x").status_code == 200
    assert_problem(verify(client, risk_only, "x", "totp", "123456"), 403, "forbidden")
    verify_only = bearer(make_api_key(runtime, Scope.STEP_UP_VERIFY))
    assert_problem(client.post("/v1/accounts/x/totp", headers=verify_only), 403, "forbidden")


# --- concurrency --------------------------------------------------------------------------


def in_parallel(count: int, call: Callable[[], TestResponse]) -> list[TestResponse]:
    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(lambda _: call(), range(count)))


def test_twenty_parallel_posts_of_one_totp_code_pass_once(
    runtime: Runtime, app: Flask, auth: dict[str, str]
) -> None:
    make_account(runtime, "race")
    totp = enroll(app.test_client(), auth, "race")
    code = totp.at(time.time() + 30)
    responses = in_parallel(20, lambda: verify(app.test_client(), auth, "race", "totp", code))
    assert Counter(r.status_code for r in responses) == {200: 1, 403: 19}


def test_double_submits_of_a_right_totp_code_with_typos_lock_nothing(
    runtime: Runtime, app: Flask, auth: dict[str, str]
) -> None:
    make_account(runtime, "double")
    totp = enroll(app.test_client(), auth, "double")
    right = totp.at(time.time() + 30)
    typos = [f"{(int(right) + n) % 1_000_000:06d}" for n in (1, 2, 3)]
    codes = [right] * 14 + typos  # 7 double submits of the right code, 3 typos
    with ThreadPoolExecutor(max_workers=len(codes)) as pool:
        responses = list(
            pool.map(lambda code: verify(app.test_client(), auth, "double", "totp", code), codes)
        )
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: 1, 403: 16}, statuses
    assert not [
        r
        for r in responses
        if r.status_code == 403 and r.get_json()["code"] != ("verification_failed")
    ]
    # 4 failures, not 17: the method is open (the replays counted, it would be locked)
    typo = f"{(int(right) + 4) % 1_000_000:06d}"
    after = verify(app.test_client(), auth, "double", "totp", typo)
    assert_problem(after, 403, "verification_failed")


def test_parallel_replays_of_a_passed_emailed_code_lock_nothing(
    runtime: Runtime, app: Flask, auth: dict[str, str]
) -> None:
    make_account(runtime, "burst")
    challenge = email_challenge(app.test_client(), auth, "burst")
    code = runtime.step_up.email_code(challenge)
    responses = in_parallel(
        15,
        lambda: verify(
            app.test_client(), auth, "burst", "email_code", code, challenge_id=challenge
        ),
    )
    assert Counter(r.status_code for r in responses) == {200: 1, 403: 14}
    decision = risk(app.test_client(), auth, account_id="burst").get_json()
    assert "locked" not in decision["reasons"]


def test_fifty_parallel_wrong_codes_evaluate_at_most_five(
    runtime: Runtime, app: Flask, auth: dict[str, str]
) -> None:
    make_account(runtime, "storm")
    challenge = email_challenge(app.test_client(), auth, "storm")
    right = runtime.step_up.email_code(challenge)
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"
    responses = in_parallel(
        50,
        lambda: verify(
            app.test_client(), auth, "storm", "email_code", wrong, challenge_id=challenge
        ),
    )
    assert all(r.status_code == 403 for r in responses)
    with runtime.db.read_session() as session:
        row = session.get(StepUpChallenge, challenge)
        assert row is not None
        assert row.attempts == 5
    # Ten failures locked the account; the other forty were refused unevaluated.
    codes = Counter(r.get_json()["code"] for r in responses)
    assert codes == {"verification_failed": 9, "locked": 41}


def test_two_parallel_uses_of_one_recovery_code_pass_once(
    runtime: Runtime, app: Flask, auth: dict[str, str]
) -> None:
    make_account(runtime, "twice")
    codes = app.test_client().post("/v1/accounts/twice/recovery-codes", headers=auth)
    code = codes.get_json()["codes"][0]
    responses = in_parallel(
        2, lambda: verify(app.test_client(), auth, "twice", "recovery_code", code)
    )
    assert sorted(r.status_code for r in responses) == [200, 403]


# --- rate limits ------------------------------------------------------------------------


@pytest.fixture
def limited_app(make_app: Callable[..., Flask], redis_url: str) -> Flask:
    """The app with small limits, counted in the real Redis."""
    return make_app(
        redis_url=redis_url,
        rate_limit_step_up="3/minute",
        rate_limit_risk="4/minute",
        rate_limit_email_code="2/minute",
    )


@pytest.mark.redis
def test_over_the_limit_is_429_with_retry_after(limited_app: Flask, auth: dict[str, str]) -> None:
    client = limited_app.test_client()
    statuses = [verify(client, auth, "x", "totp", "123456").status_code for _ in range(4)]
    assert statuses == [403, 403, 403, 429]
    limited = verify(client, auth, "x", "totp", "123456")
    assert_problem(limited, 429)
    assert 0 < int(limited.headers["Retry-After"]) <= 60
    assert [risk(client, auth, account_id="x").status_code for _ in range(5)][-1] == 429


def test_emailed_codes_are_limited_per_account_and_the_risk_check_says_so(
    runtime: Runtime, limited_app: Flask, auth: dict[str, str]
) -> None:
    """Against mail bombing, at most LEAKGUARD_RATE_LIMIT_EMAIL_CODE codes per account.
    The budget is the throttle's, not a 429: the risk check leaves the emailed code out and
    says when it opens, rather than offering a method that would send nothing."""
    expose(runtime, make_account(runtime, "mailbomb"))
    make_account(runtime, "neighbour")
    client = limited_app.test_client()
    statuses = [
        post(
            client,
            auth,
            "/v1/step-up/challenges",
            {"account_id": "mailbomb", "method": "email_code"},
        ).status_code
        for _ in range(3)
    ]
    assert statuses == [202, 202, 202]  # the same answer: nothing tells the budget apart
    with runtime.db.read_session() as session:
        sent = session.scalars(
            select(Notice.id).where(Notice.kind == NoticeKind.STEP_UP_CODE)
        ).all()
    assert len(sent) == 2
    decision = risk(client, auth, account_id="mailbomb").get_json()
    assert (decision["decision"], decision["reasons"]) == ("deny", ["locked"])
    assert 0 < decision["retry_after"] <= 60
    # support resets it
    with runtime.db.transaction() as session:
        runtime.step_up.unlock(session, "mailbomb", actor="test", now=utcnow())
    assert risk(client, auth, account_id="mailbomb").get_json()["methods"] == ["email_code"]


def test_verification_fails_closed_when_the_limit_store_is_down(
    make_app: Callable[..., Flask], auth: dict[str, str]
) -> None:
    client = make_app(redis_url="redis://127.0.0.1:1/0").test_client()
    response = verify(client, auth, "x", "totp", "123456")
    assert_problem(response, 503, "service_unavailable")
    assert response.headers["Retry-After"]
    assert_problem(risk(client, auth, account_id="x"), 503, "service_unavailable")


def test_openapi_document_lists_the_reason_codes_and_methods(client: FlaskClient) -> None:
    document = client.get("/openapi/openapi.json").get_json()
    schemas = document["components"]["schemas"]
    out = schemas["RiskCheckOut"]["properties"]
    reasons = schemas[out["reasons"]["items"]["$ref"].rsplit("/", 1)[-1]]
    assert reasons["enum"] == [reason.value for reason in Reason]
    for reason in Reason:
        assert f"`{reason.value}`" in out["reasons"]["description"]
    decisions = schemas[out["decision"]["$ref"].rsplit("/", 1)[-1]]
    assert decisions["enum"] == ["allow", "step_up", "deny"]
    assert "/v1/risk/check" in document["paths"]
    assert "/v1/step-up/verify" in document["paths"]


UUID_SPELLINGS = {
    "upper case": str.upper,  # SQL Server's uniqueidentifier, Windows GUIDs
    "braces": lambda text: "{" + text + "}",  # .NET Guid.ToString("B")
    "URN": lambda text: "urn:uuid:" + text,  # RFC 9562 section 4
    "no hyphens": lambda text: text.replace("-", ""),  # .NET Guid.ToString("N")
}


@pytest.mark.parametrize("spelling", sorted(UUID_SPELLINGS))
def test_a_challenge_id_is_the_same_uuid_however_the_client_spells_it(
    runtime: Runtime, client: FlaskClient, auth: dict[str, str], spelling: str
) -> None:
    # A login service keeping the challenge id in a uniqueidentifier column gets it back in
    # upper case: it was a 422, so no emailed code could ever pass (RFC 9562: UUIDs are
    # case-insensitive on input).
    expose(runtime, make_account(runtime, "uuid-case"))
    challenge = email_challenge(client, auth, "uuid-case")
    code = runtime.step_up.email_code(challenge)
    spelled = UUID_SPELLINGS[spelling](challenge)
    passed = verify(client, auth, "uuid-case", "email_code", code, challenge_id=spelled)
    assert passed.status_code == 200, passed.get_data(as_text=True)


@pytest.mark.parametrize(
    "challenge_id",
    ["x", "0" * 31, "g" * 32, "12345678-1234-1234-1234-1234567890ab-", "\u0661" * 32],
)
def test_a_challenge_id_that_is_no_uuid_is_422(
    client: FlaskClient, auth: dict[str, str], challenge_id: str
) -> None:
    body = {"account_id": "a", "method": "email_code", "code": "1", "challenge_id": challenge_id}
    problem = assert_problem(post(client, auth, "/v1/step-up/verify", body), 422)
    assert [error["loc"] for error in problem["errors"]] == [["challenge_id"]]


# An in-app browser's user agent (Facebook's, inside Instagram's) runs past 500 characters.
LONG_USER_AGENT = (
    "Mozilla/5.0 (Linux; Android 13; SM-S918B Build/TP1A.220624.014; wv) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Version/4.0 Chrome/119.0.6045.163 Mobile Safari/537.36 [FB_IAB/FB4A;"
    "FBAV/442.0.0.33.113;FBBV/535219346;FBDM/{density=3.0,width=1080,height=2340};FBLC/en_US;"
    "FBRV/0;FBCR/Verizon;FBMF/samsung;FBBD/samsung;FBPN/com.facebook.katana;FBDV/SM-S918B;"
    "FBSV/13;FBOP/1;FBCA/arm64-v8a:;] Instagram 309.0.0.40.113 Android (33/13; 420dpi; "
    "1080x2340; samsung; SM-S918B; dm3q; qcom; en_US; 536988434; IABMV/1; com.instagram.android)"
) + " Extension/1.0" * 10


def test_a_long_user_agent_is_kept_cut_short_not_refused(
    runtime: Runtime, client: FlaskClient, auth: dict[str, str]
) -> None:
    # The risk check runs on every sign-in with the browser's user agent as it came: one
    # over 500 characters was a 422, a sign-in the login service could not decide.
    assert len(LONG_USER_AGENT) > 500
    expose(runtime, make_account(runtime, "long-ua"))
    context = {"ip": "203.0.113.7", "user_agent": LONG_USER_AGENT}
    answer = risk(client, auth, account_id="long-ua", context=context)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.get_json()["decision"] == "step_up"
    with runtime.db.read_session() as session:
        audit = session.scalars(select(AuditEvent).where(AuditEvent.action == "risk.step_up")).one()
    assert audit.detail is not None
    assert audit.detail["user_agent"] == LONG_USER_AGENT[:500]
    # Past any header a server takes (8 KiB), it is no user agent: refused.
    context = {"user_agent": "x" * 8193}
    assert_problem(risk(client, auth, account_id="long-ua", context=context), 422)


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("203.0.113.7, 10.0.0.1, 10.0.0.2", "203.0.113.7"),  # X-Forwarded-For: the client first
        (" 203.0.113.7 ,10.0.0.1", "203.0.113.7"),
        ("203.0.113.7:51234", "203.0.113.7"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("[2001:DB8::1]", "2001:db8::1"),
        ('for="[2001:db8:cafe::17]:4711"', "2001:db8:cafe::17"),  # RFC 7239 section 4
        ("for=192.0.2.60;proto=http;by=203.0.113.43", "192.0.2.60"),
        ("unknown", None),  # RFC 7239 section 6: a proxy that will not tell
        ("unknown, 10.0.0.1", None),
        ('for="_hidden"', None),
    ],
)
def test_the_client_address_is_taken_as_proxies_hand_it_over(
    runtime: Runtime, client: FlaskClient, auth: dict[str, str], sent: str, kept: str | None
) -> None:
    # Before: any of these but the first was a 422 on the sign-in's risk check, which then
    # had no decision; the address is only kept in the audit row.
    expose(runtime, make_account(runtime, "proxied"))
    answer = risk(client, auth, account_id="proxied", context={"ip": sent})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.get_json()["decision"] == "step_up"
    with runtime.db.read_session() as session:
        audit = session.scalars(select(AuditEvent).where(AuditEvent.action == "risk.step_up")).one()
    assert audit.detail is not None
    assert audit.detail.get("ip") == kept


def test_a_typed_password_past_the_kept_length_is_compared_by_its_start(
    runtime: Runtime, client: FlaskClient, auth: dict[str, str]
) -> None:
    # Before: a password over 1,024 characters was a 422, a sign-in left undecided.
    typed = "p" * 1024 + "q" * 976
    account = make_account(runtime, "long-pw")
    expose(runtime, account, password=typed)
    answer = risk(client, auth, account_id="long-pw", password=typed)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.get_json()["reasons"] == ["leaked_password"]
    # Another long password is not the leaked one (this account has no step-up method).
    other = risk(client, auth, account_id="long-pw", password="p" * 1023 + "q" * 977)
    assert other.get_json()["reasons"] == ["no_usable_method"], other.get_json()
    assert_problem(risk(client, auth, account_id="long-pw", password="p" * 65537), 422)
