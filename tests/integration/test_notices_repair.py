"""`leakguard notices failed | retry | cancel`: failed warnings seen and repaired without SQL.

On SQLite and PostgreSQL, through the command group on the test's app. Failures are
recorded by the product's own ``record_failure``, as a worker records them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskCliRunner
from redis import Redis
from sqlalchemy import select

from jobs.queues import QueueName, get_queue
from service.db import utcnow
from service.models import Account, AuditEvent, Leak, Notice, NoticeState
from service.notices.outbox import claim_notices, record_failure
from service.runtime import Runtime
from tests.support.cli import invoke, json_output, one_error_line, output
from tests.support.factories import flag_accounts

LEAK = "exchange-2019"


def fail(runtime: Runtime, count: int) -> list[int]:
    """Fail the first ``count`` warnings for good, as a worker records a 550 quoting the
    address: claimed (one attempt), then refused."""
    with runtime.db.transaction() as session:
        ids = session.scalars(select(Notice.id).order_by(Notice.id).limit(count)).all()
        claim_notices(session, ids, now=utcnow())
    with runtime.db.transaction() as session:
        rows = session.execute(
            select(Notice.id, Account.email)
            .join(Account, Account.id == Notice.account_id)
            .order_by(Notice.id)
            .limit(count)
        ).all()
        for notice_id, email in rows:
            record_failure(
                session,
                notice_id,
                permanent=True,
                code=550,
                error=f"5.1.1 <{email}>: Recipient address rejected",
                attempts=1,
                now=utcnow(),
            )
    return [notice_id for notice_id, _ in rows]


def states(runtime: Runtime) -> dict[int, str]:
    with runtime.db.read_session() as session:
        return {row.id: str(row.state) for row in session.execute(select(Notice.id, Notice.state))}


def test_failed_lists_id_masked_address_reason_attempts_and_when(
    runtime: Runtime, runner: FlaskCliRunner, tmp_path: Path
) -> None:
    flagged = flag_accounts(runtime, tmp_path, 3, prefix="m")
    failed = fail(runtime, 2)

    rows = json_output(invoke(runner, "notices", "failed", "--leak", LEAK, "--json"))
    assert [row["id"] for row in rows] == failed
    first = rows[0]
    assert first["address"] == "M***@Example.com"  # m-0000's address, masked
    assert first["reason"] == "5.1.1 <M***@Example.com>: Recipient address rejected"
    assert (first["reply_code"], first["attempts"]) == (550, 1)
    assert first["failed_at"].startswith(f"{utcnow():%Y-%m-%d}")

    text = output(runner, "notices", "failed", "--leak", LEAK)
    assert text.startswith(f"2 failed warnings for {LEAK}:\n")
    assert str(failed[1]) in text
    for address in flagged.values():  # stored and shown masked only
        assert address not in text
        assert address.lower() not in text
    with runtime.db.read_session() as session:
        stored = session.scalars(select(Notice.last_error).where(Notice.id.in_(failed))).all()
    assert all("***@" in error for error in stored if error)


def test_retry_puts_failed_warnings_back_and_clears_their_backoff(
    runtime: Runtime, runner: FlaskCliRunner, tmp_path: Path
) -> None:
    flag_accounts(runtime, tmp_path, 3, prefix="m")
    failed = fail(runtime, 2)

    one = output(runner, "notices", "retry", "--leak", LEAK, "--ids", f"{failed[0]},999999")
    assert one.splitlines()[0] == (
        f"1 failed warnings of {LEAK} are pending again; "
        f"not a failed warning of {LEAK}, left alone: 999999"
    )
    assert "leakguard worker --burst" in one  # the embedded default: no Redis to relay to
    assert states(runtime)[failed[0]] == "pending"
    assert states(runtime)[failed[1]] == "failed"
    with runtime.db.read_session() as session:
        notice = session.get(Notice, failed[0])
        assert notice is not None
        assert (notice.attempts, notice.not_before, notice.failed_at) == (0, None, None)
        account = session.get(Account, notice.account_id)
        assert account is not None
        assert account.undeliverable_at is None  # the operator says: not the address's fault

    rest = output(runner, "notices", "retry", "--leak", LEAK)
    assert rest.splitlines()[0] == f"1 failed warnings of {LEAK} are pending again"
    assert set(states(runtime).values()) == {"pending"}
    with runtime.db.read_session() as session:
        actions = session.scalars(select(AuditEvent.action)).all()
    assert actions.count("campaign.retried") == 2

    # A malformed --ids is a usage error, exit 2, as any malformed option value; beyond any
    # id the database holds, or another script's digits: one line, not a traceback.
    for ids in ("12,x", f"12,{2**63}", "12,١٢"):
        bad = invoke(runner, "notices", "retry", "--leak", LEAK, "--ids", ids)
        assert bad.exit_code == 2, ids
        line = one_error_line(bad)
        assert line.startswith(f"Error: --ids takes notice ids like 12,15,40, not {ids!r} (see ")


def test_cancel_stops_every_unsent_warning_and_counts_those_gone_out(
    runtime: Runtime, runner: FlaskCliRunner, tmp_path: Path
) -> None:
    flag_accounts(runtime, tmp_path, 4, prefix="m")
    failed = fail(runtime, 1)
    with runtime.db.transaction() as session:
        sent = session.scalars(select(Notice).where(Notice.id != failed[0]).limit(1)).one()
        sent.state, sent.sent_at = NoticeState.SENT, utcnow()

    out = output(runner, "notices", "cancel", "--leak", LEAK)
    assert out == (
        f"cancelled 3 unsent warnings of {LEAK}; 1 had already been sent and cannot be unsent\n"
    )
    assert sorted(states(runtime).values()) == ["cancelled"] * 3 + ["sent"]
    status = json_output(invoke(runner, "notices", "status", "--leak", LEAK, "--json"))
    assert (status["cancelled"], status["sent"], status["pending"]) == (3, 1, 0)
    assert output(runner, "notices", "cancel", "--leak", LEAK).startswith(
        f"cancelled 0 unsent warnings of {LEAK}"
    )


def test_retry_refuses_a_retracted_leak_and_unknown_leaks(
    runtime: Runtime, runner: FlaskCliRunner, tmp_path: Path
) -> None:
    flag_accounts(runtime, tmp_path, 2, prefix="m")
    fail(runtime, 1)
    output(runner, "leaks", "retract", LEAK, "--reason", "wrong file")
    with runtime.db.read_session() as session:
        day = session.scalar(select(Leak.retracted_at))
    assert day is not None
    refused = invoke(runner, "notices", "retry", "--leak", LEAK)
    assert one_error_line(refused) == (
        f"Error: leak {LEAK} was retracted on {day:%Y-%m-%d}: its warnings stay cancelled"
    )
    assert set(states(runtime).values()) == {"cancelled"}
    for command in ("failed", "retry", "cancel"):
        result = invoke(runner, "notices", command, "--leak", "no-such-leak")
        assert one_error_line(result) == "Error: no leak named 'no-such-leak'"


@pytest.mark.redis
def test_retry_with_a_redis_relays_the_warnings_as_delivery_does(
    runtime: Runtime, make_app: Callable[..., Flask], redis_url: str, tmp_path: Path
) -> None:
    flag_accounts(runtime, tmp_path, 2, prefix="m")
    failed = fail(runtime, 2)
    runner = make_app(redis_url=redis_url).test_cli_runner()

    out = output(runner, "notices", "retry", "--leak", LEAK)
    assert out == (
        f"2 failed warnings of {LEAK} are pending again\n"
        "relayed 2 notices to the queue for the workers\n"
    )
    assert {states(runtime)[i] for i in failed} == {"queued"}
    connection = Redis.from_url(redis_url)
    try:
        assert get_queue(QueueName.DEFAULT, connection).count == 1  # one job, a batch of 2
    finally:
        connection.close()
