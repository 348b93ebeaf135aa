"""The in-process worker of the embedded default stops on Ctrl-C without calling into the
fake Redis (found by a split ingest that hung, now and then, after its Ctrl-C)."""

from __future__ import annotations

import signal
import threading

import fakeredis
from rq import Queue
from rq.worker import WorkerStatus

from jobs.queues import EmbeddedWorker


def test_a_ctrl_c_during_a_job_returns_while_the_fake_redis_is_held() -> None:
    server = fakeredis.FakeServer()
    connection = fakeredis.FakeRedis(server=server)
    worker = EmbeddedWorker([Queue("parts", connection=connection)], connection=connection)
    worker.set_state(WorkerStatus.BUSY)  # a part is being ingested
    held, release, let_go = threading.Event(), threading.Event(), threading.Event()

    def hold() -> None:
        # What the worker's own loop holds for the length of each command it sends.
        with server.lock:
            held.set()
            release.wait(30)
        let_go.set()

    holder = threading.Thread(target=hold, daemon=True)
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    holder.start()
    assert held.wait(30)
    try:
        # rq's handler, as the signal would run it (rq leaves it untyped)
        worker.request_stop(signal.SIGINT, None)  # type: ignore[no-untyped-call]
        returned_while_held = not let_go.is_set()
    finally:
        release.set()
        holder.join()
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    assert returned_while_held, "the Ctrl-C handler waited for the fake Redis"
    assert worker._stop_requested
    assert worker._shutdown_requested_date is not None
