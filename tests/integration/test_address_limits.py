"""RFC 5321's size limits hold wherever an address enters as an account's address: PUT,
batch, the accounts import, an email change's new address. One malformed address with two
"@" is called malformed, not "more than one address"."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask.testing import FlaskClient, FlaskCliRunner

from service.runtime import Runtime
from tests.support.cli import invoke, json_output
from tests.support.email_change import assurance_token
from tests.support.factories import make_account
from tests.support.http import assert_problem
from tests.support.leakfiles import write_lines

LOCAL_64 = "a" * 64 + "@example.org"
TOO_LONG = {
    "local-65": "a" * 65 + "@example.org",
    "local-66-octets-33-chars": "ü" * 33 + "@example.org",
    "label-64": "a@" + "b" * 64 + ".org",
    "address-255": "a" * 60 + "@" + ".".join(["b" * 60] * 3) + ".org" + "x" * 10,
}


@pytest.mark.parametrize("email", TOO_LONG.values(), ids=TOO_LONG.keys())
def test_an_address_over_a_size_limit_is_refused_by_put_and_batch(
    client: FlaskClient, auth: dict[str, str], email: str
) -> None:
    body = assert_problem(
        client.put("/v1/accounts/long", json={"email": email}, headers=auth), 422, "invalid_email"
    )
    assert "more than one" not in str(body.get("detail"))
    batch = client.post(
        "/v1/accounts:batch",
        json={"accounts": [{"external_id": "long", "email": email}]},
        headers=auth,
    )
    assert [item["status"] for item in batch.get_json()["results"]] == ["invalid"]
    assert client.get("/v1/accounts/long", headers=auth).status_code == 404


def test_a_local_part_of_64_octets_is_taken(client: FlaskClient, auth: dict[str, str]) -> None:
    assert client.put("/v1/accounts/l64", json={"email": LOCAL_64}, headers=auth).status_code == 201
    local_64_octets = "ü" * 32 + "@example.org"
    put = client.put("/v1/accounts/u64", json={"email": local_64_octets}, headers=auth)
    assert put.status_code == 201, put.get_data(as_text=True)


def test_the_local_part_limit_says_so(client: FlaskClient, auth: dict[str, str]) -> None:
    response = client.put("/v1/accounts/l65", json={"email": TOO_LONG["local-65"]}, headers=auth)
    body = assert_problem(response, 422, "invalid_email")
    assert "64 bytes" in body["detail"]


def test_the_import_refuses_a_local_part_over_64_octets(
    runner: FlaskCliRunner, tmp_path: Path, client: FlaskClient, auth: dict[str, str]
) -> None:
    lines = ["external_id,email"] + [f"ok{n},ok{n}@example.org" for n in range(5)]
    lines += [f"long,{TOO_LONG['local-65']}", f"l64,{LOCAL_64}"]
    report = json_output(
        invoke(runner, "accounts", "import", str(write_lines(tmp_path / "a.csv", lines)), "--json")
    )
    assert isinstance(report, dict)
    assert (report["created"], report["invalid"]) == (6, 1)
    assert client.get("/v1/accounts/long", headers=auth).status_code == 404


def test_an_email_change_refuses_a_local_part_over_64_octets(
    runtime: Runtime, client: FlaskClient, auth: dict[str, str]
) -> None:
    make_account(runtime, "jane", "jane@example.org")
    token = assurance_token(runtime, "jane")
    response = client.post(
        "/v1/accounts/jane/email-change",
        json={"new_email": TOO_LONG["local-65"], "assurance_token": token},
        headers=auth,
    )
    assert_problem(response, 422, "invalid_email")


@pytest.mark.parametrize("email", ["a@b@example.org", "a@b@c@example.org", "@a@example.org"])
def test_two_at_signs_in_one_token_are_one_malformed_address(
    client: FlaskClient, auth: dict[str, str], email: str
) -> None:
    body = assert_problem(
        client.put("/v1/accounts/at", json={"email": email}, headers=auth), 422, "invalid_email"
    )
    assert "more than one" not in str(body.get("detail"))


@pytest.mark.parametrize(
    "email",
    ["a@x.org, b@y.org", "a@x.org b@y.org", "<a@x.org>;<b@y.org>", "mailto:a@x.org?cc=b@y.org"],
)
def test_two_mailboxes_are_still_named_as_such(
    client: FlaskClient, auth: dict[str, str], email: str
) -> None:
    body = assert_problem(
        client.put("/v1/accounts/two", json={"email": email}, headers=auth), 422, "invalid_email"
    )
    assert "more than one address" in body["detail"]
