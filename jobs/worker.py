"""The life of a ``leakguard worker``: relay the outbox, run queued jobs, stop cleanly.

With a real Redis, a worker forks a work horse per job (rq) while a thread relays due
notices every few seconds; a burst worker relays before each burst, and bursts again while
the jobs it ran (a leak's parts) left warnings to relay. On the embedded default the queue
lives in this process, so a worker can only run in burst mode: relay, deliver, repeat until
nothing is due.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from redis.exceptions import RedisError

from jobs.context import use_runtime
from jobs.deliver import (
    DrainReport,
    RelayThread,
    RelayUnavailable,
    drain_outbox,
    relay_notices,
)
from jobs.events import relay_events
from jobs.queues import ALL_QUEUES, QueueName, make_worker, redis_connection, uses_fake_redis
from service.errors import JobError
from service.runtime import Runtime


class NeedsRedis(JobError):
    """A long-running worker was asked for without a Redis to share."""


def run_worker(
    runtime: Runtime, queues: Sequence[QueueName] = ALL_QUEUES, *, burst: bool
) -> DrainReport | None:
    """Work the ``queues`` (in priority order) until stopped, or until empty with ``burst``.

    Returns what became of the notices relayed and delivered in process on the embedded
    default (delivered, failed, retrying), None otherwise.
    Raises NeedsRedis for a long-running worker without LEAKGUARD_REDIS_URL, and
    RelayUnavailable when the first relay cannot reach Redis.
    """
    settings = runtime.settings
    names = tuple(queues) or ALL_QUEUES
    if uses_fake_redis(settings) and not burst:
        raise NeedsRedis(
            "without LEAKGUARD_REDIS_URL the queue lives inside one process: "
            "use --burst, or set LEAKGUARD_REDIS_URL to share a Redis with other processes"
        )
    use_runtime(runtime)
    connection = redis_connection(settings)
    if uses_fake_redis(settings):
        return drain_outbox(runtime, connection, lambda: make_worker(settings, connection, names))
    # rq forks a work horse per job. A pooled database connection must not cross the fork:
    # the horse and this process's relay thread would talk over one socket at once, and a
    # horse's commit could be lost (SQLAlchemy: "Using Connection Pools with os.fork()").
    os.register_at_fork(after_in_child=lambda: runtime.db.engine.dispose(close=False))
    try:
        # Asked first: with nothing due the relay never touches Redis, and rq's first
        # command then died with a traceback instead of this one line.
        connection.ping()
    except RedisError as exc:
        raise RelayUnavailable(f"the queue is unreachable: {exc}") from None
    relay_notices(runtime, connection)
    relay_events(runtime, connection)
    relay = None if burst else RelayThread(runtime, connection)
    if relay is not None:
        relay.start()
    try:
        while True:
            worker = make_worker(settings, connection, names)
            # rq sets its loggers to INFO when imported: hold them to LEAKGUARD_LOG_LEVEL
            # like every other line, or each burst prints a dozen lines at the default.
            worker.work(burst=burst, with_scheduler=not burst, logging_level=settings.log_level)
            # A burst ends once the queues are empty, but the jobs it ran (a leak's parts)
            # may have queued warnings after its first relay: relay again and work those
            # too, until a relay finds nothing (or the worker was told to stop).
            if not burst or getattr(worker, "_shutdown_requested_date", None) is not None:
                break
            if not relay_notices(runtime, connection) and not relay_events(runtime, connection):
                break
    finally:
        if relay is not None:
            relay.stopping.set()
    return None
