"""Security events as the tests drive and read them: the app served over real HTTP (for
its JWKS), pushing as the workers do, polling as a receiver does, the outbox read plainly."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from joserfc.jwk import KeySet
from redis import Redis
from rq.registry import FailedJobRegistry
from sqlalchemy import select, update
from werkzeug.serving import make_server

from jobs.events import relay_events
from jobs.queues import QueueName, get_queue
from service.db import utcnow
from service.models import Account, SecurityEvent
from service.runtime import Runtime
from tests.support.delivery import BurstWorker
from tests.support.receiver import fetch_keys, verify_set

ISSUER = "https://leakguard.test"
AUDIENCE = "https://login.example"
PUSH_TOKEN = "push-token-0123456789"


@contextmanager
def serve_app(app: Flask) -> Iterator[str]:
    """Serve ``app`` on a loopback port in a thread; yield its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join()


def push(runtime: Runtime, redis_url: str) -> int:
    """Relay due events to the real Redis and run an rq worker until the queue is empty;
    return how many rows were relayed. A job that raised fails the test."""
    connection = Redis.from_url(redis_url)
    try:
        relayed = relay_events(runtime, connection)
        queue = get_queue(QueueName.HIGH, connection)
        BurstWorker([queue], connection=connection).work(burst=True, logging_level="WARNING")
        assert queue.count == 0
        failed = FailedJobRegistry(queue=queue)
        assert failed.count == 0, failed.get_job_ids()
    finally:
        connection.close()
    return relayed


def push_until_settled(runtime: Runtime, redis_url: str, *, rounds: int = 20) -> None:
    """Push, letting every backoff pass at once, until no push row waits any more."""
    for _ in range(rounds):
        move_time_forward(runtime, scheduled=False)
        push(runtime, redis_url)
        if not waiting_push_rows(runtime):
            return
    raise AssertionError(f"push rows still waiting: {waiting_push_rows(runtime)}")


def move_time_forward(runtime: Runtime, *, scheduled: bool) -> None:
    """Let every backed-off row go now, as if its wait had passed; ``scheduled``: also the
    rows scheduled for later (a lock's end)."""
    condition = SecurityEvent.not_before.is_not(None)
    if not scheduled:
        condition = condition & (SecurityEvent.attempts > 0)
    with runtime.db.transaction() as session:
        session.execute(
            update(SecurityEvent)
            .where(condition)
            .values(not_before=utcnow() - timedelta(seconds=1))
        )


@dataclass(frozen=True, slots=True)
class Row:
    id: int
    external_id: str
    receiver: str
    state: str
    event_type: str
    jti: str
    attempts: int
    last_error: str | None
    claims: dict[str, Any]


def event_rows(runtime: Runtime, receiver: str | None = None) -> list[Row]:
    """Every outbox row, in id order, read with a plain SELECT."""
    with runtime.db.read_session() as session:
        query = (
            select(
                SecurityEvent.id,
                Account.external_id,
                SecurityEvent.receiver,
                SecurityEvent.state,
                SecurityEvent.event_type,
                SecurityEvent.jti,
                SecurityEvent.attempts,
                SecurityEvent.last_error,
                SecurityEvent.claims,
            )
            .join(Account, Account.id == SecurityEvent.account_id)
            .order_by(SecurityEvent.id)
        )
        if receiver is not None:
            query = query.where(SecurityEvent.receiver == receiver)
        rows = session.execute(query).all()
    return [Row(r[0], r[1], str(r[2]), str(r[3]), *r[4:]) for r in rows]


def waiting_push_rows(runtime: Runtime) -> list[Row]:
    return [
        r
        for r in event_rows(runtime, "push")
        if r.state in ("pending", "queued", "sending") and not _scheduled(r)
    ]


def _scheduled(row: Row) -> bool:
    return row.attempts == 0 and row.claims["iat"] > utcnow().timestamp() + 1


def short(event_type: str) -> str:
    """``risk-level-change`` for its URI."""
    return event_type.rsplit("/", 1)[1]


def payload(claims: dict[str, Any]) -> dict[str, Any]:
    value: dict[str, Any] = next(iter(claims["events"].values()))
    return value


def by_account(received: list[tuple[str, dict[str, Any]]]) -> dict[str, list[str]]:
    """external id -> the event types it got, in order (with the level of each risk change)."""
    out: dict[str, list[str]] = {}
    for event_type, claims in received:
        name = short(event_type)
        if name == "risk-level-change":
            name += f":{payload(claims)['current_level']}"
        out.setdefault(claims["sub_id"]["id"], []).append(name)
    return out


def poll_all(client: FlaskClient, headers: dict[str, str], jwks_url: str) -> list[dict[str, Any]]:
    """Poll as a receiver does, acknowledging each batch, until nothing is left; return the
    verified claims in the order received. Fails on a SET seen twice."""
    keys: KeySet = fetch_keys(jwks_url)
    seen: dict[str, dict[str, Any]] = {}
    ack: list[str] = []
    while True:
        response = client.post(
            "/v1/events/poll",
            json={"maxEvents": 3, "returnImmediately": True, "ack": ack},
            headers=headers,
        )
        assert response.status_code == 200, response.get_data(as_text=True)
        body = response.get_json()
        ack = []
        for jti, token in body["sets"].items():
            claims = verify_set(token, keys, issuer=ISSUER, audience=AUDIENCE)
            assert claims["jti"] == jti
            assert jti not in seen, "a SET acknowledged came back"
            seen[jti] = claims
            ack.append(jti)
        if not body["sets"] and not body["moreAvailable"]:
            return list(seen.values())
