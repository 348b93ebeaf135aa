"""Every /v1 body goes through one strict parser: one JSON object, member names unique,
numbers finite; anything else is a 400 with its reason (README "API")."""

from __future__ import annotations

import gzip
import json

import pytest
from flask.testing import FlaskClient

from service.runtime import Runtime
from tests.support.factories import make_account
from tests.support.http import assert_problem

# Every operation that takes a JSON body (test_every_body_endpoint_is_listed keeps it so).
BODY_ENDPOINTS = [
    ("PUT", "/v1/accounts/u-1"),
    ("POST", "/v1/accounts:batch"),
    ("POST", "/v1/accounts/u-1/email-change"),
    ("POST", "/v1/accounts/u-1/email-change:assisted"),
    ("POST", "/v1/email-change/confirm"),
    ("POST", "/v1/email-change/revert"),
    ("POST", "/v1/events/poll"),
    ("POST", "/v1/notices/bounces"),
    ("POST", "/v1/risk/check"),
    ("POST", "/v1/step-up/challenges"),
    ("POST", "/v1/step-up/verify"),
    ("POST", "/v1/accounts/u-1/totp"),
    ("POST", "/v1/accounts/u-1/totp/confirm"),
]

REFUSED_BODIES = {
    "null": ("null", "must be a JSON object, not null"),
    "array": ("[]", "must be a JSON object, not an array"),
    "string": ('"{\\"email\\": \\"a@example.org\\"}"', "must be a JSON object, not a string"),
    "number": ("5", "must be a JSON object, not a number"),
    "nan": ('{"email": "a@example.org", "n": NaN}', "NaN is not JSON"),
    "infinity": ('{"n": Infinity}', "Infinity is not JSON"),
    "minus-infinity": ('{"n": -Infinity}', "-Infinity is not JSON"),
    "overflow": ('{"n": 1e400}', "too large"),
    "duplicate": (
        '{"email": "a@example.org", "email": "b@example.org"}',
        'more than once ("email")',
    ),
    "nested-duplicate": ('{"accounts": [{"x": 1, "x": 2}]}', 'more than once ("x")'),
    "whitespace": ("  \n", "the body is empty"),
    "syntax": ('{"email": ', "not valid JSON"),
    "not-utf8": (b'{"email": "\xff"}', "not valid JSON"),
}


# Every kind on two endpoints, and a few on every endpoint: the parser is one, shared.
CASES = [
    *[(endpoint, kind) for endpoint in BODY_ENDPOINTS[:2] for kind in REFUSED_BODIES],
    *[(endpoint, kind) for endpoint in BODY_ENDPOINTS[2:] for kind in ("null", "duplicate")],
]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [(method, path, REFUSED_BODIES[kind]) for (method, path), kind in CASES],
    ids=[f"{method}-{path}-{kind}" for (method, path), kind in CASES],
)
def test_a_body_that_is_not_one_json_object_is_400_with_its_reason(
    client: FlaskClient,
    auth: dict[str, str],
    method: str,
    path: str,
    body: tuple[str | bytes, str],
) -> None:
    raw, reason = body
    response = client.open(
        path, method=method, data=raw, content_type="application/json", headers=auth
    )
    problem = assert_problem(response, 400, "invalid_request")
    assert reason in problem["detail"]


@pytest.mark.parametrize(
    ("method", "path"),
    [endpoint for endpoint in BODY_ENDPOINTS if not endpoint[1].endswith("/totp")],
)
def test_an_empty_body_is_400_where_one_is_needed(
    client: FlaskClient, auth: dict[str, str], method: str, path: str
) -> None:
    for headers in ({"Content-Type": "application/json"}, {}):
        response = client.open(path, method=method, data=b"", headers={**auth, **headers})
        problem = assert_problem(response, 400, "invalid_request")
        assert problem["detail"] == "the body is empty: send a JSON object"


def test_a_body_naming_the_address_twice_stores_neither(
    client: FlaskClient, auth: dict[str, str], runtime: Runtime
) -> None:
    raw = '{"email": "a@example.org", "email": "b@example.org"}'
    response = client.put(
        "/v1/accounts/u-2", data=raw, content_type="application/json", headers=auth
    )
    assert_problem(response, 400, "invalid_request")
    assert client.get("/v1/accounts/u-2", headers=auth).status_code == 404


def test_a_member_name_that_is_not_a_plain_name_is_not_quoted_back(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    raw = '{"jane@example.org": 1, "jane@example.org": 2}'
    response = client.put(
        "/v1/accounts/u-3", data=raw, content_type="application/json", headers=auth
    )
    problem = assert_problem(response, 400, "invalid_request")
    assert "jane" not in response.get_data(as_text=True)
    assert problem["detail"] == "the body names a member more than once"


def test_an_endpoint_without_a_body_still_takes_none(
    client: FlaskClient, auth: dict[str, str], runtime: Runtime
) -> None:
    make_account(runtime, "u-4", "dora@example.org")
    response = client.post(
        "/v1/accounts/u-4/totp", data=b"", content_type="application/json", headers=auth
    )
    assert response.status_code == 201, response.get_data(as_text=True)


def test_a_list_index_in_an_error_location_is_a_number(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    body = {"accounts": [{"external_id": "u-5", "email": 5}]}
    problem = assert_problem(client.post("/v1/accounts:batch", json=body, headers=auth), 422)
    assert [error["loc"] for error in problem["errors"]] == [["accounts", 0, "email"]]


def test_every_body_endpoint_is_listed(client: FlaskClient) -> None:
    spec = client.get("/openapi/openapi.json").get_json()
    with_body = {
        (method.upper(), path)
        for path, operations in spec["paths"].items()
        for method, operation in operations.items()
        if "requestBody" in operation
    }
    listed = {(method, path.replace("u-1", "{external_id}")) for method, path in BODY_ENDPOINTS}
    assert with_body == listed


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br", "GZIP", "identity, gzip"])
@pytest.mark.parametrize("compressed", [True, False], ids=["compressed", "plain"])
def test_a_compressed_body_is_415_naming_the_codings_accepted(
    client: FlaskClient, auth: dict[str, str], coding: str, compressed: bool
) -> None:
    # Content-Encoding was ignored: a gzip body was read as JSON (400 "not valid JSON" for
    # a good body), and a plain body labelled gzip was taken, whatever the label said.
    raw = json.dumps({"account_id": "u-6"}).encode()
    response = client.post(
        "/v1/risk/check",
        data=gzip.compress(raw) if compressed else raw,
        headers={**auth, "Content-Type": "application/json", "Content-Encoding": coding},
    )
    problem = assert_problem(response, 415, "unsupported_content_encoding")
    assert response.headers["Accept-Encoding"] == "identity"
    assert "uncompressed" in problem["detail"]


def test_an_identity_coding_is_the_body_as_it_is(client: FlaskClient, auth: dict[str, str]) -> None:
    response = client.post(
        "/v1/risk/check",
        data=json.dumps({"account_id": "u-6"}),
        headers={**auth, "Content-Type": "application/json", "Content-Encoding": "identity"},
    )
    assert response.status_code == 200, response.get_data(as_text=True)


def test_a_body_of_another_media_type_is_415_naming_json(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    response = client.post(
        "/v1/risk/check", data="account_id=u-6", content_type="text/plain", headers=auth
    )
    assert_problem(response, 415, "unsupported_media_type")
    assert response.headers["Accept"] == "application/json"
