"""Relaying and delivering notices as the workers do, and the outbox as the tests read it."""

from __future__ import annotations

import dataclasses
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from redis import Redis
from rq import SimpleWorker
from rq.registry import FailedJobRegistry
from sqlalchemy import select, update

from jobs.context import use_runtime
from jobs.deliver import relay_notices
from jobs.queues import QueueName, get_queue
from service.db import utcnow
from service.models import Account, Notice
from service.runtime import Runtime
from tests.support.smtp import SmtpServer

# The settings of ``mail_runtime``: the link a warning carries, the name it signs with.
ACCOUNT_URL = "https://accounts.example.com/settings/email"
SERVICE_NAME = "Example Exchange"


class BurstWorker(SimpleWorker):
    """rq's in-process worker without its command channel, whose thread takes 1 s to stop."""

    def subscribe(self) -> None:
        return None


def runtime_with(runtime: Runtime, **changes: Any) -> Runtime:
    """The test runtime with other settings, on the same database; jobs here use it."""
    value = dataclasses.replace(runtime, settings=runtime.settings.model_copy(update=changes))
    use_runtime(value)
    return value


def deliver(runtime: Runtime, redis_url: str) -> int:
    """Relay due notices to the real Redis and run an rq worker until the queue is empty.

    Returns how many notices were relayed. A delivery job that raised fails the test.
    """
    connection = Redis.from_url(redis_url)
    try:
        relayed = relay_notices(runtime, connection)
        queue = get_queue(QueueName.DEFAULT, connection)
        BurstWorker([queue], connection=connection).work(burst=True, logging_level="WARNING")
        assert queue.count == 0
        failed = FailedJobRegistry(queue=queue)
        assert failed.count == 0, failed.get_job_ids()
    finally:
        connection.close()
    return relayed


def move_time_forward(runtime: Runtime) -> None:
    """Let every backed-off notice go now, as if its wait had passed."""
    with runtime.db.transaction() as session:
        session.execute(
            update(Notice)
            .where(Notice.not_before.is_not(None))
            .values(not_before=utcnow() - timedelta(seconds=1))
        )


@dataclasses.dataclass(frozen=True, slots=True)
class NoticeRow:
    id: int
    state: str
    attempts: int
    reply_code: int | None
    message_id: str | None
    not_before: datetime | None
    queued_at: datetime | None
    undeliverable_at: datetime | None


def notice_rows(runtime: Runtime) -> dict[str, NoticeRow]:
    """external_id -> its one notice, read with a plain SELECT."""
    with runtime.db.read_session() as session:
        rows = session.execute(
            select(
                Account.external_id,
                Notice.id,
                Notice.state,
                Notice.attempts,
                Notice.reply_code,
                Notice.message_id,
                Notice.not_before,
                Notice.queued_at,
                Account.undeliverable_at,
            ).join(Account, Account.id == Notice.account_id)
        ).all()
    by_account = {row[0]: NoticeRow(row[1], str(row[2]), *row[3:]) for row in rows}
    assert len(by_account) == len(rows), "two notices for one account"
    return by_account


def states(runtime: Runtime) -> Counter[str]:
    """How many notices are in each state."""
    return Counter(row.state for row in notice_rows(runtime).values())


def assert_each_once_or_failed(
    runtime: Runtime, server: SmtpServer, flagged: dict[str, str]
) -> Counter[str]:
    """Every flagged account has exactly one accepted message, or a failed notice with its
    reply code and no message; nobody else got anything. Returns the final states."""
    received = server.rcpt_counts()
    rows = notice_rows(runtime)
    assert set(rows) == set(flagged)
    for external_id, email in flagged.items():
        row = rows[external_id]
        if row.state == "sent":
            assert received[email.lower()] == 1, (external_id, received[email.lower()])
        else:
            assert row.state == "failed", (external_id, row)
            assert row.reply_code is not None, (external_id, row)
            assert received[email.lower()] == 0, external_id
    assert sum(received.values()) == sum(1 for row in rows.values() if row.state == "sent")
    return Counter(row.state for row in rows.values())
