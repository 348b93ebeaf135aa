"""Security events at a real receiver: an incident gives exactly the expected SETs, each
verifying against /.well-known/jwks.json; a receiver, a worker or Redis that dies loses and
doubles nothing; push and poll give the same SETs. On SQLite and PostgreSQL, real Redis."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from pydantic import SecretStr
from redis import Redis
from sqlalchemy import update

from jobs.context import use_runtime
from jobs.events import EventRelayUnavailable, relay_events
from jobs.ingest.pipeline import ingest_leak
from service.clients import Scope
from service.db import utcnow
from service.email_change.tokens import LinkPurpose
from service.events.discovery import JWKS_PATH
from service.events.outbox import QUEUED_TIMEOUT, SEND_LEASE, claim_events, release_stale
from service.events.types import EventType
from service.leaks.retract import retract_leak
from service.models import SecurityEvent
from service.runtime import Runtime, build_runtime
from service.stepup.services import Method, Refused
from tests.support.cli import cli_env, invoke, json_output, output, run_leakguard, start_leakguard
from tests.support.email_change import assurance_token, link_token
from tests.support.events import (
    AUDIENCE,
    ISSUER,
    PUSH_TOKEN,
    by_account,
    event_rows,
    move_time_forward,
    payload,
    poll_all,
    push,
    push_until_settled,
    serve_app,
    short,
)
from tests.support.factories import make_account, make_api_key
from tests.support.http import bearer
from tests.support.leakfiles import write_lines
from tests.support.processes import kill_session, wait_for
from tests.support.receiver import Receiver

pytestmark = pytest.mark.redis

SLUG = "combo-2026"


@dataclass(frozen=True, slots=True)
class Transmitter:
    runtime: Runtime
    app: Flask
    client: FlaskClient
    base_url: str
    receiver: Receiver

    @property
    def jwks_url(self) -> str:
        return self.base_url + JWKS_PATH


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    value = Receiver(
        tmp_path / "receiver",
        jwks_url="http://127.0.0.1:9/not-yet",
        issuer=ISSUER,
        audience=AUDIENCE,
        token=PUSH_TOKEN,
    )
    value.reserve_port()
    yield value
    value.stop()


@pytest.fixture
def transmitter(runtime: Runtime, make_app: Any, receiver: Receiver) -> Iterator[Transmitter]:
    """Leakguard pushing to ``receiver`` and offering poll, its app served over HTTP."""
    settings = runtime.settings.model_copy(
        update={
            "events_push_url": receiver.url,
            "events_push_token": SecretStr(PUSH_TOKEN),
            "events_poll": True,
            "events_issuer": ISSUER,
            "events_audience": AUDIENCE,
            "events_revoke_sessions": True,
            "events_poll_wait_seconds": 0.0,
        }
    )
    value = build_runtime(settings)
    use_runtime(value)
    app = make_app(settings)
    with serve_app(app) as base_url:
        receiver.jwks_url = base_url + JWKS_PATH
        receiver.start()
        yield Transmitter(value, app, app.test_client(), base_url, receiver)
    value.db.dispose()


def ingest_combo(rt: Runtime, tmp_path: Path, lines: list[str], slug: str = SLUG) -> None:
    report = ingest_leak(rt, write_lines(tmp_path / f"{slug}.txt", lines), slug=slug)
    assert report.run.matched >= 1


def lock(rt: Runtime, external_id: str) -> None:
    """Ten wrong TOTP codes: the method locks (throttle.ThrottlePolicy.method_failures)."""
    outcome = None
    for _ in range(10):
        with rt.db.transaction() as session:
            outcome = rt.step_up.verify(
                session, external_id, Method.TOTP, "000000", actor="test", now=utcnow()
            )
    assert isinstance(outcome, Refused)
    assert outcome.locked is not None


def request_change(t: Transmitter, external_id: str, email: str) -> str:
    """The login service asks, after a passed step-up, through the API; the request's id."""
    answer = t.client.post(
        f"/v1/accounts/{external_id}/email-change",
        json={"new_email": email, "assurance_token": assurance_token(t.runtime, external_id)},
        headers=bearer(make_api_key(t.runtime, Scope.EMAIL_CHANGE_WRITE)),
    )
    assert answer.status_code == 202, answer.get_data(as_text=True)
    return str(answer.get_json()["request_id"])


def follow_link(t: Transmitter, request_id: str, purpose: LinkPurpose) -> None:
    """The token of the message's link, posted as a login service hosting its pages does."""
    answer = t.client.post(
        f"/v1/email-change/{purpose.value}",
        json={"token": link_token(t.runtime, request_id, purpose)},
        headers=bearer(make_api_key(t.runtime, Scope.EMAIL_CHANGE_WRITE)),
    )
    assert answer.status_code == 200, answer.get_data(as_text=True)


def received(t: Transmitter) -> list[tuple[str, dict[str, Any]]]:
    return [(r.event_type, r.claims or {}) for r in t.receiver.accepted()]


def test_an_incident_gives_exactly_the_expected_events_by_push_and_by_poll(
    transmitter: Transmitter, redis_url: str, tmp_path: Path
) -> None:
    t, rt = transmitter, transmitter.runtime
    make_account(rt, "alice", "alice@example.org")
    make_account(rt, "dave", "dave@example.org")
    make_account(rt, "carol", "carol@example.org")
    make_account(rt, "erin", "erin@example.org")
    ingest_combo(
        rt,
        tmp_path,
        [
            "alice@example.org:hunter2",
            "dave@example.org:letmein",
            "erin@example.org:qwerty",
            "x@elsewhere.example:pw",
        ],
    )
    push_until_settled(rt, redis_url)
    # Two email changes the login service did not make: one confirmed, one reverted.
    follow_link(t, request_change(t, "alice", "alice.new@example.org"), LinkPurpose.CONFIRM)
    erin = request_change(t, "erin", "erin.new@example.org")
    follow_link(t, erin, LinkPurpose.CONFIRM)
    follow_link(t, erin, LinkPurpose.REVERT)  # the old mailbox undoes it
    lock(rt, "dave")
    push_until_settled(rt, redis_url)
    with rt.db.transaction() as session:
        assert rt.step_up.unlock(session, "dave", actor="support", now=utcnow())
    retract_leak(rt.db, SLUG, reason="wrong file", actor="ops", now=utcnow())
    push_until_settled(rt, redis_url)

    flagged = ["risk-level-change:HIGH", "credential-compromise", "session-revoked"]
    moved = ["identifier-changed", "session-revoked", "risk-level-change:LOW"]
    assert by_account(received(t)) == {
        "alice": [*flagged, *moved],
        "dave": [*flagged, "account-disabled", "account-enabled", "risk-level-change:LOW"],
        # Back at the leaked address: flagged again, for the address alone (its password
        # may have changed since), then the leak's retraction.
        "erin": [
            *flagged,
            *moved,
            "identifier-changed",
            "session-revoked",
            "risk-level-change:MEDIUM",
            "session-revoked",
            "risk-level-change:LOW",
        ],
    }
    assert t.receiver.doubles() == []
    assert [r for r in t.receiver.received() if r.outcome != "accepted"] == []
    new_values = [
        payload(c)["new-value"] for e, c in received(t) if short(e) == "identifier-changed"
    ]
    assert new_values == ["alice.new@example.org", "erin.new@example.org", "erin@example.org"]
    for event_type, claims in received(t):
        assert claims["sub_id"]["format"] == "opaque"
        if short(event_type) != "identifier-changed":
            assert "@" not in json.dumps(claims)  # no address in clear
    lowered = [c for e, c in received(t) if short(e) == "risk-level-change"][-1]
    assert next(iter(lowered["events"].values()))["risk_reason"] == "retracted"
    raised = next(c for e, c in received(t) if short(e) == "risk-level-change")
    assert next(iter(raised["events"].values()))["risk_reason"] == f"leak:{SLUG}"
    # The lock's own end was scheduled, then cancelled by support's unlock.
    push_rows = event_rows(rt, "push")
    assert {r.state for r in push_rows} == {"delivered", "cancelled"}
    assert [short(r.event_type) for r in push_rows if r.state == "cancelled"] == ["account-enabled"]

    polled = poll_all(t.client, bearer(make_api_key(rt)), t.jwks_url)
    pushed = [claims for _, claims in received(t)]
    assert polled == pushed  # the same SETs, in the same order, claim for claim


def test_email_only_leak_is_medium_and_a_later_password_raises_it(
    transmitter: Transmitter, redis_url: str, tmp_path: Path
) -> None:
    t, rt = transmitter, transmitter.runtime
    make_account(rt, "bob", "bob@example.org")
    ingest_combo(rt, tmp_path, ["bob@example.org"], slug="newsletter")
    ingest_combo(rt, tmp_path, ["bob@example.org", "y@x.example"], slug="forum-dump")  # MEDIUM
    ingest_combo(rt, tmp_path, ["bob@example.org:secret"], slug="combo")
    push_until_settled(rt, redis_url)
    assert by_account(received(t)) == {
        "bob": [
            "risk-level-change:MEDIUM",
            "session-revoked",
            "risk-level-change:HIGH",
            "credential-compromise",
            "session-revoked",
        ]
    }
    levels = [
        next(iter(c["events"].values())) for e, c in received(t) if short(e) == "risk-level-change"
    ]
    assert [(p["previous_level"], p["risk_reason"]) for p in levels] == [
        ("LOW", "leak:newsletter"),
        ("MEDIUM", "leak:combo"),
    ]


def test_a_lock_ends_on_its_own_time_and_locks_in_a_row_make_one_pair(
    transmitter: Transmitter, redis_url: str
) -> None:
    t, rt = transmitter, transmitter.runtime
    make_account(rt, "erin", "erin@example.org")
    lock(rt, "erin")
    push_until_settled(rt, redis_url)
    assert by_account(received(t)) == {"erin": ["account-disabled"]}  # its end is to come
    # A second method locked meanwhile: still one disabled; its end moves to the later one.
    for _ in range(10):
        with rt.db.transaction() as session:
            rt.step_up.verify(
                session, "erin", Method.RECOVERY_CODE, "wrong", actor="test", now=utcnow()
            )
    push_until_settled(rt, redis_url)
    assert by_account(received(t)) == {"erin": ["account-disabled"]}
    move_time_forward(rt, scheduled=True)
    push_until_settled(rt, redis_url)
    assert by_account(received(t)) == {"erin": ["account-disabled", "account-enabled"]}
    assert t.receiver.doubles() == []


def flag_many(rt: Runtime, tmp_path: Path, count: int) -> list[str]:
    ids = [f"member-{i}" for i in range(count)]
    for external_id in ids:
        make_account(rt, external_id, f"{external_id}@example.org")
    ingest_combo(rt, tmp_path, [f"{i}@example.org" for i in ids], slug="mass-mail")
    return ids


def assert_each_once_in_order(t: Transmitter) -> None:
    """Every push row delivered, each jti accepted once, in id order per account."""
    rows = event_rows(t.runtime, "push")
    assert {r.state for r in rows} == {"delivered"}
    accepted = t.receiver.accepted()
    assert sorted(r.jti or "" for r in accepted) == sorted(r.jti for r in rows)
    assert t.receiver.doubles() == []
    order: dict[str, list[str]] = {}
    for r in accepted:
        order.setdefault(r.subject, []).append(r.jti or "")
    expected: dict[str, list[str]] = {}
    for row in rows:
        expected.setdefault(row.external_id, []).append(row.jti)
    assert order == expected


def test_receiver_down_for_a_while_then_up_loses_and_doubles_nothing(
    transmitter: Transmitter, redis_url: str, tmp_path: Path
) -> None:
    t, rt = transmitter, transmitter.runtime
    flag_many(rt, tmp_path, 6)
    t.receiver.stop()
    push(rt, redis_url)
    push(rt, redis_url)  # a second relay: everything waits for its backoff
    rows = event_rows(rt, "push")
    assert {r.state for r in rows} == {"pending"}
    assert any(r.attempts == 1 and "no answer" in (r.last_error or "") for r in rows)
    metrics = bearer(make_api_key(rt, Scope.METRICS_READ))
    assert scraped(t, metrics, "leakguard_security_events_retrying") > 0
    t.receiver.start()
    t.receiver.set_mode(status=503, count=3)  # back, but failing a while
    push_until_settled(rt, redis_url)
    assert_each_once_in_order(t)
    assert len(t.receiver.accepted()) == 12  # risk-level-change and session-revoked each
    assert scraped(t, metrics, "leakguard_security_events_retrying") == 0
    delivered = 'leakguard_security_events{receiver="push",state="delivered"}'
    assert scraped(t, metrics, delivered) == 12


def scraped(t: Transmitter, headers: dict[str, str], sample: str) -> float:
    """One sample of GET /metrics, by its name and labels as exposed."""
    text = t.client.get("/metrics", headers=headers).get_data(as_text=True)
    values = [line.rsplit(" ", 1)[1] for line in text.splitlines() if line.startswith(sample + " ")]
    assert len(values) == 1, (sample, text)
    return float(values[0])


def test_a_worker_killed_mid_job_or_a_job_lost_with_redis_loses_nothing(
    transmitter: Transmitter, redis_url: str, tmp_path: Path
) -> None:
    t, rt = transmitter, transmitter.runtime
    flag_many(rt, tmp_path, 4)
    ids = [r.id for r in event_rows(rt, "push")]
    # A worker claimed half the rows, then died before sending (no outcome recorded).
    with rt.db.transaction() as session:
        assert claim_events(session, ids[:4], now=utcnow())
    # The relay queued the rest, then Redis lost the jobs.
    connection = Redis.from_url(redis_url)
    relay_events(rt, connection)
    connection.flushdb()
    connection.close()
    assert push(rt, redis_url) == 0  # held: in a dead worker's hands, or queued
    with rt.db.transaction() as session:
        session.execute(
            update(SecurityEvent).values(
                lease_until=utcnow() - timedelta(seconds=1),
                queued_at=utcnow() - QUEUED_TIMEOUT - timedelta(seconds=1),
            )
        )
    push_until_settled(rt, redis_url)
    assert_each_once_in_order(t)


def test_a_400_with_an_ssf_error_drops_the_event_and_the_rest_goes_on(
    transmitter: Transmitter, redis_url: str, tmp_path: Path
) -> None:
    t, rt = transmitter, transmitter.runtime
    make_account(rt, "alice", "alice@example.org")
    t.receiver.set_mode(refuse=EventType.CREDENTIAL_COMPROMISE.value)
    ingest_combo(rt, tmp_path, ["alice@example.org:hunter2"])
    push_until_settled(rt, redis_url)
    assert by_account(received(t)) == {"alice": ["risk-level-change:HIGH", "session-revoked"]}
    dropped = [r for r in event_rows(rt, "push") if r.state == "dropped"]
    assert [short(r.event_type) for r in dropped] == ["credential-compromise"]
    assert dropped[0].last_error == "invalid_request: this receiver takes no such event"
    assert dropped[0].attempts == 1
    runner = t.app.test_cli_runner()
    (listed,) = json_output(invoke(runner, "events", "dropped", "--json"))
    assert listed["jti"] == dropped[0].jti
    assert listed["account"] == "alice"
    assert listed["reason"] == "invalid_request: this receiver takes no such event"
    counts = json_output(invoke(runner, "events", "status", "--json"))
    assert counts["push"] == {"delivered": 2, "dropped": 1}
    assert output(runner, "events", "status").splitlines()[0].startswith("push: 0 pending")


def test_a_refusal_to_retry_holds_back_only_its_account(
    transmitter: Transmitter, redis_url: str, tmp_path: Path
) -> None:
    t, rt = transmitter, transmitter.runtime
    flag_many(rt, tmp_path, 3)
    t.receiver.set_mode(status=401, count=1)  # the first SET only: a token problem
    push(rt, redis_url)
    # The refused account's second event waited; the other accounts got both of theirs.
    got = by_account(received(t))
    assert sorted(len(v) for v in got.values()) == [2, 2]
    push_until_settled(rt, redis_url)
    assert_each_once_in_order(t)


def test_push_sends_the_token_and_the_set_media_type(
    transmitter: Transmitter, redis_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    rt = transmitter.runtime
    receiver.stop()
    wrong = Receiver(
        receiver.directory.parent / "strict",
        jwks_url=transmitter.jwks_url,
        issuer=ISSUER,
        audience=AUDIENCE,
        token="another-token",
    )
    wrong.port = receiver.port
    wrong.start()
    try:
        make_account(rt, "alice", "alice@example.org")
        ingest_combo(rt, tmp_path, ["alice@example.org"])
        push(rt, redis_url)
        assert [r.status for r in wrong.received()] == [401]
        assert {r.state for r in event_rows(rt, "push")} == {"pending"}  # kept, to retry
    finally:
        wrong.stop()


def test_redis_down_at_the_relay_keeps_every_event_pending(
    transmitter: Transmitter, redis_url: str, tmp_path: Path
) -> None:
    t, rt = transmitter, transmitter.runtime
    flag_many(rt, tmp_path, 2)
    unreachable = Redis.from_url("redis://127.0.0.1:9/0", socket_connect_timeout=1)
    with pytest.raises(EventRelayUnavailable):
        relay_events(rt, unreachable)
    assert {r.state for r in event_rows(rt, "push")} == {"pending"}
    push_until_settled(rt, redis_url)
    assert_each_once_in_order(t)


KILL_ACCOUNTS = 60  # two SETs each
RECEIVER_DELAY = 0.05  # seconds per SET: the push takes a few seconds


def test_a_worker_process_killed_mid_push_loses_nothing_and_doubles_at_most_one(
    transmitter: Transmitter, redis_url: str, db_url: str, tmp_path: Path
) -> None:
    t, rt = transmitter, transmitter.runtime
    flag_many(rt, tmp_path, KILL_ACCOUNTS)
    t.receiver.set_mode(delay=RECEIVER_DELAY)
    env = cli_env(
        db_url,
        rt.settings.instance_dir,
        LEAKGUARD_REDIS_URL=redis_url,
        LEAKGUARD_EVENTS_PUSH_URL=t.receiver.url,
        LEAKGUARD_EVENTS_PUSH_TOKEN=PUSH_TOKEN,
        LEAKGUARD_EVENTS_POLL="true",
        LEAKGUARD_EVENTS_ISSUER=ISSUER,
        LEAKGUARD_EVENTS_AUDIENCE=AUDIENCE,
        LEAKGUARD_EVENTS_REVOKE_SESSIONS="true",
    )
    log_path = tmp_path / "worker.log"
    worker = start_leakguard(env, "worker", log=log_path, cwd=tmp_path)
    try:
        wait_for(lambda: len(t.receiver.accepted()) >= 20, timeout=60, what="the push under way")
    finally:
        kill_session(worker.pid)  # the whole session: the work horse too
        worker.wait(timeout=10)
    assert "Traceback" not in log_path.read_text()
    sending = [r for r in event_rows(rt, "push") if r.state == "sending"]
    assert sending, "the kill did not land mid-job"
    assert len(t.receiver.accepted()) < 2 * KILL_ACCOUNTS

    # The dead worker's lease runs out; another worker takes its rows back and finishes.
    with rt.db.transaction() as session:
        assert release_stale(session, now=utcnow() + SEND_LEASE + timedelta(seconds=1)) == len(
            sending
        )
    t.receiver.set_mode()
    finisher = run_leakguard(env, "worker", "--burst", cwd=tmp_path)
    assert finisher.returncode == 0, finisher.stderr
    rows = event_rows(rt, "push")
    assert {r.state for r in rows} == {"delivered"}
    assert sorted(r.jti or "" for r in t.receiver.accepted()) == sorted(r.jti for r in rows)
    # The documented window (service/events/outbox.py): the one SET accepted at the kill
    # and not yet recorded goes out again.
    assert len(t.receiver.doubles()) <= 1
