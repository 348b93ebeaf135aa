"""The poll endpoint (RFC 8936), the discovery documents, the signing keys and the
emitters called directly (as the email change and exposure ends will call them). On
SQLite and PostgreSQL."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
import schemathesis
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from joserfc import jwt
from joserfc.jwk import KeySet
from pydantic import SecretStr
from sqlalchemy import text, update

from jobs.context import use_runtime
from service.clients import Scope
from service.config import ConfigError, Settings, load_settings
from service.db import utcnow
from service.events import (
    LoweredBecause,
    record_identifier_changed,
    record_risk_lowered,
)
from service.events.keys import generate_jwk, load_event_keys, parse_jwk
from service.events.outbox import purge_settled
from service.events.types import EventType
from service.housekeeping import EVENT_RETENTION, run_housekeeping
from service.leaks.exposures import NewExposure, record_exposures
from service.leaks.lifecycle import end_exposure, expire_exposures
from service.leaks.passwords import hash_leaked_password
from service.models import Exposure, ExposureKind, ExposureState
from service.runtime import Runtime, build_runtime
from tests.support.cli import output
from tests.support.events import AUDIENCE, ISSUER, event_rows, payload, short
from tests.support.factories import expose, make_account, make_api_key, make_leak
from tests.support.http import assert_problem, bearer
from tests.support.processes import wait_for
from tests.support.receiver import verify_set

POLL = "/v1/events/poll"


@pytest.fixture
def poll_settings(runtime: Runtime) -> Settings:
    return runtime.settings.model_copy(
        update={
            "events_poll": True,
            "events_issuer": ISSUER,
            "events_audience": AUDIENCE,
            "events_revoke_sessions": True,
            "events_poll_wait_seconds": 0.0,
        }
    )


@pytest.fixture
def events_runtime(poll_settings: Settings) -> Iterator[Runtime]:
    value = build_runtime(poll_settings)
    use_runtime(value)
    yield value
    value.db.dispose()


@pytest.fixture
def poll_client(make_app: Callable[..., Flask], poll_settings: Settings) -> FlaskClient:
    return make_app(poll_settings).test_client()


def keys_of(client: FlaskClient) -> KeySet:
    return KeySet.import_key_set(client.get("/.well-known/jwks.json").get_json())


def poll(client: FlaskClient, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    response = client.post(POLL, json={"returnImmediately": True, **body}, headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    value: dict[str, Any] = response.get_json()
    return value


def change_addresses(rt: Runtime, count: int) -> None:
    for i in range(count):
        account_id = make_account(rt, f"user-{i}", f"user{i}@example.org")
        with rt.db.transaction() as session:
            record_identifier_changed(session, account_id, f"new{i}@example.org", now=utcnow())


def test_poll_acknowledges_reports_errors_and_returns_what_is_not_acknowledged(
    events_runtime: Runtime, poll_client: FlaskClient
) -> None:
    rt = events_runtime
    headers = bearer(make_api_key(rt, Scope.EVENTS_READ))
    change_addresses(rt, 2)  # identifier-changed and session-revoked each: four SETs
    first = poll(poll_client, headers, maxEvents=1)
    assert len(first["sets"]) == 1
    assert first["moreAvailable"] is True
    again = poll(poll_client, headers, maxEvents=1)
    assert list(again["sets"]) == list(first["sets"])  # not acknowledged: comes back
    (jti,) = first["sets"]
    claims = verify_set(first["sets"][jti], keys_of(poll_client), issuer=ISSUER, audience=AUDIENCE)
    assert short(next(iter(claims["events"]))) == "identifier-changed"
    assert payload(claims)["new-value"] == "new0@example.org"
    assert claims["sub_id"] == {"format": "opaque", "id": "user-0"}
    rest = poll(poll_client, headers, ack=[jti], maxEvents=10)
    assert len(rest["sets"]) == 3
    assert rest["moreAvailable"] is False
    refused, *fine = rest["sets"]
    last = poll(
        poll_client,
        headers,
        ack=fine,
        setErrs={refused: {"err": "invalid_request", "description": "no such user"}},
    )
    assert last == {"sets": {}, "moreAvailable": False}
    rows = event_rows(rt, "poll")
    assert [r.state for r in rows] == ["delivered", "dropped", "delivered", "delivered"]
    assert rows[1].last_error == "invalid_request: no such user"


def test_poll_with_max_events_zero_only_acknowledges(
    events_runtime: Runtime, poll_client: FlaskClient
) -> None:
    headers = bearer(make_api_key(events_runtime, Scope.EVENTS_READ))
    change_addresses(events_runtime, 1)
    assert poll(poll_client, headers, maxEvents=0) == {"sets": {}, "moreAvailable": True}


def test_a_long_poll_answers_at_once_when_sets_wait_and_empty_after_its_wait(
    events_runtime: Runtime, make_app: Callable[..., Flask], poll_settings: Settings
) -> None:
    client = make_app(poll_settings, events_poll_wait_seconds=0.3).test_client()
    headers = bearer(make_api_key(events_runtime, Scope.EVENTS_READ))
    response = client.post(POLL, json={"returnImmediately": False}, headers=headers)
    assert response.get_json() == {"sets": {}, "moreAvailable": False}
    change_addresses(events_runtime, 1)
    response = client.post(POLL, json={}, headers=headers)
    assert len(response.get_json()["sets"]) == 2


def test_poll_needs_its_scope_valid_fields_and_polling_on(
    events_runtime: Runtime,
    poll_client: FlaskClient,
    make_app: Callable[..., Flask],
    poll_settings: Settings,
) -> None:
    assert_problem(poll_client.post(POLL, json={}), 401)
    other = bearer(make_api_key(events_runtime, Scope.RISK_CHECK))
    assert_problem(poll_client.post(POLL, json={}, headers=other), 403)
    headers = bearer(make_api_key(events_runtime, Scope.EVENTS_READ))
    change_addresses(events_runtime, 1)
    for body in (
        {"maxEvents": -1},
        {"maxEvents": 1001},
        {"maxEvents": "3"},
        {"ack": "jti"},
        {"ack": ["not a jti!"]},
        {"setErrs": {"abc": {"description": "no err"}}},
        {"returnImmediately": "yes"},
        {"unknown": 1},
    ):
        assert_problem(poll_client.post(POLL, json=body, headers=headers), 422)
    assert {r.state for r in event_rows(events_runtime)} == {"pending"}  # nothing changed
    off = make_app(poll_settings, events_poll=False).test_client()
    assert_problem(off.post(POLL, json={}, headers=headers), 404, "not_found")


def test_discovery_names_the_issuer_keys_methods_and_events(
    runtime: Runtime, make_app: Callable[..., Flask], poll_settings: Settings
) -> None:
    client = make_app(poll_settings, events_push_url="https://login.example/events").test_client()
    config = client.get("/.well-known/ssf-configuration").get_json()
    assert config["issuer"] == ISSUER
    assert config["jwks_uri"] == ISSUER + "/.well-known/jwks.json"
    assert config["delivery_methods_supported"] == ["urn:ietf:rfc:8935", "urn:ietf:rfc:8936"]
    assert set(config["events_supported"]) == {event.value for event in EventType}
    assert config["poll_endpoint"] == ISSUER + POLL
    jwks = client.get("/.well-known/jwks.json").get_json()
    assert [key["kty"] for key in jwks["keys"]] == ["EC"]
    assert all("d" not in key for key in jwks["keys"])  # public parts only
    quiet = make_app(runtime.settings).test_client()  # no receiver: events are off
    assert_problem(quiet.get("/.well-known/ssf-configuration"), 404)
    assert_problem(quiet.get("/.well-known/jwks.json"), 404)
    paths = client.get("/openapi/openapi.json").get_json()["paths"]
    assert {"/.well-known/ssf-configuration", "/.well-known/jwks.json", POLL} <= set(paths)


def test_a_rotation_publishes_both_keys_and_signs_with_the_new_one(
    make_app: Callable[..., Flask], poll_settings: Settings
) -> None:
    old, new = generate_jwk(), generate_jwk()
    settings = poll_settings.model_copy(
        update={"events_signing_key": SecretStr(new), "events_previous_key": SecretStr(old)}
    )
    rt = build_runtime(settings)
    try:
        client = make_app(settings).test_client()
        keys = keys_of(client)
        old_kid = parse_jwk(old, "old", private=True).kid
        new_kid = parse_jwk(new, "new", private=True).kid
        assert [key["kid"] for key in client.get("/.well-known/jwks.json").get_json()["keys"]] == [
            new_kid,
            old_kid,
        ]
        change_addresses(rt, 1)
        body = poll(client, bearer(make_api_key(rt, Scope.EVENTS_READ)))
        token = next(iter(body["sets"].values()))
        assert jwt.decode(token, keys).header["kid"] == new_kid
        # A SET signed before the rotation still verifies.
        before = load_event_keys(settings.model_copy(update={"events_signing_key": SecretStr(old)}))
        signed = before.sign({"iss": ISSUER, "aud": AUDIENCE, "jti": "x", "iat": 1, "events": {}})
        assert jwt.decode(signed, keys).header["kid"] == old_kid
    finally:
        rt.db.dispose()


def test_the_development_key_is_generated_once_and_private(poll_settings: Settings) -> None:
    first = load_event_keys(poll_settings)
    second = load_event_keys(poll_settings)
    assert first.signing.kid == second.signing.kid
    path = poll_settings.instance_dir / "events_signing_key.jwk"
    assert path.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("not json", "not a usable JWK"),
        ('{"kty": "oct", "k": "c2VjcmV0"}', "must be an EC, RSA or OKP JWK"),
        ("PUBLIC", "must be a private key"),
    ],
)
def test_a_bad_signing_key_names_its_variable(
    poll_settings: Settings, value: str, message: str
) -> None:
    if value == "PUBLIC":
        private = json.loads(generate_jwk())
        value = json.dumps({k: v for k, v in private.items() if k != "d"})
    settings = poll_settings.model_copy(update={"events_signing_key": SecretStr(value)})
    with pytest.raises(ConfigError, match=f"LEAKGUARD_EVENTS_SIGNING_KEY: {message}"):
        load_event_keys(settings)


def test_production_with_events_needs_a_signing_key_and_an_https_issuer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in {
        "LEAKGUARD_ENV": "production",
        "LEAKGUARD_HASH_KEY": "h" * 32,
        "LEAKGUARD_SECRET_KEY": "s" * 32,
        "LEAKGUARD_DATABASE_URL": "sqlite:///x.sqlite3",
        "LEAKGUARD_EVENTS_POLL": "true",
    }.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match="LEAKGUARD_EVENTS_SIGNING_KEY is required"):
        load_settings()
    monkeypatch.setenv("LEAKGUARD_EVENTS_SIGNING_KEY", generate_jwk())
    with pytest.raises(ConfigError, match="LEAKGUARD_EVENTS_ISSUER must be"):
        load_settings()  # the development default, http://localhost:8000
    monkeypatch.setenv("LEAKGUARD_EVENTS_ISSUER", "https://leakguard.example.com/")
    settings = load_settings()
    assert settings.events_enabled
    assert settings.events_issuer == "https://leakguard.example.com"


def test_risk_lowered_after_exposures_end_is_said_once(events_runtime: Runtime) -> None:
    rt = events_runtime
    account_id = make_account(rt, "frank", "frank@example.org")
    expose(rt, account_id, slug="one")
    expose(rt, account_id, slug="two", password="pw")
    with rt.db.transaction() as session:
        session.execute(
            update(Exposure)
            .where(Exposure.account_id == account_id)
            .values(state=ExposureState.RESOLVED)
        )
        assert (
            record_risk_lowered(
                session, account_id, reason=LoweredBecause.ADDRESS_CHANGED, now=utcnow()
            )
            == 1
        )
        assert (
            record_risk_lowered(
                session, account_id, reason=LoweredBecause.ADDRESS_CHANGED, now=utcnow()
            )
            == 0
        )  # LOW already said
    changes = [
        payload(r.claims)
        for r in event_rows(rt, "poll")
        if short(r.event_type) == "risk-level-change"
    ]
    assert [(c["previous_level"], c["current_level"], c["risk_reason"]) for c in changes] == [
        ("LOW", "MEDIUM", "leak:one"),
        ("MEDIUM", "HIGH", "leak:two"),
        ("HIGH", "LOW", "address_changed"),
    ]


def test_identifier_changed_carries_the_new_address_and_nothing_else_does(
    events_runtime: Runtime,
) -> None:
    rt = events_runtime
    account_id = make_account(rt, "gina", "gina@example.org")
    expose(rt, account_id, password="pw")
    with rt.db.transaction() as session:
        record_identifier_changed(session, account_id, "gina.new@example.org", now=utcnow())
    rows = event_rows(rt, "poll")
    assert [short(r.event_type) for r in rows] == [
        "risk-level-change",
        "credential-compromise",
        "session-revoked",
        "identifier-changed",
        "session-revoked",
    ]
    for row in rows:
        text = json.dumps(row.claims)
        assert ("@" in text) == (short(row.event_type) == "identifier-changed")
    assert payload(rows[3].claims)["new-value"] == "gina.new@example.org"


def test_without_a_receiver_nothing_is_recorded(runtime: Runtime) -> None:
    account_id = make_account(runtime, "hal", "hal@example.org")
    expose(runtime, account_id, password="pw")
    with runtime.db.transaction() as session:
        assert record_identifier_changed(session, account_id, "h@example.org", now=utcnow()) == 0
    assert event_rows(runtime) == []


def test_two_leaks_flagging_one_account_at_once_end_on_its_true_level(
    events_runtime: Runtime,
) -> None:
    """The transaction that comes second waits for the first and sees what it committed:
    the last level said is HIGH, never a MEDIUM decided without the first's password."""
    rt = events_runtime
    account_id = make_account(rt, "ivan", "ivan@example.org")
    combo, newsletter = make_leak(rt, "combo"), make_leak(rt, "newsletter")
    errors: list[BaseException] = []

    def second() -> None:
        try:
            with rt.db.transaction() as session:
                record_exposures(session, newsletter, [NewExposure(account_id)], now=utcnow())
        except BaseException as exc:  # noqa: BLE001  (reported by the test)
            errors.append(exc)

    with rt.db.transaction() as session:
        record_exposures(
            session,
            combo,
            [NewExposure(account_id, ExposureKind.CREDENTIAL, hash_leaked_password("pw"))],
            now=utcnow(),
        )
        thread = threading.Thread(target=second)
        thread.start()
        if rt.db.is_postgres:
            wait_for(lambda: advisory_waiters(rt) > 0, timeout=30, what="the second to wait")
    thread.join()
    assert errors == []
    rows = event_rows(rt, "poll")
    levels = [payload(r.claims) for r in rows if short(r.event_type) == "risk-level-change"]
    assert [(c["current_level"], c["risk_reason"]) for c in levels] == [("HIGH", "leak:combo")]


def advisory_waiters(rt: Runtime) -> int:
    with rt.db.engine.connect() as connection:
        return int(
            connection.scalar(
                text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
            )
            or 0
        )


def test_housekeeping_keeps_what_the_login_service_was_last_told(
    events_runtime: Runtime, poll_client: FlaskClient
) -> None:
    rt = events_runtime
    account_id = make_account(rt, "jane", "jane@example.org")
    expose(rt, account_id, slug="one")
    expose(rt, account_id, slug="two", password="pw")
    headers = bearer(make_api_key(rt, Scope.EVENTS_READ))
    acked = list(poll(poll_client, headers)["sets"])
    poll(poll_client, headers, ack=acked)

    # Within the retention nothing goes; past it, all settled events but the last level.
    def housekeeping(now: datetime) -> int:
        return run_housekeeping(
            rt.db, exposure_ttl=timedelta(days=3650), throttle=rt.step_up.policy.throttle, now=now
        ).events_purged

    assert housekeeping(utcnow()) == 0
    later = utcnow() + EVENT_RETENTION + timedelta(seconds=1)
    assert housekeeping(later) == 4
    with rt.db.transaction() as session:
        assert purge_settled(session, before=later) == 0
    (kept,) = event_rows(rt)
    assert payload(kept.claims)["current_level"] == "HIGH"
    with rt.db.transaction() as session:
        session.execute(update(Exposure).values(state=ExposureState.DISMISSED))
        assert record_risk_lowered(session, account_id, reason="dismissed", now=utcnow()) == 1
    lowered = event_rows(rt)[-1]
    assert payload(lowered.claims)["previous_level"] == "HIGH"


def levels_said(rt: Runtime, external_id: str) -> list[tuple[str, str]]:
    return [
        (payload(r.claims)["current_level"], payload(r.claims)["risk_reason"])
        for r in event_rows(rt, "poll")
        if r.external_id == external_id and short(r.event_type) == "risk-level-change"
    ]


def test_every_end_of_the_last_exposure_says_low_with_its_cause(
    events_runtime: Runtime, make_app: Callable[..., Flask], poll_settings: Settings
) -> None:
    rt = events_runtime
    for name in ("kim", "lou", "max", "ned"):
        expose(rt, make_account(rt, name, f"{name}@example.org"), slug="dump")
    with rt.db.transaction() as session:
        end_exposure(
            session, "kim", "dump", action="resolve", reason="helped", actor="s", now=utcnow()
        )
        end_exposure(
            session, "lou", "dump", action="dismiss", reason="not them", actor="s", now=utcnow()
        )
        assert (
            expire_exposures(
                session, ttl=timedelta(0), now=utcnow() + timedelta(seconds=1), limit=1
            )
            == 1
        )
    # The login service moves ned to another address itself: no identifier-changed.
    client = make_app(poll_settings).test_client()
    response = client.put(
        "/v1/accounts/ned",
        json={"email": "ned.other@example.org"},
        headers=bearer(make_api_key(rt, Scope.ACCOUNTS_WRITE)),
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    assert levels_said(rt, "kim")[-1] == ("LOW", "support_resolved")
    assert levels_said(rt, "lou")[-1] == ("LOW", "dismissed")
    assert levels_said(rt, "max")[-1] == ("LOW", "expired")
    assert levels_said(rt, "ned")[-1] == ("LOW", "address_changed")
    kinds = {short(r.event_type) for r in event_rows(rt, "poll") if r.external_id == "ned"}
    assert "identifier-changed" not in kinds


def test_keygen_prints_a_usable_private_key_on_one_line(runner: Any) -> None:
    printed = output(runner, "events", "keygen")
    assert printed.count("\n") == 1
    assert " " not in printed.strip()
    key = parse_jwk(printed, "keygen", private=True)
    assert key.kid


def test_the_event_operations_conform_to_the_openapi_document_with_events_on(
    make_app: Callable[..., Flask], poll_settings: Settings, events_runtime: Runtime
) -> None:
    """schemathesis, as tests/integration/test_api_fuzz.py, on a deployment that polls."""
    app = make_app(poll_settings, rate_limit_auth_failures="100000/minute")
    change_addresses(events_runtime, 3)  # SETs to poll, acknowledge and report
    headers = bearer(make_api_key(events_runtime, Scope.EVENTS_READ))
    schema = schemathesis.openapi.from_wsgi("/openapi/openapi.json", app)
    operations = [
        result.ok()
        for result in schema.get_all_operations()
        if "events" in result.ok().path or "well-known" in result.ok().path
    ]
    assert len(operations) == 3
    for operation in operations:

        @given(case=operation.as_strategy())
        @hypothesis_settings(
            max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        def exercise(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=headers)

        exercise()
