"""/v1/accounts over HTTP: upsert, read, delete, batch, errors and concurrent creation."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from service.models import Account
from service.runtime import Runtime
from tests.support.http import assert_problem


@dataclass(frozen=True)
class Row:
    email: str
    email_key: bytes
    locale: str | None
    updated_at: datetime


def stored(runtime: Runtime, external_id: str) -> Row | None:
    """The account row as the database holds it (read outside the app)."""
    with runtime.db.read_session() as session:
        row = session.execute(
            select(Account.email, Account.email_key, Account.locale, Account.updated_at).where(
                Account.external_id == external_id
            )
        ).one_or_none()
    return None if row is None else Row(*row)


def account_count(runtime: Runtime) -> int:
    with runtime.db.read_session() as session:
        return session.scalar(select(func.count()).select_from(Account)) or 0


# --- PUT / GET / DELETE ---------------------------------------------------------------


def test_put_creates_then_reports_unchanged_then_updated(
    client: FlaskClient, auth: dict[str, str], runtime: Runtime
) -> None:
    body = {"email": "jane.doe@example.org", "locale": "de-AT"}
    created = client.put("/v1/accounts/u-1", json=body, headers=auth)
    assert created.status_code == 201
    first = created.get_json()
    assert first["status"] == "created"
    assert first["external_id"] == "u-1"
    assert first["email"] == "jane.doe@example.org"
    assert first["locale"] == "de-AT"
    assert first["created_at"] == first["updated_at"]
    row_before = stored(runtime, "u-1")
    assert row_before is not None

    again = client.put("/v1/accounts/u-1", json=body, headers=auth)
    assert again.status_code == 200
    assert again.get_json()["status"] == "unchanged"
    assert again.get_json()["updated_at"] == first["updated_at"]
    row_after = stored(runtime, "u-1")
    assert row_after is not None
    assert row_after.updated_at == row_before.updated_at
    assert row_after.email_key == row_before.email_key

    new_email = client.put(
        "/v1/accounts/u-1", json={"email": "jane@example.org", "locale": "de-AT"}, headers=auth
    )
    assert new_email.status_code == 200
    assert new_email.get_json()["status"] == "updated"
    assert new_email.get_json()["email"] == "jane@example.org"
    assert new_email.get_json()["updated_at"] > first["updated_at"]
    assert new_email.get_json()["created_at"] == first["created_at"]
    row = stored(runtime, "u-1")
    assert row is not None
    assert row.email_key != row_before.email_key

    new_locale = client.put(
        "/v1/accounts/u-1", json={"email": "jane@example.org", "locale": "fr"}, headers=auth
    )
    assert new_locale.status_code == 200
    assert new_locale.get_json()["status"] == "updated"
    assert new_locale.get_json()["locale"] == "fr"
    assert account_count(runtime) == 1


def test_get_returns_the_account_as_stored(client: FlaskClient, auth: dict[str, str]) -> None:
    put = client.put("/v1/accounts/u-2", json={"email": "  ann@example.org "}, headers=auth)
    assert put.status_code == 201
    response = client.get("/v1/accounts/u-2", headers=auth)
    assert response.status_code == 200
    body = response.get_json()
    assert body == {
        "external_id": "u-2",
        "email": "ann@example.org",
        "locale": None,
        "created_at": put.get_json()["created_at"],
        "updated_at": put.get_json()["updated_at"],
        "exposures": [],
        "undeliverable": None,
        "totp_enrolled": False,
        "recovery_codes_left": 0,
        "email_changed_at": None,
        "pending_email_change": None,
    }


def test_delete_then_get_is_404_and_delete_again_is_404(
    client: FlaskClient, auth: dict[str, str], runtime: Runtime
) -> None:
    client.put("/v1/accounts/u-3", json={"email": "bob@example.org"}, headers=auth)
    deleted = client.delete("/v1/accounts/u-3", headers=auth)
    assert deleted.status_code == 204
    assert deleted.get_data() == b""
    assert stored(runtime, "u-3") is None
    assert_problem(client.get("/v1/accounts/u-3", headers=auth), 404, "not_found")
    assert_problem(client.delete("/v1/accounts/u-3", headers=auth), 404, "not_found")


def test_get_and_delete_of_unknown_account_are_404(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    assert_problem(client.get("/v1/accounts/nobody", headers=auth), 404, "not_found")
    assert_problem(client.delete("/v1/accounts/nobody", headers=auth), 404, "not_found")


# --- canonical form -------------------------------------------------------------------


def test_accounts_sharing_a_canonical_address_are_both_kept_with_one_email_key(
    client: FlaskClient, auth: dict[str, str], runtime: Runtime
) -> None:
    for external_id, email in [
        ("a", "John.Smith@gmail.com"),
        ("b", "johnsmith+x@googlemail.com"),
        ("c", "john.smith@example.org"),
    ]:
        response = client.put(f"/v1/accounts/{external_id}", json={"email": email}, headers=auth)
        assert response.status_code == 201
    a, b, c = (stored(runtime, external_id) for external_id in "abc")
    assert a is not None
    assert b is not None
    assert c is not None
    assert a.email == "John.Smith@gmail.com"
    assert b.email == "johnsmith+x@googlemail.com"
    assert a.email_key == b.email_key
    assert c.email_key != a.email_key
    assert len(a.email_key) == 16


# --- invalid requests -----------------------------------------------------------------


def test_invalid_email_is_422_without_echoing_the_address(
    client: FlaskClient, auth: dict[str, str], runtime: Runtime
) -> None:
    address = "secret.person@@example.org"
    response = client.put("/v1/accounts/u-4", json={"email": address}, headers=auth)
    assert_problem(response, 422, "invalid_email")
    assert "secret.person" not in response.get_data(as_text=True)
    assert account_count(runtime) == 0


def test_invalid_email_on_existing_account_changes_nothing(
    client: FlaskClient, auth: dict[str, str], runtime: Runtime
) -> None:
    client.put("/v1/accounts/u-5", json={"email": "carl@example.org"}, headers=auth)
    before = stored(runtime, "u-5")
    response = client.put("/v1/accounts/u-5", json={"email": "no address"}, headers=auth)
    assert_problem(response, 422, "invalid_email")
    after = stored(runtime, "u-5")
    assert after is not None
    assert before is not None
    assert (after.email, after.email_key, after.updated_at) == (
        before.email,
        before.email_key,
        before.updated_at,
    )


def test_wrong_field_types_and_extra_fields_are_422_with_errors(
    client: FlaskClient, auth: dict[str, str], runtime: Runtime
) -> None:
    response = client.put(
        "/v1/accounts/u-6", json={"email": 5, "locale": 7, "extra": "x"}, headers=auth
    )
    body = assert_problem(response, 422, "validation_failed")
    fields = {tuple(error["loc"]) for error in body["errors"]}
    assert fields == {("email",), ("locale",), ("extra",)}
    for error in body["errors"]:
        assert set(error) == {"loc", "msg", "type"}
    assert account_count(runtime) == 0


def test_missing_email_is_422(client: FlaskClient, auth: dict[str, str]) -> None:
    body = assert_problem(client.put("/v1/accounts/u-7", json={"locale": "en"}, headers=auth), 422)
    assert [error["loc"] for error in body["errors"]] == [["email"]]


@pytest.mark.parametrize(
    "raw",
    [
        '{"email": "a\\ud800@x.org"}',
        '{"email": "a\\u0000@x.org"}',
        '{"email": "a@x.org", "locale": "de\\u0000"}',
        '{"email": "a@x.org", "locale": "\\udfff"}',
    ],
    ids=["lone-surrogate", "nul", "nul-locale", "surrogate-locale"],
)
def test_unstorable_text_is_422_not_500(
    client: FlaskClient, auth: dict[str, str], runtime: Runtime, raw: str
) -> None:
    response = client.put(
        "/v1/accounts/u-8", data=raw, content_type="application/json", headers=auth
    )
    assert_problem(response, 422)
    assert account_count(runtime) == 0


def test_malformed_json_is_400(client: FlaskClient, auth: dict[str, str]) -> None:
    response = client.put(
        "/v1/accounts/u-9", data='{"email": ', content_type="application/json", headers=auth
    )
    assert_problem(response, 400, "invalid_request")


def test_deeply_nested_json_is_400_not_500(client: FlaskClient, auth: dict[str, str]) -> None:
    # Python's json parser recurses; 100,000 brackets fit in the size limit.
    nested = "[" * 100_000 + "]" * 100_000
    put = client.put("/v1/accounts/u-9", data=nested, content_type="application/json", headers=auth)
    assert_problem(put, 400, "invalid_request")
    batch = client.post(
        "/v1/accounts:batch",
        data='{"accounts": ' + nested + "}",
        content_type="application/json",
        headers=auth,
    )
    assert_problem(batch, 400, "invalid_request")


def test_non_json_content_type_is_415(client: FlaskClient, auth: dict[str, str]) -> None:
    response = client.put(
        "/v1/accounts/u-10",
        data='{"email": "a@x.org"}',
        content_type="text/plain",
        headers=auth,
    )
    assert_problem(response, 415, "unsupported_media_type")
    form = client.post("/v1/accounts:batch", data={"accounts": "x"}, headers=auth)
    assert_problem(form, 415, "unsupported_media_type")


def test_body_over_max_request_bytes_is_413(
    runtime: Runtime, make_app: Callable[..., Flask], auth: dict[str, str]
) -> None:
    client = make_app(max_request_bytes=200).test_client()
    fits = client.put("/v1/accounts/u-11", json={"email": "a@x.org"}, headers=auth)
    assert fits.status_code == 201
    response = client.put(
        "/v1/accounts/u-12", json={"email": "a@x.org", "locale": "x" * 300}, headers=auth
    )
    assert_problem(response, 413)
    assert stored(runtime, "u-12") is None


def test_body_over_the_default_limit_is_413(
    client: FlaskClient, auth: dict[str, str], runtime: Runtime
) -> None:
    big = {"email": "a@x.org", "locale": "x" * (4 * 1024 * 1024)}
    assert_problem(client.put("/v1/accounts/u-13", json=big, headers=auth), 413)
    assert account_count(runtime) == 0


@pytest.mark.parametrize(
    ("locale", "stored_as"),
    [("de_DE", "de-DE"), ("de_DE.UTF-8", "de-DE"), ("sr_RS@latin", "sr-Latn-RS"), ("C", None)],
)
def test_a_posix_locale_is_stored_as_the_language_tag_it_means(
    client: FlaskClient, auth: dict[str, str], locale: str, stored_as: str | None
) -> None:
    """A login service on Linux or Java sends de_DE: a 422 left that person unstored."""
    put = client.put("/v1/accounts/u-p", json={"email": "a@x.org", "locale": locale}, headers=auth)
    assert put.status_code == 201
    assert put.get_json()["locale"] == stored_as
    batch = client.post(
        "/v1/accounts:batch",
        json={"accounts": [{"external_id": "u-q", "email": "b@x.org", "locale": locale}]},
        headers=auth,
    )
    assert batch.get_json()["results"][0]["status"] == "created"
    assert client.get("/v1/accounts/u-q", headers=auth).get_json()["locale"] == stored_as


def test_locale_that_is_no_language_tag_is_422(client: FlaskClient, auth: dict[str, str]) -> None:
    response = client.put(
        "/v1/accounts/u-14", json={"email": "a@x.org", "locale": "not a tag!"}, headers=auth
    )
    body = assert_problem(response, 422, "validation_failed")
    assert [error["loc"] for error in body["errors"]] == [["locale"]]


@pytest.mark.parametrize(
    "external_id", ["x" * 256, "a%00b", "a%0Ab"], ids=["256-chars", "nul", "newline"]
)
def test_unstorable_external_id_is_rejected_as_problem(
    client: FlaskClient, auth: dict[str, str], runtime: Runtime, external_id: str
) -> None:
    response = client.put(f"/v1/accounts/{external_id}", json={"email": "a@x.org"}, headers=auth)
    assert 400 <= response.status_code < 500
    assert_problem(response, response.status_code)
    assert account_count(runtime) == 0


def test_external_id_of_255_chars_is_accepted(client: FlaskClient, auth: dict[str, str]) -> None:
    external_id = "x" * 255
    response = client.put(f"/v1/accounts/{external_id}", json={"email": "a@x.org"}, headers=auth)
    assert response.status_code == 201
    assert client.get(f"/v1/accounts/{external_id}", headers=auth).status_code == 200


# --- batch ----------------------------------------------------------------------------


def test_batch_reports_each_item_and_applies_the_valid_ones(
    client: FlaskClient, auth: dict[str, str], runtime: Runtime
) -> None:
    client.put("/v1/accounts/old", json={"email": "old@example.org"}, headers=auth)
    client.put("/v1/accounts/same", json={"email": "same@example.org"}, headers=auth)
    old_before = stored(runtime, "old")
    response = client.post(
        "/v1/accounts:batch",
        json={
            "accounts": [
                {"external_id": "new", "email": "new@example.org", "locale": "en"},
                {"external_id": "old", "email": "not an address"},
                {"external_id": "same", "email": "same@example.org"},
                {"external_id": "bad-new", "email": "also@@bad"},
                {"external_id": "changed", "email": "c@example.org"},
            ]
        },
        headers=auth,
    )
    assert response.status_code == 200
    body = response.get_json()
    assert [(r["external_id"], r["status"]) for r in body["results"]] == [
        ("new", "created"),
        ("old", "invalid"),
        ("same", "unchanged"),
        ("bad-new", "invalid"),
        ("changed", "created"),
    ]
    assert (body["created"], body["updated"], body["unchanged"], body["invalid"]) == (2, 0, 1, 2)
    invalid = [r for r in body["results"] if r["status"] == "invalid"]
    assert all(r["error"] for r in invalid)
    assert "not an address" not in response.get_data(as_text=True)
    assert "also@@bad" not in response.get_data(as_text=True)

    old_after = stored(runtime, "old")
    assert old_after is not None
    assert old_before is not None
    assert (old_after.email, old_after.updated_at) == (old_before.email, old_before.updated_at)
    assert stored(runtime, "bad-new") is None
    new = stored(runtime, "new")
    assert new is not None
    assert new.locale == "en"
    assert account_count(runtime) == 4


@pytest.mark.parametrize(
    "locale",
    ["en_US@", "12", "a" * 100, "de AT"],
    ids=["posix-cut", "digits", "100-chars", "space"],
)
def test_batch_reports_an_item_with_a_bad_locale_invalid_and_applies_the_rest(
    client: FlaskClient, auth: dict[str, str], runtime: Runtime, locale: str
) -> None:
    # As a bad address, and as the accounts import refuses that row: before, one bad
    # locale refused the whole batch (422), while a bad address was reported per item.
    response = client.post(
        "/v1/accounts:batch",
        json={
            "accounts": [
                {"external_id": "ok", "email": "ok@example.org", "locale": "de-AT"},
                {"external_id": "bad", "email": "bad@example.org", "locale": locale},
            ]
        },
        headers=auth,
    )
    assert response.status_code == 200, response.get_json()
    results = response.get_json()["results"]
    assert [(r["external_id"], r["status"]) for r in results] == [
        ("ok", "created"),
        ("bad", "invalid"),
    ]
    assert "locale" in results[1]["error"]
    assert stored(runtime, "bad") is None
    assert account_count(runtime) == 1
    single = client.put(
        "/v1/accounts/bad", json={"email": "b@x.org", "locale": locale}, headers=auth
    )
    assert_problem(single, 422, "validation_failed")


def test_batch_repeated_external_id_last_one_wins(
    client: FlaskClient, auth: dict[str, str], runtime: Runtime
) -> None:
    response = client.post(
        "/v1/accounts:batch",
        json={
            "accounts": [
                {"external_id": "dup", "email": "first@example.org"},
                {"external_id": "dup", "email": "second@example.org", "locale": "de"},
            ]
        },
        headers=auth,
    )
    assert response.status_code == 200
    assert [r["status"] for r in response.get_json()["results"]] == ["created", "updated"]
    got = client.get("/v1/accounts/dup", headers=auth).get_json()
    assert (got["email"], got["locale"]) == ("second@example.org", "de")
    assert account_count(runtime) == 1


def test_batch_of_1000_is_accepted_and_1001_is_422(
    client: FlaskClient, auth: dict[str, str], runtime: Runtime
) -> None:
    items = [{"external_id": f"b-{n}", "email": f"user{n}@example.org"} for n in range(1001)]
    too_many = client.post("/v1/accounts:batch", json={"accounts": items}, headers=auth)
    body = assert_problem(too_many, 422, "validation_failed")
    assert body["errors"][0]["loc"] == ["accounts"]
    assert account_count(runtime) == 0
    ok = client.post("/v1/accounts:batch", json={"accounts": items[:1000]}, headers=auth)
    assert ok.status_code == 200
    assert ok.get_json()["created"] == 1000
    assert account_count(runtime) == 1000


def test_batch_limit_follows_max_batch_accounts_setting(
    runtime: Runtime, make_app: Callable[..., Flask], auth: dict[str, str]
) -> None:
    client = make_app(max_batch_accounts=3).test_client()
    items = [{"external_id": f"s-{n}", "email": f"s{n}@example.org"} for n in range(4)]
    body = assert_problem(
        client.post("/v1/accounts:batch", json={"accounts": items}, headers=auth),
        422,
        "validation_failed",
    )
    assert body["errors"][0]["loc"] == ["accounts"]
    assert account_count(runtime) == 0
    ok = client.post("/v1/accounts:batch", json={"accounts": items[:3]}, headers=auth)
    assert ok.status_code == 200
    assert account_count(runtime) == 3


def test_empty_batch_is_422(client: FlaskClient, auth: dict[str, str]) -> None:
    assert_problem(
        client.post("/v1/accounts:batch", json={"accounts": []}, headers=auth),
        422,
        "validation_failed",
    )
    assert_problem(client.post("/v1/accounts:batch", json={}, headers=auth), 422)


def test_batch_item_with_wrong_shape_is_422_and_applies_nothing(
    client: FlaskClient, auth: dict[str, str], runtime: Runtime
) -> None:
    response = client.post(
        "/v1/accounts:batch",
        json={
            "accounts": [
                {"external_id": "fine", "email": "fine@example.org"},
                {"external_id": "odd", "email": "odd@example.org", "admin": True},
            ]
        },
        headers=auth,
    )
    body = assert_problem(response, 422, "validation_failed")
    assert body["errors"][0]["loc"] == ["accounts", 1, "admin"]
    assert account_count(runtime) == 0


# --- concurrency ----------------------------------------------------------------------


def test_concurrent_puts_of_one_new_account_create_it_once(
    app: Flask, auth: dict[str, str], runtime: Runtime
) -> None:
    # Each thread has its own client; all check for the row before any inserts it, so all
    # but one hit the unique constraint and must be retried by run_in_transaction.
    clients = [app.test_client() for _ in range(10)]
    barrier = threading.Barrier(len(clients))
    statuses: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def put(client: FlaskClient) -> None:
        try:
            barrier.wait(timeout=10)
            response = client.put(
                "/v1/accounts/race", json={"email": "race@example.org"}, headers=auth
            )
            with lock:
                statuses.append(response.status_code)
        except BaseException as exc:  # noqa: BLE001  (reported by the assertion below)
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=put, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert sorted(statuses) == [200] * 9 + [201]
    assert account_count(runtime) == 1


def test_a_204_carries_no_media_type(client: FlaskClient, auth: dict[str, str]) -> None:
    # Flask labelled the empty answer text/html; a 204 has no content to label.
    client.put("/v1/accounts/u-204", json={"email": "nemo@example.org"}, headers=auth)
    for path in ("/v1/accounts/u-204/totp", "/v1/accounts/u-204"):
        deleted = client.delete(path, headers=auth)
        assert deleted.status_code == 204, deleted.get_data(as_text=True)
        assert "Content-Type" not in deleted.headers
        assert deleted.get_data() == b""
