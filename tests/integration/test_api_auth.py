"""Bearer keys and scopes on /v1, routing errors, the OpenAPI document and health checks."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update

from service.api.auth import PRINCIPALS
from service.app import create_app
from service.clients import (
    AUTH_CACHE_TTL,
    PrincipalCache,
    Scope,
    hash_api_key,
    revoke_api_client,
)
from service.config import Settings
from service.db import utcnow
from service.models import ApiClient
from service.runtime import Runtime
from tests.support.factories import make_api_key
from tests.support.http import PROBLEM, assert_problem, bearer
from tests.support.settings import make_settings

ACCOUNT = {"email": "jane@example.org"}


# --- authentication -------------------------------------------------------------------


def test_request_without_authorization_is_401_with_www_authenticate(
    client: FlaskClient,
) -> None:
    for response in (
        client.get("/v1/accounts/u-1"),
        client.put("/v1/accounts/u-1", json=ACCOUNT),
        client.delete("/v1/accounts/u-1"),
        client.post("/v1/accounts:batch", json={"accounts": []}),
    ):
        assert_problem(response, 401, "unauthorized")
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_unknown_bearer_key_is_401(client: FlaskClient, api_key: str) -> None:
    for header in ("Bearer wrong", f"Bearer {api_key}x", "Bearer ", "Bearer"):
        response = client.get("/v1/accounts/u-1", headers={"Authorization": header})
        assert_problem(response, 401, "unauthorized")
        assert "WWW-Authenticate" in response.headers


def test_basic_authorization_is_401_even_with_a_valid_key(
    client: FlaskClient, api_key: str
) -> None:
    basic = base64.b64encode(f"user:{api_key}".encode()).decode()
    for header in (f"Basic {basic}", f"Basic {api_key}", api_key):
        response = client.get("/v1/accounts/u-1", headers={"Authorization": header})
        assert_problem(response, 401, "unauthorized")


def test_valid_key_is_accepted_whatever_the_scheme_case(client: FlaskClient, api_key: str) -> None:
    response = client.get("/v1/accounts/u-1", headers={"Authorization": f"bearer {api_key}"})
    assert_problem(response, 404, "not_found")


def test_key_without_the_endpoints_scope_is_403(client: FlaskClient, runtime: Runtime) -> None:
    reader = bearer(make_api_key(runtime, Scope.ACCOUNTS_READ))
    assert_problem(client.put("/v1/accounts/u-1", json=ACCOUNT, headers=reader), 403, "forbidden")
    assert_problem(client.delete("/v1/accounts/u-1", headers=reader), 403, "forbidden")
    assert_problem(
        client.post("/v1/accounts:batch", json={"accounts": [ACCOUNT]}, headers=reader),
        403,
        "forbidden",
    )
    assert_problem(client.get("/v1/accounts/u-1", headers=reader), 404, "not_found")

    writer = bearer(make_api_key(runtime, Scope.ACCOUNTS_WRITE))
    assert client.put("/v1/accounts/u-1", json=ACCOUNT, headers=writer).status_code == 201
    assert_problem(client.get("/v1/accounts/u-1", headers=writer), 403, "forbidden")

    risk_only = bearer(make_api_key(runtime, Scope.RISK_CHECK))
    assert_problem(client.get("/v1/accounts/u-1", headers=risk_only), 403, "forbidden")
    assert_problem(client.delete("/v1/accounts/u-1", headers=risk_only), 403, "forbidden")
    assert client.get("/v1/accounts/u-1", headers=reader).status_code == 200


def test_revoked_key_is_401(client: FlaskClient, runtime: Runtime) -> None:
    key = make_api_key(runtime, name="to-revoke")
    assert_problem(client.get("/v1/accounts/u-1", headers=bearer(key)), 404)
    with runtime.db.transaction() as session:
        assert revoke_api_client(session, name="to-revoke", actor="test", now=utcnow())
    assert_problem(client.get("/v1/accounts/u-1", headers=bearer(key)), 401, "unauthorized")
    assert_problem(
        client.put("/v1/accounts/u-1", json=ACCOUNT, headers=bearer(key)), 401, "unauthorized"
    )


class FakeClock:
    def __init__(self) -> None:
        self.seconds = 1000.0

    def __call__(self) -> float:
        return self.seconds


def test_key_revoked_elsewhere_is_401_once_the_auth_cache_ttl_has_passed(
    app: Flask, client: FlaskClient, runtime: Runtime
) -> None:
    clock = FakeClock()
    app.extensions[PRINCIPALS] = PrincipalCache(clock=clock)
    key = make_api_key(runtime, name="revoked-elsewhere")
    assert_problem(client.get("/v1/accounts/u-1", headers=bearer(key)), 404)
    # Another process (the CLI, another worker) revokes: this one cannot know at once.
    with runtime.db.transaction() as session:
        session.execute(
            update(ApiClient)
            .where(ApiClient.name == "revoked-elsewhere")
            .values(revoked_at=utcnow())
        )
    clock.seconds += AUTH_CACHE_TTL.total_seconds() - 0.5
    assert_problem(client.get("/v1/accounts/u-1", headers=bearer(key)), 404)
    clock.seconds += 1
    assert_problem(client.get("/v1/accounts/u-1", headers=bearer(key)), 401, "unauthorized")
    clock.seconds += 60  # and a refused key is not remembered as valid again
    assert_problem(client.get("/v1/accounts/u-1", headers=bearer(key)), 401, "unauthorized")


def test_revocation_in_this_process_empties_the_auth_cache_at_once(
    app: Flask, client: FlaskClient, runtime: Runtime
) -> None:
    app.extensions[PRINCIPALS] = PrincipalCache(clock=FakeClock())  # time stands still
    kept = make_api_key(runtime, name="kept")
    revoked = make_api_key(runtime, name="revoked-here")
    for key in (kept, revoked):
        assert_problem(client.get("/v1/accounts/u-1", headers=bearer(key)), 404)
    with runtime.db.transaction() as session:
        assert revoke_api_client(session, name="revoked-here", actor="test", now=utcnow())
    assert_problem(client.get("/v1/accounts/u-1", headers=bearer(revoked)), 401)
    assert_problem(client.get("/v1/accounts/u-1", headers=bearer(kept)), 404)


def test_refused_key_is_not_remembered_so_a_new_key_works_at_once(
    app: Flask, client: FlaskClient, runtime: Runtime
) -> None:
    app.extensions[PRINCIPALS] = PrincipalCache(clock=FakeClock())  # time stands still
    key = "lgk_" + "k" * 43
    assert_problem(client.get("/v1/accounts/u-1", headers=bearer(key)), 401)
    with runtime.db.transaction() as session:
        session.add(
            ApiClient(
                name="late", key_hash=hash_api_key(key), scopes="accounts:read", created_at=utcnow()
            )
        )
    assert_problem(client.get("/v1/accounts/u-1", headers=bearer(key)), 404)


def test_scopes_are_checked_on_every_request_even_for_a_remembered_key(
    client: FlaskClient, runtime: Runtime
) -> None:
    reader = bearer(make_api_key(runtime, Scope.ACCOUNTS_READ))
    for _ in range(2):
        assert_problem(client.get("/v1/accounts/u-1", headers=reader), 404)
        assert_problem(client.put("/v1/accounts/u-1", json=ACCOUNT, headers=reader), 403)


def test_full_auth_cache_starts_over_and_keeps_answering(
    app: Flask, client: FlaskClient, runtime: Runtime
) -> None:
    app.extensions[PRINCIPALS] = PrincipalCache(clock=FakeClock(), max_keys=2)
    keys = [make_api_key(runtime, name=f"many-{n}") for n in range(5)]
    for _ in range(2):
        for key in keys:
            assert_problem(client.get("/v1/accounts/u-1", headers=bearer(key)), 404)


def test_auth_is_checked_before_the_body_is_parsed(client: FlaskClient, runtime: Runtime) -> None:
    bad_json = '{"email": '
    response = client.put("/v1/accounts/u-1", data=bad_json, content_type="application/json")
    assert_problem(response, 401, "unauthorized")
    response = client.put("/v1/accounts/u-1", data="x", content_type="text/plain")
    assert_problem(response, 401, "unauthorized")
    assert_problem(client.post("/v1/accounts:batch", json={"accounts": []}), 401)
    too_big = {"email": "a@x.org", "locale": "x" * (5 * 1024 * 1024)}
    assert_problem(client.put("/v1/accounts/u-1", json=too_big), 401)
    reader = bearer(make_api_key(runtime, Scope.ACCOUNTS_READ))
    response = client.put(
        "/v1/accounts/u-1", data=bad_json, content_type="application/json", headers=reader
    )
    assert_problem(response, 403, "forbidden")


# --- routing errors -------------------------------------------------------------------


def test_unknown_v1_path_is_404_problem(client: FlaskClient, auth: dict[str, str]) -> None:
    assert_problem(client.get("/v1/nothing-here", headers=auth), 404, "not_found")
    assert_problem(client.get("/v1/nothing-here"), 404, "not_found")
    assert_problem(client.post("/v1/accounts", json={}, headers=auth), 404, "not_found")


def test_wrong_method_is_405_problem_with_allow(client: FlaskClient, auth: dict[str, str]) -> None:
    response = client.patch("/v1/accounts/x", json=ACCOUNT, headers=auth)
    assert_problem(response, 405, "method_not_allowed")
    allowed = {method.strip() for method in response.headers["Allow"].split(",")}
    assert {"GET", "PUT", "DELETE"} <= allowed
    assert "PATCH" not in allowed
    batch = client.get("/v1/accounts:batch", headers=auth)
    assert_problem(batch, 405)
    assert "POST" in batch.headers["Allow"]


# --- storage of keys ------------------------------------------------------------------


def test_stored_api_client_never_holds_the_key_in_the_clear(runtime: Runtime) -> None:
    key = make_api_key(runtime, Scope.ACCOUNTS_READ, name="stored")
    with runtime.db.read_session() as session:
        row = session.scalars(select(ApiClient).where(ApiClient.name == "stored")).one()
        columns = {column.key: getattr(row, column.key) for column in ApiClient.__table__.columns}
    assert columns["key_hash"] == hashlib.sha256(key.encode()).digest()
    secret_part = key.removeprefix("lgk_")
    for name, value in columns.items():
        if isinstance(value, bytes):
            assert key.encode() not in value, name
            assert secret_part not in value.hex(), name
            assert base64.urlsafe_b64decode(secret_part + "=") not in value, name
        else:
            assert secret_part not in str(value), name


# --- OpenAPI document -----------------------------------------------------------------


def openapi_path(rule: str) -> str:
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def test_openapi_document_is_public_and_lists_every_v1_route(app: Flask) -> None:
    response = app.test_client().get("/openapi/openapi.json")
    assert response.status_code == 200
    document = response.get_json()
    assert re.fullmatch(r"3\.1\.\d+", document["openapi"])
    routes: dict[str, set[str]] = {}
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/v1"):
            methods = (rule.methods or set()) - {"HEAD", "OPTIONS"}
            routes.setdefault(openapi_path(rule.rule), set()).update(m.lower() for m in methods)
    assert routes, "no /v1 routes registered"
    documented = {
        path: {method for method in item if method != "parameters"}
        for path, item in document["paths"].items()
        if path.startswith("/v1")
    }
    assert documented == routes
    # Besides /v1, only the public documents of the security events transmitter.
    assert set(document["paths"]) == set(documented) | PUBLIC_DOCUMENTS
    assert "bearer" in document["components"]["securitySchemes"]


PUBLIC_DOCUMENTS = {"/.well-known/ssf-configuration", "/.well-known/jwks.json"}


def test_every_operation_declares_security_and_problem_responses(app: Flask) -> None:
    document = app.test_client().get("/openapi/openapi.json").get_json()
    operations = [
        (path, method, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method != "parameters" and path not in PUBLIC_DOCUMENTS
    ]
    assert operations
    for path, method, operation in operations:
        where = f"{method.upper()} {path}"
        assert operation.get("security"), where
        for requirement in operation["security"]:
            assert set(requirement) <= set(document["components"]["securitySchemes"]), where
        for status in ("401", "403", "422"):
            response = operation["responses"].get(status)
            assert response is not None, f"{where} lacks {status}"
            assert set(response["content"]) == {PROBLEM}, f"{where} {status}"
    assert "Problem" in document["components"]["schemas"]


# --- health ---------------------------------------------------------------------------


def test_healthz_and_readyz_answer_200_on_the_migrated_database(client: FlaskClient) -> None:
    health = client.get("/healthz")
    assert health.status_code == 200
    assert health.get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json() == {"status": "ready"}


def unready_settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(database_url, tmp_path / "instance")


def test_readyz_is_503_on_an_unmigrated_database(tmp_path: Path) -> None:
    app = create_app(unready_settings(tmp_path, f"sqlite:///{tmp_path / 'empty.sqlite3'}"))
    try:
        client = app.test_client()
        assert client.get("/healthz").status_code == 200
        assert_problem(client.get("/readyz"), 503, "not_ready")
    finally:
        app.extensions["leakguard"].db.dispose()


def test_readyz_is_503_when_the_database_is_unreachable(tmp_path: Path) -> None:
    app = create_app(unready_settings(tmp_path, "postgresql+psycopg://postgres@127.0.0.1:1/x"))
    try:
        client = app.test_client()
        assert client.get("/healthz").status_code == 200
        assert_problem(client.get("/readyz"), 503, "not_ready")
    finally:
        app.extensions["leakguard"].db.dispose()
