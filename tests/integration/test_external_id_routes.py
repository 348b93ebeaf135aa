"""Any external id the product stores is reachable at every /v1 route that takes one:
slashes ("tenant/42"), percent signs, '?', '#', spaces, dot segments, other scripts. The
ids that would name another route are refused where ids enter (README "API")."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner

from service.accounts import ROUTE_SUFFIXES
from tests.support.cli import invoke, json_output
from tests.support.http import assert_problem
from tests.support.leakfiles import write_lines

ACCOUNT = {"email": "odd@example.org"}

ODD_IDS = [
    "sl/ash",
    "tenant/42",
    "/lead",
    "trail/",
    "a//b",
    "50%",
    "%2F",
    "what?x=1",
    "#hash",
    "with space",
    "ünï/cødé",
    "..",
    ".",
    "../x",
    "a/../b",
    "accounts:batch",
    "email-change",
    "x/totp-not",
]


def account_path(external_id: str, suffix: str = "") -> str:
    return "/v1/accounts/" + quote(external_id, safe="") + suffix


@pytest.mark.parametrize("external_id", ODD_IDS)
def test_every_account_route_reaches_an_odd_id(
    client: FlaskClient, auth: dict[str, str], external_id: str
) -> None:
    path = account_path(external_id)
    created = client.put(path, json={"email": "odd@example.org"}, headers=auth)
    assert created.status_code == 201, created.get_data(as_text=True)
    read = client.get(path, headers=auth)
    assert read.status_code == 200, read.get_data(as_text=True)
    assert read.get_json()["external_id"] == external_id
    # The sub-resources answer for this account, not a routing 404 nor another account.
    pending = client.get(account_path(external_id, "/email-change"), headers=auth)
    assert_problem(pending, 404, "no_pending_change")
    enrolled = client.post(account_path(external_id, "/totp"), headers=auth)
    assert enrolled.status_code == 201, enrolled.get_data(as_text=True)
    removed = client.delete(account_path(external_id, "/totp"), headers=auth)
    assert removed.status_code == 204, removed.get_data(as_text=True)
    codes = client.post(account_path(external_id, "/recovery-codes"), headers=auth)
    assert codes.status_code == 201, codes.get_data(as_text=True)
    assert client.delete(path, headers=auth).status_code == 204
    assert client.get(path, headers=auth).status_code == 404


def test_a_slash_id_is_reached_unescaped_too(client: FlaskClient, auth: dict[str, str]) -> None:
    created = client.put("/v1/accounts/tenant/7", json={"email": "t7@example.org"}, headers=auth)
    assert created.status_code == 201
    read = client.get("/v1/accounts/tenant%2F7", headers=auth)
    assert read.get_json()["external_id"] == "tenant/7"


@pytest.mark.parametrize("suffix", ROUTE_SUFFIXES)
def test_an_id_ending_in_a_route_is_refused_where_ids_enter(
    client: FlaskClient,
    auth: dict[str, str],
    runner: FlaskCliRunner,
    tmp_path: Path,
    suffix: str,
) -> None:
    external_id = "a" + suffix
    put = client.put(account_path(external_id), json={"email": "a@example.org"}, headers=auth)
    assert put.status_code in (404, 405, 422), put.get_data(as_text=True)
    batch = client.post(
        "/v1/accounts:batch",
        json={"accounts": [{"external_id": external_id, "email": "a@example.org"}]},
        headers=auth,
    )
    assert batch.status_code == 200, batch.get_data(as_text=True)
    assert [item["status"] for item in batch.get_json()["results"]] == ["invalid"]
    csv = write_lines(tmp_path / "ids.csv", ["external_id,email", f"{external_id},a@example.org"])
    report = json_output(invoke(runner, "accounts", "import", str(csv), "--json"))
    assert isinstance(report, dict)
    assert (report["created"], report["invalid"]) == (0, 1)
    assert client.get(account_path(external_id), headers=auth).status_code in (404, 405)


def test_route_suffixes_name_every_route_after_an_id(app: Flask) -> None:
    marker = "<external_id:external_id>"
    suffixes = {
        rule.rule.split(marker, 1)[1]
        for rule in app.url_map.iter_rules()
        if marker in rule.rule and not rule.rule.endswith(marker)
    }
    assert suffixes == set(ROUTE_SUFFIXES)


# Each route after an id and the methods it serves (README "API"); HEAD and OPTIONS come
# with them as werkzeug adds them.
SUB_ROUTE_METHODS = {
    "/email-change": {"GET", "POST", "DELETE"},
    "/email-change/resend": {"POST"},
    "/email-change:assisted": {"POST"},
    "/totp": {"POST", "DELETE"},
    "/totp/confirm": {"POST"},
    "/recovery-codes": {"POST"},
}


@pytest.mark.parametrize("external_id", ["u-1", "tenant/42"])
@pytest.mark.parametrize("suffix", sorted(SUB_ROUTE_METHODS))
def test_a_method_a_sub_route_does_not_serve_is_405_with_its_own_allow(
    client: FlaskClient, auth: dict[str, str], external_id: str, suffix: str
) -> None:
    # GET /v1/accounts/u-1/totp used to reach GET /v1/accounts/<id> with the id "u-1/totp"
    # (404 "no account"; a PUT: 400 or 422 for the body), and the Allow of a 405 or an
    # OPTIONS named the bare account route's methods too, which the sub-route does not serve.
    assert client.put(account_path(external_id), json=ACCOUNT, headers=auth).status_code == 201
    served = SUB_ROUTE_METHODS[suffix]
    expected_allow = served | {"OPTIONS"} | ({"HEAD"} if "GET" in served else set())
    path = account_path(external_id, suffix)
    for method in sorted({"GET", "PUT", "POST", "DELETE", "PATCH"} - served):
        response = client.open(path, method=method, json=ACCOUNT, headers=auth)
        assert_problem(response, 405, "method_not_allowed")
        assert set(response.headers["Allow"].replace(" ", "").split(",")) == expected_allow
    options = client.options(path, headers=auth)
    assert set(options.headers["Allow"].replace(" ", "").split(",")) == expected_allow
