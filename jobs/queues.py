"""rq queues: ``high`` (codes, email change), ``default`` (warnings, ingest parts), ``low``.

With ``LEAKGUARD_REDIS_URL`` unset, the queues live on an in-process fake Redis: jobs are
then run by a burst worker in the same process (``leakguard worker --burst``, or the
command that enqueued them). A separate worker process needs a real Redis.
"""

from __future__ import annotations

import threading
from enum import StrEnum
from typing import Any

import fakeredis
from redis import Redis
from rq import Queue, SimpleWorker, Worker

from service.config import Settings

_fake_server_lock = threading.Lock()
_fake_server: fakeredis.FakeServer | None = None


class QueueName(StrEnum):
    HIGH = "high"
    DEFAULT = "default"
    LOW = "low"


ALL_QUEUES = (QueueName.HIGH, QueueName.DEFAULT, QueueName.LOW)  # in priority order


def uses_fake_redis(settings: Settings) -> bool:
    return settings.redis_url is None


def redis_connection(settings: Settings) -> Redis:
    """Connect to LEAKGUARD_REDIS_URL, or to this process's one fake Redis."""
    global _fake_server
    if settings.redis_url is not None:
        return Redis.from_url(settings.redis_url, socket_timeout=10, socket_connect_timeout=5)
    with _fake_server_lock:
        if _fake_server is None:
            _fake_server = fakeredis.FakeServer()
        return fakeredis.FakeRedis(server=_fake_server)


def get_queue(name: QueueName, connection: Redis) -> Queue:
    return Queue(name.value, connection=connection)


class EmbeddedWorker(SimpleWorker):
    """The in-process worker of the fake Redis, whose Ctrl-C never calls into the fake Redis.

    rq's warm-shutdown handler writes the stop's date to the worker's Redis hash while a
    job runs. The fake Redis serves every command under one non-reentrant lock, and the
    handler runs on the main thread between two of its bytecodes: a Ctrl-C landing while
    the worker's own loop holds that lock (a status write, a dequeue) waited for itself
    forever. The date stays on the worker object, where the stop is read; the hash is for
    tools such as ``rq info``, which cannot see this process's queue anyway.
    """

    def set_shutdown_requested_date(self) -> None:
        return None


def make_worker(
    settings: Settings, connection: Redis, names: tuple[QueueName, ...] = ALL_QUEUES
) -> Worker:
    """A worker on ``names``; in-process (no fork) on the fake Redis, which cannot be shared."""
    queues = [get_queue(name, connection) for name in names]
    worker_class: Any = EmbeddedWorker if uses_fake_redis(settings) else Worker
    worker: Worker = worker_class(queues, connection=connection)
    return worker
