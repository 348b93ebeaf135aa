"""A split ingest from the operator's side: plan the parts, enqueue them, wait, report.

``ingest_in_parts`` is what ``leakguard ingest --enqueue`` runs: the parts are ingested by
``leakguard worker``s anywhere (``jobs.ingest.parts``); on the embedded default, whose queue
lives in this process, by a burst worker right here.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis.exceptions import RedisError

from jobs.context import use_runtime
from jobs.ingest.parts import (
    PART_QUEUE,
    SplitProgress,
    enqueue_parts,
    plan_parts,
    wait_for_parts,
)
from jobs.ingest.pipeline import fault_notes
from jobs.queues import make_worker, redis_connection, uses_fake_redis
from jobs.reader.stream import LeakFormat
from service.errors import JobError
from service.leaks.catalogue import LeakFacts
from service.leaks.counters import Counters
from service.leaks.progress import ReadFaults
from service.runtime import Runtime


class QueueUnreachable(JobError):
    """LEAKGUARD_REDIS_URL does not answer: no part can be handed to a worker."""


@dataclass(slots=True)
class SplitReport:
    """What a split run did; ``added`` counts only what this run added to the file."""

    leak: str
    format: str
    compression: str | None
    sha256: str
    parts: int
    enqueued: int = 0
    already_ingested: bool = False
    complete: bool = False
    waited: bool = False
    in_process: bool = False  # the embedded queue: this process ran the parts itself
    added: Counters = field(default_factory=Counters)
    seconds: float = 0.0
    file_unreadable: bool = False  # a part could not read the file: the run stopped
    faults: ReadFaults = field(default_factory=ReadFaults)  # what the parts' readers met
    facts_not_applied: tuple[str, ...] = ()  # given for an existing leak, which kept its own

    def to_json(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "leak": self.leak,
            "format": self.format,
            "compression": self.compression,
            "sha256": self.sha256,
            "parts": self.parts,
            "enqueued": self.enqueued,
            "already_ingested": self.already_ingested,
            "complete": self.complete,
            "facts_not_applied": list(self.facts_not_applied),
        }
        if self.waited or self.already_ingested:
            payload |= self.added.as_dict() | {"seconds": round(self.seconds, 3)}
        if self.waited:
            payload |= {
                "long_lines": self.faults.long_lines,
                "truncated_after_bytes": self.faults.truncated_after_bytes,
            }
        return payload

    def summary(self) -> str:
        if self.already_ingested:
            return f"leak {self.leak}: this file was ingested before; nothing changed"
        if self.file_unreadable:
            return (
                f"leak {self.leak}: stopped after {self.added.lines} records, a part could not "
                "read the file (gone or changed): put it back, then run the same command again "
                "to resume"
            )
        if not self.complete and self.waited and self.in_process:
            return (
                f"leak {self.leak}: interrupted after {self.added.lines} records; run the "
                "same command again to resume"
            )
        if not self.complete and self.waited:
            return (
                f"leak {self.leak}: stopped waiting with {self.added.lines} records done; "
                "parts taken by `leakguard worker`s go on: run the same command again to "
                "follow them and resume the rest"
            )
        if not self.complete:
            return (
                f"leak {self.leak}: {self.enqueued} of {self.parts} parts enqueued for "
                "`leakguard worker`; `leakguard leaks show` follows their progress"
            )
        added = self.added
        return (
            f"leak {self.leak} ({self.format}, {self.parts} parts): "
            f"{added.lines} records, {added.valid} valid, {added.invalid} invalid, "
            f"{added.duplicates} duplicates; {added.matched} accounts flagged, "
            f"{added.notices} warnings queued in {self.seconds:.1f}s"
        ) + fault_notes(self.faults, self.format)


def ingest_in_parts(
    runtime: Runtime,
    path: Path,
    *,
    slug: str,
    name: str | None = None,
    source: str | None = None,
    facts: LeakFacts | None = None,
    fmt: LeakFormat = LeakFormat.AUTO,
    parts: int | None = None,
    wait: bool = True,
    on_progress: Callable[[SplitProgress], None] | None = None,
    accept_invalid: bool = False,
    also_as_new_leak: bool = False,
    operator: str | None = None,
    stop: threading.Event | None = None,
) -> SplitReport:
    """Cut the file into byte-range parts, one rq job each; wait for them unless told not to.

    Safe to run again: a finished file changes nothing, a split run resumes its parts (a
    part whose worker died is enqueued again while waiting). Raises LeakFileError,
    IngestBusy, ValidationFailed (bad slug) or QueueUnreachable (before anything is
    recorded when Redis does not answer at the start; the same command resumes a run whose
    Redis went away later).
    """
    started = time.monotonic()
    connection = redis_connection(runtime.settings)
    with _queue_errors(
        "the queue is unreachable ({}): nothing recorded; start Redis or check "
        "LEAKGUARD_REDIS_URL, then run the same command again"
    ):
        connection.ping()  # asked first: a refusal records nothing, as the checks' do
    plan = plan_parts(
        runtime,
        path,
        slug=slug,
        name=name,
        source=source,
        facts=facts,
        fmt=fmt,
        parts=parts,
        accept_invalid=accept_invalid,
        also_as_new_leak=also_as_new_leak,
        operator=operator,
        stop=stop,
    )
    report = SplitReport(
        leak=slug,
        format=plan.format,
        compression=plan.compression,
        sha256=plan.sha256,
        parts=plan.parts,
        already_ingested=plan.already_ingested,
        complete=plan.already_ingested,
        facts_not_applied=plan.facts_not_applied,
    )
    if plan.already_ingested:
        return report
    with _queue_errors(
        "the queue became unreachable ({}): the parts done are kept; run the same command "
        "again to resume"
    ):
        report.enqueued = len(enqueue_parts(runtime, plan.pending, connection))
        if stop is not None and stop.is_set():
            return report  # stopped before any part ran here: the same command resumes
        if uses_fake_redis(runtime.settings):
            # The embedded queue lives in this process: its worker must too.
            report.in_process = True
            use_runtime(runtime)
            worker = make_worker(runtime.settings, connection, (PART_QUEUE,))
            signals = (signal.SIGINT, signal.SIGTERM)
            handlers = {signum: signal.getsignal(signum) for signum in signals}
            try:
                worker.work(burst=True, logging_level="WARNING")
            finally:
                # rq installs its own handlers (a stop after the current part): put ours back,
                # and pass on a stop it was asked for.
                if threading.current_thread() is threading.main_thread():
                    for signum, handler in handlers.items():
                        if handler is not None:
                            signal.signal(signum, handler)
            if stop is not None and getattr(worker, "_shutdown_requested_date", None) is not None:
                stop.set()  # the parts it finished count; the rest wait for the same command
        elif not wait:
            return report
        done = wait_for_parts(runtime, plan, connection, on_progress=on_progress, stop=stop)
        report.waited = True
        report.complete = done.done
        report.file_unreadable = done.stopped
        report.faults = done.faults
        report.added = done.totals.minus(plan.before)
        report.seconds = time.monotonic() - started
        return report


@contextmanager
def _queue_errors(message: str) -> Iterator[None]:
    """Turn Redis's errors into QueueUnreachable with ``message`` (``{}``: the error)."""
    try:
        yield
    except RedisError as exc:
        raise QueueUnreachable(message.format(exc)) from None
