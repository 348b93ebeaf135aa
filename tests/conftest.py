"""Shared fixtures: a migrated database per backend, a runtime and an app per test.

Storage tests run on SQLite and on the real PostgreSQL (``db_url`` is parametrized).
Without a reachable PostgreSQL the postgres half is skipped with a visible reason, except
under CI=true, where its absence fails the run.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text

from jobs.context import use_runtime
from service.app import create_app
from service.clients import Scope, create_api_client
from service.config import Settings
from service.db import Base, utcnow
from service.db.migrate import upgrade_database
from service.runtime import Runtime, build_runtime

PG_ADMIN_URL = os.environ.get("LEAKGUARD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
TEST_HASH_KEY = "test-hash-key-0123456789abcdef"
TEST_SECRET_KEY = "test-secret-key-0123456789abcdef"


def service_missing(what: str, reason: str) -> None:
    """Skip, or fail under CI: CI must never pass by skipping the real services."""
    message = f"{what} not reachable ({reason}); its tests are skipped"
    if IN_CI:
        pytest.fail(f"{what} is required under CI=true: {reason}")
    pytest.skip(message)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    name = f"leakguard_test_{os.getpid()}"
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        service_missing("PostgreSQL", str(exc).splitlines()[0])
    with admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    yield f"{base}/{name}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


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


REDIS_SERVER_URL = os.environ.get("LEAKGUARD_TEST_REDIS_SERVER", "redis://127.0.0.1:6379")
REDIS_CLAIM_TTL_SECONDS = 6 * 3600  # longer than any run; a crashed run's claim lapses
REDIS_OWNER_KEY = "leakguard:test-run-owner"  # inside a claimed database: "a test run's"


def claim_redis_database(admin: redis.Redis) -> int:
    """Claim a Redis database that no other run and no other user is on; return its number.

    A claim is a key in database 0 set only if absent (``SET NX``), so two runs starting at
    once never share a database. A database is taken only when it is empty or was left by
    a test run that died (its owner key is there, its claim has lapsed): never one that a
    worker or anything else uses.
    """
    count = int(admin.config_get("databases").get("databases", 16))
    owner = f"{socket.gethostname()}:{os.getpid()}"
    for number in range(1, count):
        claim = f"leakguard:test-run:db{number}"
        if not admin.set(claim, owner, nx=True, ex=REDIS_CLAIM_TTL_SECONDS):
            continue
        database = redis.Redis.from_url(f"{REDIS_SERVER_URL}/{number}")
        with database:
            if database.dbsize() == 0 or database.exists(REDIS_OWNER_KEY):
                database.flushdb()
                database.set(REDIS_OWNER_KEY, owner)
                return number
        admin.delete(claim)
    raise RuntimeError(f"every Redis database on {REDIS_SERVER_URL} is in use")


@pytest.fixture(scope="session")
def redis_database() -> Iterator[str]:
    """The URL of a Redis database of this run's own (LEAKGUARD_TEST_REDIS: a fixed one)."""
    fixed = os.environ.get("LEAKGUARD_TEST_REDIS")
    if fixed:
        yield fixed
        return
    admin = redis.Redis.from_url(f"{REDIS_SERVER_URL}/0", socket_connect_timeout=3)
    try:
        admin.ping()
    except redis.RedisError as exc:
        service_missing("Redis", str(exc).splitlines()[0])
    number = claim_redis_database(admin)
    yield f"{REDIS_SERVER_URL}/{number}"
    with redis.Redis.from_url(f"{REDIS_SERVER_URL}/{number}") as database:
        database.flushdb()
    admin.delete(f"leakguard:test-run:db{number}")
    admin.close()


@pytest.fixture
def redis_url(redis_database: str) -> Iterator[str]:
    """The real Redis, on this run's own database, empty before and after the test."""
    connection = redis.Redis.from_url(redis_database, socket_connect_timeout=3)
    try:
        connection.flushdb()
        connection.set(REDIS_OWNER_KEY, "pytest")
    except redis.RedisError as exc:
        service_missing("Redis", str(exc).splitlines()[0])
    yield redis_database
    connection.flushdb()
    connection.set(REDIS_OWNER_KEY, "pytest")
    connection.close()


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=db_url,
        instance_dir=tmp_path / "instance",
        hash_key=TEST_HASH_KEY,
        secret_key=TEST_SECRET_KEY,
    )


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    """A runtime on the migrated database; every table is emptied after the test.

    Jobs run in this process (an emailed code on the embedded default) use it too.
    """
    value = build_runtime(settings)
    use_runtime(value)
    yield value
    empty_tables(value)
    value.db.dispose()


def empty_tables(value: Runtime) -> None:
    tables = list(reversed(Base.metadata.sorted_tables))
    with value.db.engine.begin() as connection:
        if value.db.is_postgres:
            names = ", ".join(f'"{table.name}"' for table in tables)
            connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                connection.execute(table.delete())


@pytest.fixture
def app(runtime: Runtime) -> Iterator[Flask]:
    """The app on the same database as ``runtime`` (which empties it afterwards)."""
    flask_app = create_app(runtime.settings)
    flask_app.config["TESTING"] = True
    yield flask_app
    flask_app.extensions["leakguard"].db.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def make_api_key(value: Runtime, *scopes: Scope, name: str | None = None) -> str:
    with value.db.transaction() as session:
        new = create_api_client(
            session,
            name=name or f"client-{secrets.token_hex(4)}",
            scopes=scopes or tuple(Scope),
            actor="test",
            now=utcnow(),
        )
    return new.key


@pytest.fixture
def api_key(runtime: Runtime) -> str:
    """A key with every scope."""
    return make_api_key(runtime)


@pytest.fixture
def auth(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"}
