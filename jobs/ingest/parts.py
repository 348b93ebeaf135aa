"""Ingest one leak file on many machines: byte-range parts, one rq job each.

``plan_parts`` cuts a plain line-format file into byte ranges and records them; each part
is then ingested by ``ingest_part`` on whichever worker takes it, with the same chunked
commits and resume point as a single-process run, so a worker killed mid-part loses
nothing: the part's job is retried (rq ``Retry``, or ``requeue_stalled_parts`` for a
worker that died without a word) and continues from the part's last commit. Totals are
exact whatever the number of workers: the parts stage their keys in the file's one stage,
which the last part to complete merges into the watch list (counting the file's
duplicates then); the exposures' unique keys decide every race; every counter is added in
the transaction of its chunk or of the merge.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

from redis import Redis
from rq import Retry
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from sqlalchemy import func, select, update

from jobs.context import job_runtime
from jobs.ingest import MAX_PARTS
from jobs.ingest.checks import check_leak_file, leak_elsewhere, refuse_if_elsewhere
from jobs.ingest.lock import ingest_lock, part_is_idle
from jobs.ingest.pipeline import (
    ChunkWriter,
    IngestBusy,
    IngestReport,
    fingerprint_file,
    flag_late_accounts,
    merge_file_keys,
    read_chunks,
)
from jobs.queues import QueueName, get_queue
from jobs.reader.stream import LeakFileError, LeakFormat, open_leak
from service.db import utcnow
from service.leaks.catalogue import LeakFacts
from service.leaks.counters import Counters
from service.leaks.progress import ReadFaults, Target, find_file
from service.models import LeakFile, LeakFileState, LeakPart
from service.runtime import Runtime

log = logging.getLogger(__name__)

PART_QUEUE = QueueName.DEFAULT
PART_BYTES = 64 * 1024 * 1024  # a part per 64 MiB by default: work for many workers
MIN_PARTS = 4
PART_JOB_TIMEOUT = 6 * 3600  # seconds: a 64 MiB part takes about a minute
PART_RETRY = Retry(max=5, interval=[5, 30, 120, 300, 600])
MAX_PATH_CHARS = 1000  # LeakFile.path: where the workers open the file


def stored_path(path: Path) -> str:
    """The file's absolute path, as the workers open it; raise LeakFileError for a path the
    column cannot hold (over MAX_PATH_CHARS characters, or a name that is not UTF-8): the
    file is then moved or renamed, rather than refused by PostgreSQL with a trace."""
    resolved = str(path.resolve())
    if len(resolved) > MAX_PATH_CHARS:
        raise LeakFileError(
            f"the file's absolute path is {len(resolved)} characters long, at most "
            f"{MAX_PATH_CHARS} for --enqueue: move it to a shorter path"
        )
    try:
        resolved.encode("utf-8")
    except UnicodeEncodeError:
        raise LeakFileError(
            "the file's path is not UTF-8 text, which --enqueue stores for the workers: rename it"
        ) from None
    return resolved


@dataclass(frozen=True, slots=True)
class SplitPlan:
    leak: str
    file_id: int
    leak_id: int
    sha256: str
    format: str
    compression: str | None
    parts: int
    pending: tuple[int, ...]  # part ids not yet complete
    before: Counters  # the file's totals before this run, to report only what it adds
    already_ingested: bool = False
    facts_not_applied: tuple[str, ...] = ()  # given for an existing leak, which kept its own


def default_parts(size: int) -> int:
    return max(MIN_PARTS, min(MAX_PARTS, -(-size // PART_BYTES)))


def plan_parts(
    runtime: Runtime,
    path: Path,
    *,
    slug: str,
    name: str | None = None,
    source: str | None = None,
    facts: LeakFacts | None = None,
    fmt: LeakFormat = LeakFormat.AUTO,
    parts: int | None = None,
    accept_invalid: bool = False,
    also_as_new_leak: bool = False,
    operator: str | None = None,
    stop: threading.Event | None = None,
) -> SplitPlan:
    """Record the leak, the file and its parts; return the parts still to ingest.

    Safe to run again: an existing split of the same file is reused as it is. A file that
    cannot be cut (compressed, a mail, UTF-16) becomes one part. Refuses what a
    single-process run refuses, before recording anything (``jobs.ingest.checks``). Raises
    IngestRefused, LeakFileError, or IngestBusy for a file a single-process run has started
    (resume that one instead).
    """
    resolved = stored_path(path)
    digests = fingerprint_file(path, stop=stop)
    sha256 = digests.bytes_sha256
    with open_leak(path, fmt) as reader:
        info = reader.source
        read_as = reader.read_as
        with runtime.db.read_session() as session:
            known = find_file(session, slug=slug, sha256=sha256, read_as=read_as)
            elsewhere = leak_elsewhere(session, slug=slug, digests=digests)
        if known is None:
            if not also_as_new_leak:
                refuse_if_elsewhere(path, elsewhere, slug=slug)
            check_leak_file(
                path, reader, runtime.keys.rules, accept_invalid=accept_invalid, stop=stop
            )
        writer = ChunkWriter(runtime, dry_run=False)
        try:
            opened = writer.open_file(
                slug=slug,
                name=name,
                source=source,
                facts=facts,
                sha256=sha256,
                content_sha256=digests.content_sha256,
                content_prefixes=digests.content_prefixes,
                text_sha256=digests.text_sha256,
                text_prefixes=digests.text_prefixes,
                read_as=read_as,
                info=info,
                path=path,
                operator=operator,
            )
        finally:
            writer.close()
        file_id, done = opened.file_id, opened.records_done
        plan = SplitPlan(
            leak=slug,
            file_id=file_id,
            leak_id=opened.leak_id,
            sha256=sha256,
            format=info.format.value,
            compression=info.compression,
            parts=0,
            pending=(),
            before=Counters(),
            facts_not_applied=opened.facts_not_applied,
        )
        if opened.state is LeakFileState.COMPLETE:
            return replace(plan, already_ingested=True)
        with runtime.db.transaction() as session:
            leak_file = session.scalars(
                select(LeakFile).where(LeakFile.id == file_id).with_for_update()
            ).one()
            if leak_file.parts == 0:
                if done:
                    raise IngestBusy.saying(
                        lambda w: (
                            f"this file was started by a single-process run: {w.resume_single}"
                        )
                    )
                ranges = reader.byte_ranges(parts or default_parts(info.size))
                leak_file.parts = len(ranges)
                leak_file.path = resolved
                leak_file.started_at = utcnow()
                session.add_all(
                    LeakPart(
                        leak_file_id=file_id,
                        seq=seq,
                        first_byte=start,
                        end_byte=end,
                        state=LeakFileState.RUNNING,
                        records_done=0,
                        attempts=0,
                        **Counters().as_dict(),
                    )
                    for seq, (start, end) in enumerate(ranges)
                )
            else:
                if leak_file.path != resolved:
                    leak_file.path = resolved  # the same bytes, moved: follow them
                if leak_file.finished_at is not None:
                    # The last run stopped (a part could not read the file): this is a new
                    # one, timed from now; the wait in between was no work.
                    leak_file.started_at, leak_file.finished_at = utcnow(), None
            session.flush()
            pending = session.scalars(
                select(LeakPart.id)
                .where(LeakPart.leak_file_id == file_id, LeakPart.state != LeakFileState.COMPLETE)
                .order_by(LeakPart.seq)
            ).all()
            before = Counters.of(leak_file)
            return replace(plan, parts=leak_file.parts, pending=tuple(pending), before=before)


def enqueue_parts(runtime: Runtime, part_ids: tuple[int, ...], connection: Redis) -> list[str]:
    """Put one job per part on the queue; job ids carry the attempt, never an address."""
    queue = get_queue(PART_QUEUE, connection)
    with runtime.db.transaction() as session:
        session.execute(
            update(LeakPart).where(LeakPart.id.in_(part_ids)).values(attempts=LeakPart.attempts + 1)
        )
        rows = session.execute(
            select(LeakPart.id, LeakPart.attempts).where(LeakPart.id.in_(part_ids))
        )
        attempts: dict[int, int] = {row.id: row.attempts for row in rows}
    queue.enqueue_many(
        [
            queue.prepare_data(
                ingest_part,
                args=(part_id,),
                job_id=part_job_id(part_id, attempts[part_id]),
                timeout=PART_JOB_TIMEOUT,
                retry=PART_RETRY,
                result_ttl=24 * 3600,
                failure_ttl=7 * 24 * 3600,
            )
            for part_id in part_ids
        ]
    )
    return [part_job_id(part_id, attempts[part_id]) for part_id in part_ids]


def part_job_id(part_id: int, attempt: int) -> str:
    return f"ingest-part-{part_id}-{attempt}"


def ingest_part(part_id: int) -> dict[str, int]:
    """The rq job: ingest one part of a leak file. Returns what this attempt added."""
    return run_part(job_runtime(), part_id).as_dict()


def run_part(runtime: Runtime, part_id: int, *, chunk_records: int | None = None) -> Counters:
    """Ingest the part from its last commit to its end; mark the file complete with its last.

    Idempotent: a complete part does nothing; a part another worker holds does nothing.
    A part that cannot read its file (gone, changed) stops the file's run (stop_split_run)
    and returns: retrying would fail the same way until the operator puts the file back
    and runs the ingest again, which `leakguard leaks show` tells them.
    """
    with runtime.db.read_session() as session:
        row = session.execute(
            select(LeakPart, LeakFile)
            .join(LeakFile, LeakFile.id == LeakPart.leak_file_id)
            .where(LeakPart.id == part_id)
        ).one_or_none()
        if row is None:
            return Counters()
        part, leak_file = row[0], row[1]
    if part.state is LeakFileState.COMPLETE or leak_file.path is None:
        return Counters()
    try:
        with ingest_lock(runtime, leak_file.id, part_id=part_id):
            size = chunk_records or runtime.settings.ingest_chunk_records
            return _ingest_range(runtime, part_id, leak_file, size)
    except IngestBusy:  # only the lock raises it: a second delivery of a running part
        log.info("part %s is being ingested by another worker", part_id)
        return Counters()
    except LeakFileError as exc:
        stop_split_run(runtime, leak_file.id, now=utcnow())
        log.warning(
            "part %s stopped, its file cannot be read (%s): put it back, then run the same "
            "ingest again",
            part_id,
            exc,
        )
        return Counters()


def stop_split_run(runtime: Runtime, file_id: int, *, now: datetime) -> None:
    """End the split file's current run, its time counted as one run; commits.

    ``finished_at`` set on a file still running marks the stop: the file is interrupted
    (``file_is_held``), a wait for its parts ends, and the next ``plan_parts`` starts a new
    run. Idempotent: a second part failing the same way changes nothing.
    """
    with runtime.db.transaction() as session:
        leak_file = session.scalars(
            select(LeakFile).where(LeakFile.id == file_id).with_for_update()
        ).one()
        if leak_file.state is LeakFileState.COMPLETE or leak_file.finished_at is not None:
            return
        _count_run(leak_file, now)
        leak_file.finished_at = now


def _count_run(leak_file: LeakFile, now: datetime) -> None:
    """Add the run from ``started_at`` to ``now`` to the file's runs and time."""
    run = round((now - leak_file.started_at).total_seconds(), 3)
    leak_file.runs += 1
    leak_file.run_seconds = [*(leak_file.run_seconds or []), run]
    leak_file.seconds = sum(leak_file.run_seconds)


def _ingest_range(
    runtime: Runtime, part_id: int, leak_file: LeakFile, chunk_records: int
) -> Counters:
    path = Path(leak_file.path or "")
    with runtime.db.read_session() as session:
        part = session.scalars(select(LeakPart).where(LeakPart.id == part_id)).one()
    if part.state is LeakFileState.COMPLETE:
        return Counters()
    with open_leak(path, LeakFormat(leak_file.format)) as reader:
        if reader.source.size != leak_file.size:
            raise LeakFileError(f"{path}: the file changed since the ingest was planned")
        report = IngestReport(
            leak=str(leak_file.leak_id),
            format=leak_file.format,
            compression=leak_file.compression,
            sha256=leak_file.sha256.hex(),
        )
        batches = reader.batches(
            skip=part.records_done, byte_range=(part.first_byte, part.end_byte)
        )
        writer = ChunkWriter(runtime, dry_run=False)
        try:
            chunks = read_chunks(
                runtime.keys,
                batches,
                chunk_records,
                report.invalid_lines,
                accounts=writer.account_filter(),
                locate_invalid=part.seq == 0,
            )
            writer.run(chunks, Target(leak_file.leak_id, leak_file.id, part_id), report, None)
        finally:
            writer.close()
        # The whole range was read (a resumed part passes over its committed records).
        faults = ReadFaults(reader.long_lines, reader.truncated_at)
    target = Target(leak_file.leak_id, leak_file.id, part_id)
    report.run.add(_complete_part(runtime, target, faults))
    return report.run


def _complete_part(runtime: Runtime, target: Target, faults: ReadFaults) -> Counters:
    """Mark the part complete, and the file with its last part: one writer decides, by lock.

    The part's ``faults`` are added to the file's, once: a part completes in one
    transaction, and a complete part is never read again.

    The last part also merges the file's staged keys into the watch list and then flags the
    late accounts, in the same transaction: a worker killed anywhere in it leaves the part
    incomplete, and its retry does it all again. Returns what that added (the file's
    duplicates, late matches and their notices), counted to this part.
    """
    part_id, file_id = target.part_id, target.file_id
    now = utcnow()
    added = Counters()
    with runtime.db.transaction() as session:
        leak_file = session.scalars(
            select(LeakFile).where(LeakFile.id == file_id).with_for_update()
        ).one()
        session.execute(
            update(LeakPart)
            .where(LeakPart.id == part_id)
            .values(state=LeakFileState.COMPLETE, finished_at=now)
        )
        leak_file.long_lines += faults.long_lines
        if faults.truncated_after_bytes is not None:  # a compressed file is one part
            leak_file.truncated_after_bytes = faults.truncated_after_bytes
        left = session.scalar(
            select(func.count())
            .select_from(LeakPart)
            .where(LeakPart.leak_file_id == file_id, LeakPart.state != LeakFileState.COMPLETE)
        )
        if not left:
            added.add(merge_file_keys(session, target, now=now))
            added.add(flag_late_accounts(session, target, now=now))
            leak_file.state = LeakFileState.COMPLETE
            _count_run(leak_file, now)  # this run's wall time, after any that stopped
            leak_file.finished_at = now
            leak_file.records_done = leak_file.lines
    return added


@dataclass(frozen=True, slots=True)
class SplitProgress:
    parts: int
    complete: int
    totals: Counters
    stopped: bool = False  # a part could not read the file: nothing goes on until a rerun
    faults: ReadFaults = field(default_factory=ReadFaults)  # the complete parts'

    @property
    def done(self) -> bool:
        return self.complete == self.parts


def split_progress(runtime: Runtime, file_id: int) -> SplitProgress:
    with runtime.db.read_session() as session:
        leak_file = session.scalars(select(LeakFile).where(LeakFile.id == file_id)).one()
        complete = session.scalar(
            select(func.count())
            .select_from(LeakPart)
            .where(LeakPart.leak_file_id == file_id, LeakPart.state == LeakFileState.COMPLETE)
        )
        totals = Counters.of(leak_file)
        stopped = leak_file.state is LeakFileState.RUNNING and leak_file.finished_at is not None
    return SplitProgress(
        parts=leak_file.parts,
        complete=int(complete or 0),
        totals=totals,
        stopped=stopped,
        faults=ReadFaults(leak_file.long_lines, leak_file.truncated_after_bytes),
    )


WAITING = frozenset({JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED})


def requeue_stalled_parts(runtime: Runtime, file_id: int, connection: Redis) -> list[int]:
    """Enqueue again the parts whose job is gone, failed for good, or died with its worker.

    A part whose job says "started" but whose lock nobody holds lost its worker (SIGKILL,
    a crashed machine): rq would notice only at its next maintenance, minutes later.
    """
    with runtime.db.read_session() as session:
        parts = session.execute(
            select(LeakPart.id, LeakPart.attempts).where(
                LeakPart.leak_file_id == file_id, LeakPart.state != LeakFileState.COMPLETE
            )
        ).all()
    stalled = []
    for part_id, attempt in parts:
        try:
            job = Job.fetch(part_job_id(part_id, attempt), connection=connection)
            status: JobStatus | None = job.get_status()
        except NoSuchJobError:
            status = None
        if status in WAITING or not part_is_idle(runtime, part_id):
            continue
        if status is JobStatus.STARTED:
            # Started but idle may be a worker between dequeue and lock: look once more.
            time.sleep(0.5)
            if not part_is_idle(runtime, part_id):
                continue
        stalled.append(part_id)
    if stalled:
        enqueue_parts(runtime, tuple(stalled), connection)
    return stalled


def wait_for_parts(
    runtime: Runtime,
    plan: SplitPlan,
    connection: Redis,
    *,
    poll_seconds: float = 2.0,
    on_progress: Callable[[SplitProgress], None] | None = None,
    stop: threading.Event | None = None,
) -> SplitProgress:
    """Wait until every part is complete, re-enqueueing parts whose worker died.

    ``stop``, once set, ends the wait (the parts go on in the workers).
    """
    checked = time.monotonic()
    while True:
        progress = split_progress(runtime, plan.file_id)
        if on_progress is not None:
            on_progress(progress)
        if progress.done or progress.stopped:
            return progress
        if stop is not None and stop.wait(poll_seconds):
            return progress
        if stop is None:
            time.sleep(poll_seconds)
        if time.monotonic() - checked > 5 * poll_seconds:
            requeue_stalled_parts(runtime, plan.file_id, connection)
            checked = time.monotonic()
