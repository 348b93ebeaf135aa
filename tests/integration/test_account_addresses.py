"""An account's address is stored as one bare mailbox, whatever dressing it was sent in.

Security review, item 1: a dressed value (``Alice <a@x>``, quotes, ``mailto:``, ``;``) was
stored verbatim and every message to it failed the one-recipient check; a value naming two
mailboxes was stored too. Each example is a case here, through the API and the CSV import,
on SQLite and PostgreSQL.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from jobs.account_import import import_accounts
from service.models import Account
from service.runtime import Runtime

# value sent -> the mailbox stored
DRESSED = {
    "Alice <a1@example.org>": "a1@example.org",
    "<x1@example.org>": "x1@example.org",
    '"x2@example.org"': "x2@example.org",
    "x3@example.org;": "x3@example.org",
    "'x4@example.org'": "x4@example.org",
    "mailto:x5@example.org": "x5@example.org",
    "MAILTO:x6@example.org": "x6@example.org",
    "=?utf-8?q?Al=C3=AFce_Example?= <x7@example.org>": "x7@example.org",
    '"Smith, J." <x8@example.org>': "x8@example.org",
    '"x9@example.net" <x9@example.org>': "x9@example.org",
    "x10@example.org (Erin Example)": "x10@example.org",
    "(work) x11@example.org": "x11@example.org",
    "  Bob   <X12@Example.org>  ": "X12@Example.org",
    "<mailto:x13@example.org>": "x13@example.org",
}

# values that name two or more mailboxes: always refused
SEVERAL = [
    "mailto:y1@example.org?cc=other@example.net",
    "mailto:y2@example.org?cc=other%40example.net",
    "mailto:y3@example.org,other@example.net",
    "Bob <b@example.net>, <y4@example.org>",
    "y5@example.org; other@example.net",
    "y6@example.org other@example.net",
    "team: y7@example.org, other@example.net;",
    "y8@example.org,other@example.net",
    # an encoded word that decodes to two mailboxes (base64 hides the "@" and the ",")
    "=?UTF-8?B?PGFsaWNlQGV4YW1wbGUub3JnPiwgPGJvYkBleGFtcGxlLm9yZz4=?=",
    "=?UTF-8?B?PGFsaWNlQGV4YW1wbGUub3JnPg==?= =?UTF-8?B?PGJvYkBleGFtcGxlLm9yZz4=?=",
]


def stored_email(runtime: Runtime, external_id: str) -> str | None:
    with runtime.db.read_session() as session:
        return session.scalar(select(Account.email).where(Account.external_id == external_id))


@pytest.mark.parametrize(("sent", "bare"), DRESSED.items())
def test_put_stores_the_bare_mailbox_of_a_dressed_address(
    client: FlaskClient, auth: dict[str, str], runtime: Runtime, sent: str, bare: str
) -> None:
    put = client.put("/v1/accounts/a", json={"email": sent}, headers=auth)
    assert put.status_code == 201, put.get_json()
    assert put.get_json()["email"] == bare
    assert client.get("/v1/accounts/a", headers=auth).get_json()["email"] == bare
    assert stored_email(runtime, "a") == bare


def test_a_dressed_address_and_its_bare_mailbox_are_one_address(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    client.put("/v1/accounts/a", json={"email": "x@example.org"}, headers=auth)
    again = client.put("/v1/accounts/a", json={"email": "Alice <x@example.org>"}, headers=auth)
    assert again.get_json()["status"] == "unchanged"


@pytest.mark.parametrize("sent", SEVERAL)
def test_put_refuses_a_value_naming_two_mailboxes(
    client: FlaskClient, auth: dict[str, str], runtime: Runtime, sent: str
) -> None:
    put = client.put("/v1/accounts/a", json={"email": sent}, headers=auth)
    assert put.status_code == 422
    assert put.mimetype == "application/problem+json"
    assert put.get_json()["code"] == "invalid_email"
    assert "more than one address" in put.get_json()["detail"]
    assert stored_email(runtime, "a") is None


def test_batch_stores_bare_mailboxes_and_reports_several_as_invalid(
    client: FlaskClient, auth: dict[str, str], runtime: Runtime
) -> None:
    answer = client.post(
        "/v1/accounts:batch",
        json={
            "accounts": [
                {"external_id": "b1", "email": "Alice <b1@example.org>"},
                {"external_id": "b2", "email": SEVERAL[0]},
            ]
        },
        headers=auth,
    )
    assert answer.status_code == 200
    statuses = {r["external_id"]: r["status"] for r in answer.get_json()["results"]}
    assert statuses == {"b1": "created", "b2": "invalid"}
    assert stored_email(runtime, "b1") == "b1@example.org"
    assert stored_email(runtime, "b2") is None


def test_import_stores_bare_mailboxes_and_counts_several_as_invalid(
    runtime: Runtime, tmp_path: Path
) -> None:
    csv_path = tmp_path / "accounts.csv"
    with csv_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)  # quotes and commas inside a field are CSV-quoted
        writer.writerow(["external_id", "email"])
        writer.writerows([f"d{n}", sent] for n, sent in enumerate(DRESSED))
        writer.writerows([f"s{n}", sent] for n, sent in enumerate(SEVERAL))
    report = import_accounts(runtime, csv_path)
    assert report.created == len(DRESSED)
    assert report.invalid == len(SEVERAL)
    for n, bare in enumerate(DRESSED.values()):
        assert stored_email(runtime, f"d{n}") == bare
    for n in range(len(SEVERAL)):
        assert stored_email(runtime, f"s{n}") is None
