"""The database down is a 503, not a 500 with a traceback per request (security review,
item 8): before, each request answered 500 internal_error and logged a full traceback
(562 log lines for 5 requests), and /readyz took 3.6 s to say 503."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from flask import Flask

from service.app import create_app
from service.config import Settings
from service.runtime import runtime_of
from tests.support.settings import TEST_HASH_KEY, TEST_SECRET_KEY

UNREACHABLE = {
    "postgres": "postgresql+psycopg://postgres@127.0.0.1:1/leakguard",
    "sqlite": "sqlite:////nonexistent-leakguard-dir/sub/leakguard.sqlite3",
}


@pytest.fixture(params=sorted(UNREACHABLE))
def app_without_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Flask]:
    app = create_app(
        Settings(
            database_url=UNREACHABLE[request.param],
            instance_dir=tmp_path / "instance",
            hash_key=TEST_HASH_KEY,
            secret_key=TEST_SECRET_KEY,
        )
    )
    yield app
    runtime_of(app).db.dispose()


REQUESTS = [
    ("post", "/v1/risk/check", {"account_id": "a"}),
    ("get", "/v1/accounts/a", None),
    ("post", "/v1/step-up/verify", {"account_id": "a", "method": "totp", "code": "123456"}),
    ("put", "/v1/accounts/a", {"email": "a@example.org"}),
]


def test_every_request_answers_503_problem_json_with_retry_after_and_no_trace(
    app_without_database: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    client = app_without_database.test_client()
    headers = {"Authorization": "Bearer lgk_anything"}
    with caplog.at_level(logging.WARNING):
        for _ in range(5):
            for method, path, body in REQUESTS:
                answer = getattr(client, method)(path, json=body, headers=headers)
                assert answer.status_code == 503, answer.get_data(as_text=True)
                assert answer.mimetype == "application/problem+json"
                assert answer.get_json()["code"] == "service_unavailable"
                assert answer.headers["Retry-After"] == "5"
                assert "Traceback" not in answer.get_data(as_text=True)
    # One line per kind of failure per minute: 20 failed requests, one line.
    lines = [r for r in caplog.records if r.name.startswith("service.")]
    assert len(lines) == 1, [r.getMessage() for r in lines]
    assert "the database unavailable" in lines[0].getMessage()
    assert not any(r.exc_info for r in caplog.records)


def test_readiness_says_503_within_a_second(app_without_database: Flask) -> None:
    client = app_without_database.test_client()
    started = time.monotonic()
    answer = client.get("/readyz")
    took = time.monotonic() - started
    assert answer.status_code == 503
    assert answer.mimetype == "application/problem+json"
    # The probe's own bound is 1 s; what is checked is that it is bounded at all (not the
    # connect timeout of a pool, nor a hang), with slack for a loaded machine.
    assert took < 5


def test_a_server_on_an_unmigrated_database_answers_503_not_500(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    request: pytest.FixtureRequest,
    postgres_url: str,
) -> None:
    """Reviewed from outside: gunicorn on an empty PostgreSQL database answered every /v1
    request with 500 and two tracebacks."""
    # An empty schema of the run's database, alone on the search path, is a database
    # never migrated: a database of its own took up to a minute to drop under the suite's
    # writes (DROP DATABASE waits for a checkpoint).
    schema = f"unmigrated_{os.getpid()}"
    with psycopg.connect(postgres_url.replace("+psycopg", ""), autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
    request.addfinalizer(lambda: _drop_schema(postgres_url, schema))
    url = f"{postgres_url}?options=-csearch_path%3D{schema}"
    app = create_app(
        Settings(
            database_url=url,
            instance_dir=tmp_path / "instance",
            hash_key=TEST_HASH_KEY,
            secret_key=TEST_SECRET_KEY,
        )
    )
    try:
        with caplog.at_level(logging.WARNING):
            answers = [
                app.test_client().get("/v1/accounts/a", headers={"Authorization": "Bearer k"})
                for _ in range(5)
            ]
        assert [a.status_code for a in answers] == [503] * 5
        assert answers[0].get_json()["detail"] == "the database (not migrated) is unavailable"
        assert not any(r.exc_info for r in caplog.records)
        assert app.test_client().get("/readyz").status_code == 503
    finally:
        runtime_of(app).db.dispose()


def _drop_schema(postgres_url: str, schema: str) -> None:
    with psycopg.connect(postgres_url.replace("+psycopg", ""), autocommit=True) as admin:
        admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
