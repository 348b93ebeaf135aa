"""A request held up behind a table lock answers 503 in bounded time (security review).

Found from outside: with an operator's `LOCK TABLE account` open on PostgreSQL, a risk check
waited 44 s for it while /readyz said ready, and the login service's sign-in waited too. The
server's statements are now bounded (``LEAKGUARD_DB_REQUEST_TIMEOUT_SECONDS``), lock waits
included; CLI commands and workers, whose statements may rightly run for minutes, are not.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
from flask import Flask
from sqlalchemy import create_engine, text

from service.app import create_app
from service.runtime import Runtime, runtime_of
from tests.support.factories import make_account

# SQLite has no statement timeout (its readers never wait for a lock): PostgreSQL only.
pytestmark = pytest.mark.parametrize(
    "db_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)


def test_a_request_behind_a_table_lock_answers_503_and_the_next_one_200(
    runtime: Runtime,
    make_app: Callable[..., Flask],
    auth: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    make_account(runtime, "waiting")
    client = make_app(db_request_timeout_seconds=0.3).test_client()
    body = {"account_id": "waiting"}
    assert client.post("/v1/risk/check", json=body, headers=auth).status_code == 200
    holder = create_engine(runtime.settings.resolved_database_url)
    try:
        with holder.connect() as connection, connection.begin():
            connection.execute(text("LOCK TABLE account IN ACCESS EXCLUSIVE MODE"))
            with caplog.at_level(logging.WARNING):
                answer = client.post("/v1/risk/check", json=body, headers=auth)
            assert answer.status_code == 503, answer.get_data(as_text=True)
            assert answer.mimetype == "application/problem+json"
            assert answer.headers["Retry-After"] == "5"
            assert answer.get_json()["detail"] == "the database (statement timeout) is unavailable"
            assert "statement timeout" in caplog.text
        # The lock is gone: the pooled connection serves again.
        assert client.post("/v1/risk/check", json=body, headers=auth).status_code == 200
    finally:
        holder.dispose()


@pytest.mark.parametrize(("serving", "expected"), [(True, "5s"), (False, "0")])
def test_only_the_http_server_bounds_its_statements(
    runtime: Runtime, serving: bool, expected: str
) -> None:
    app = create_app(runtime.settings, serving=serving)
    try:
        with runtime_of(app).db.engine.connect() as connection:
            assert connection.scalar(text("SHOW statement_timeout")) == expected
    finally:
        runtime_of(app).db.dispose()
