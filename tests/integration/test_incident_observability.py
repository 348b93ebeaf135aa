"""A whole incident watched as operators watch it (issue 16, items 5 and 6): accounts are
imported, a leak is ingested, the warnings delivered, a person steps up, signs in and moves
the account to a new address.

Scrapes of /metrics during the ingest and after the delivery show the figures move; every
log line of the incident, captured as production writes it (JSON, the mask, the request
id), holds no clear address and no key, code or token.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from jobs.account_import import import_accounts
from jobs.deliver import drain_outbox
from jobs.ingest.pipeline import ingest_leak
from jobs.queues import make_worker, redis_connection
from service.clients import Scope
from service.email_change.tokens import LinkPurpose
from service.logs import JSON, MaskAddresses, make_formatter
from service.runtime import Runtime
from tests.support.delivery import runtime_with
from tests.support.email_change import link_token
from tests.support.factories import make_api_key
from tests.support.http import bearer
from tests.support.leakfiles import ADDRESS, write_accounts_csv, write_lines

ACCOUNTS = {f"inc-{n}": f"Person.{n}@shop-customers.de" for n in range(6)}
STRANGERS = [f"stranger.{n}@elsewhere.net" for n in range(10)]
NEW_ADDRESS = "person.one@new-mailbox.de"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """Every log record of the test, as production's stderr handler writes it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(make_formatter(JSON))
    handler.addFilter(MaskAddresses())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)


def scrape(client: FlaskClient, key: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics", headers=bearer(key))
    assert response.status_code == 200, response.get_data(as_text=True)
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.get_data(as_text=True))
        for sample in family.samples
    }


def value(
    scraped: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return scraped.get((name, tuple(sorted(labels.items()))), 0.0)


def test_incident_moves_the_metrics_and_logs_nothing_in_clear(
    runtime: Runtime,
    make_app: Callable[..., Flask],
    tmp_path: Path,
    captured: io.StringIO,
) -> None:
    folder = runtime_with(
        runtime,
        mail_dir=tmp_path / "mail",
        log_format="json",
        log_level="DEBUG",
        service_name="Shop",
    )
    app = make_app(folder.settings)
    client = app.test_client()
    scraper = make_api_key(folder, Scope.METRICS_READ)
    login = make_api_key(folder, Scope.RISK_CHECK, Scope.STEP_UP_VERIFY, Scope.EMAIL_CHANGE_WRITE)
    before = scrape(client, scraper)

    import_accounts(folder, write_accounts_csv(tmp_path / "accounts.csv", ACCOUNTS))
    leaked = [*ACCOUNTS.values(), *STRANGERS, "not an address", "also@@bad"]
    path = write_lines(tmp_path / "leak.txt", leaked)
    during: list[float] = []

    def watch(_progress: object) -> None:
        # A chunk is committed: a scrape now sees the lines read so far.
        during.append(
            value(scrape(client, scraper), "leakguard_ingest_lines_total", format="lines")
        )

    ingest_leak(
        folder, path, slug="incident", chunk_records=4, on_progress=watch, accept_invalid=True
    )
    after_ingest = scrape(client, scraper)
    total = len(leaked)
    assert value(after_ingest, "leakguard_ingest_lines_total", format="lines") == total
    assert 0 < during[0] < total  # seen moving while the ingest ran
    assert during == sorted(during)
    assert value(after_ingest, "leakguard_ingest_matches_total", format="lines") == len(ACCOUNTS)
    assert value(after_ingest, "leakguard_ingest_invalid_lines_total", format="lines") == 2
    assert value(after_ingest, "leakguard_notices", state="pending") == len(ACCOUNTS)

    connection = redis_connection(folder.settings)
    report = drain_outbox(folder, connection, lambda: make_worker(folder.settings, connection))
    assert report.sent == len(ACCOUNTS)
    delivered = scrape(client, scraper)
    assert value(delivered, "leakguard_notices", state="sent") == len(ACCOUNTS)
    assert value(delivered, "leakguard_notices", state="pending") == 0
    sent = value(delivered, "leakguard_notice_deliveries_total", outcome="sent")
    assert sent - value(before, "leakguard_notice_deliveries_total", outcome="sent") == len(
        ACCOUNTS
    )

    # The person signs in: step up by emailed code, then allowed with the assurance token.
    auth = bearer(login)
    risk = client.post("/v1/risk/check", json={"account_id": "inc-1"}, headers=auth)
    assert risk.get_json()["decision"] == "step_up"
    challenge = client.post(
        "/v1/step-up/challenges", json={"account_id": "inc-1", "method": "email_code"}, headers=auth
    )
    challenge_id = challenge.get_json()["challenge_id"]
    code = folder.step_up.email_code(challenge_id)
    wrong = client.post(
        "/v1/step-up/verify",
        json={
            "account_id": "inc-1",
            "method": "email_code",
            "code": "000000",
            "challenge_id": challenge_id,
        },
        headers=auth,
    )
    assert wrong.status_code == 403
    passed = client.post(
        "/v1/step-up/verify",
        json={
            "account_id": "inc-1",
            "method": "email_code",
            "code": code,
            "challenge_id": challenge_id,
        },
        headers=auth,
    )
    token = passed.get_json()["assurance_token"]
    allowed = client.post(
        "/v1/risk/check", json={"account_id": "inc-1", "assurance_token": token}, headers=auth
    )
    assert allowed.get_json()["decision"] == "allow"
    assert allowed.headers["X-Request-ID"]
    # A path with an address and a query with the token, as a careless caller sends them.
    client.get(f"/v1/accounts/{ACCOUNTS['inc-2']}?assurance_token={token}", headers=auth)
    # With the same step-up the person moves the account off the leaked address.
    requested = client.post(
        "/v1/accounts/inc-1/email-change",
        json={"new_email": NEW_ADDRESS, "assurance_token": token},
        headers=auth,
    )
    assert requested.status_code == 202, requested.get_data(as_text=True)
    assert requested.get_json()["priority"] == "high"
    request_id = requested.get_json()["request_id"]
    report = drain_outbox(folder, connection, lambda: make_worker(folder.settings, connection))
    assert report.sent == 2  # the confirmation to the new mailbox, the alert to the old one
    confirm = link_token(folder, request_id, LinkPurpose.CONFIRM)
    confirmed = client.post("/v1/email-change/confirm", json={"token": confirm}, headers=auth)
    assert confirmed.status_code == 200, confirmed.get_data(as_text=True)
    drain_outbox(folder, connection, lambda: make_worker(folder.settings, connection))
    signed_in = scrape(client, scraper)
    assert value(signed_in, "leakguard_email_changes", state="confirmed") == 1

    def moved(name: str, **labels: str) -> float:
        return value(signed_in, name, **labels) - value(before, name, **labels)

    assert moved("leakguard_risk_decisions_total", decision="step_up", reason="email_exposed") == 1
    assert moved("leakguard_risk_decisions_total", decision="allow", reason="step_up_passed") == 1
    assert (
        moved("leakguard_step_up_verifications_total", method="email_code", outcome="failed") == 1
    )
    assert (
        moved("leakguard_step_up_verifications_total", method="email_code", outcome="passed") == 1
    )
    assert (
        moved(
            "leakguard_http_request_duration_seconds_count",
            endpoint="/v1/risk/check",
            method="POST",
            status="200",
        )
        == 2
    )

    lines = captured.getvalue().splitlines()
    assert lines, "the incident logged nothing: the capture is broken"
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"event", "level", "timestamp"} <= record.keys() for record in records)
    answered = [r for r in records if r["event"].startswith("answered ")]
    assert answered
    assert all(len(r["request_id"]) == 32 for r in answered)
    text = captured.getvalue()
    clear = [match for match in ADDRESS.findall(text) if "***" not in match]
    assert clear == [], clear
    for secret in (scraper, login, code, token, challenge_id, confirm, NEW_ADDRESS):
        assert secret not in text
