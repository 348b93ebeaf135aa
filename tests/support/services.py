"""The real PostgreSQL and Redis of a test run: each run claims a database of its own.

Without a reachable service its tests are skipped with a visible reason, except under
CI=true, where its absence fails the run.
"""

from __future__ import annotations

import os
import socket
from typing import NoReturn

import psycopg
import pytest
import redis

PG_ADMIN_URL = os.environ.get("LEAKGUARD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_SERVER_URL = os.environ.get("LEAKGUARD_TEST_REDIS_SERVER", "redis://127.0.0.1:6379")
REDIS_CLAIM_TTL_SECONDS = 6 * 3600  # longer than any run; a crashed run's claim lapses
REDIS_OWNER_KEY = "leakguard:test-run-owner"  # inside a claimed database: "a test run's"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def service_missing(what: str, reason: str) -> NoReturn:
    """Skip, or fail under CI: CI must never pass by skipping the real services."""
    if IN_CI:
        pytest.fail(f"{what} is required under CI=true: {reason}")
    pytest.skip(f"{what} not reachable ({reason}); its tests are skipped")


# --- PostgreSQL ------------------------------------------------------------------------


def create_postgres_database(name: str) -> str:
    """Create the empty database ``name`` (dropping a leftover one); return its SQLAlchemy URL."""
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        service_missing("PostgreSQL", str(exc).splitlines()[0])
    with admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    return f"{base}/{name}"


def drop_postgres_database(name: str) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- Redis -------------------------------------------------------------------------------


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
        claim = redis_claim_key(number)
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


def redis_claim_key(number: int) -> str:
    return f"leakguard:test-run:db{number}"


def connect_redis_admin() -> redis.Redis:
    """Database 0 of the Redis server, where the claims are; skip (or fail) if unreachable."""
    admin = redis.Redis.from_url(f"{REDIS_SERVER_URL}/0", socket_connect_timeout=3)
    try:
        admin.ping()
    except redis.RedisError as exc:
        service_missing("Redis", str(exc).splitlines()[0])
    return admin


def release_redis_database(admin: redis.Redis, number: int) -> None:
    """Empty a claimed database and give up the claim."""
    with redis.Redis.from_url(f"{REDIS_SERVER_URL}/{number}") as database:
        database.flushdb()
    admin.delete(redis_claim_key(number))


def reset_redis_database(url: str) -> redis.Redis:
    """Empty the run's own database, keeping its owner key; return a connection to it."""
    connection = redis.Redis.from_url(url, socket_connect_timeout=3)
    try:
        connection.flushdb()
        connection.set(REDIS_OWNER_KEY, "pytest")
    except redis.RedisError as exc:
        service_missing("Redis", str(exc).splitlines()[0])
    return connection
