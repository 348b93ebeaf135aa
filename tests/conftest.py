"""The fixtures: a migrated database per backend, a runtime, an app and a CLI runner per test.

Storage tests run on SQLite and on the real PostgreSQL (``db_url`` is parametrized).
Without a reachable PostgreSQL the postgres half is skipped with a visible reason, except
under CI=true, where its absence fails the run. Helpers live in ``tests/support/``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy import create_engine

from jobs.context import use_runtime
from service.app import create_app
from service.config import Settings
from service.db.migrate import upgrade_database
from service.runtime import Runtime, build_runtime, runtime_of
from tests.support.db import empty_tables
from tests.support.delivery import ACCOUNT_URL, SERVICE_NAME, runtime_with
from tests.support.factories import make_api_key
from tests.support.http import bearer
from tests.support.services import (
    REDIS_OWNER_KEY,
    REDIS_SERVER_URL,
    claim_redis_database,
    connect_redis_admin,
    create_postgres_database,
    drop_postgres_database,
    release_redis_database,
    reset_redis_database,
)
from tests.support.settings import make_settings
from tests.support.smtp import SmtpServer

# The browser fixtures (playwright, browser), shared by tests/browser and tests/staff.
pytest_plugins = ["tests.support.browser"]

# --- databases -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    name = f"leakguard_test_{os.getpid()}"
    yield create_postgres_database(name)
    drop_postgres_database(name)


@pytest.fixture(
    scope="session", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A database migrated to head, once per session and backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'leakguard.sqlite3'}"
    else:
        url = request.getfixturevalue("postgres_url")
    engine = create_engine(url)
    upgrade_database(engine)
    engine.dispose()
    return url


# --- Redis -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_database() -> Iterator[str]:
    """The URL of a Redis database of this run's own (LEAKGUARD_TEST_REDIS: a fixed one)."""
    fixed = os.environ.get("LEAKGUARD_TEST_REDIS")
    if fixed:
        yield fixed
        return
    admin = connect_redis_admin()
    number = claim_redis_database(admin)
    yield f"{REDIS_SERVER_URL}/{number}"
    release_redis_database(admin, number)
    admin.close()


@pytest.fixture
def redis_url(redis_database: str) -> Iterator[str]:
    """The real Redis, on this run's own database, empty before and after the test."""
    connection = reset_redis_database(redis_database)
    yield redis_database
    connection.flushdb()
    connection.set(REDIS_OWNER_KEY, "pytest")
    connection.close()


# --- the service -----------------------------------------------------------------------------


@pytest.fixture
def settings(db_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Settings]:
    yield make_settings(db_url, tmp_path / "instance")
    if "runtime" not in request.fixturenames:
        # A test of processes alone (a console script, a server) wrote to the database
        # with no runtime to empty it afterwards: the next test must start from nothing.
        engine = create_engine(db_url)
        empty_tables(engine)
        engine.dispose()


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    """A runtime on the migrated database; every table is emptied after the test.

    Jobs run in this process (an emailed code on the embedded default) use it too.
    """
    value = build_runtime(settings)
    use_runtime(value)
    yield value
    empty_tables(value.db.engine)
    value.db.dispose()


@pytest.fixture
def make_app(runtime: Runtime) -> Iterator[Callable[..., Flask]]:
    """Build apps on the test's settings, or on ``settings``, with ``changes`` to them
    (``make_app(max_batch_accounts=3)``); their connections are closed after the test."""
    made: list[Flask] = []

    def make(settings: Settings | None = None, **changes: Any) -> Flask:
        flask_app = create_app((settings or runtime.settings).model_copy(update=changes))
        flask_app.config["TESTING"] = True
        made.append(flask_app)
        return flask_app

    yield make
    for flask_app in made:
        runtime_of(flask_app).db.dispose()


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    """The app on the same database as ``runtime`` (which empties it afterwards)."""
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> FlaskCliRunner:
    """``leakguard`` in this process, on ``app`` (``tests.support.cli.invoke``)."""
    return app.test_cli_runner()


@pytest.fixture
def api_key(runtime: Runtime) -> str:
    """A key with every scope."""
    return make_api_key(runtime)


@pytest.fixture
def auth(api_key: str) -> dict[str, str]:
    return bearer(api_key)


# --- mail ------------------------------------------------------------------------------------


@pytest.fixture
def smtp_server(tmp_path: Path) -> Iterator[SmtpServer]:
    """A running test SMTP server in a process of its own; stopped at the end of the test."""
    server = SmtpServer(tmp_path / "smtp-server")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def mail_runtime(runtime: Runtime, smtp_server: SmtpServer) -> Runtime:
    """The test runtime sending to the test SMTP server, with an account link set."""
    return runtime_with(
        runtime, smtp_url=smtp_server.url, account_url=ACCOUNT_URL, service_name=SERVICE_NAME
    )
