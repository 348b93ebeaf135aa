"""Ingest a leak file: match its addresses to accounts, flag them, queue their warnings.

The file is read once, in order, in chunks of records. Each chunk is one transaction that
appends the chunk's keyed hashes to the file's stage (a table without an index), looks up
the accounts for the few keys that may be theirs, opens exposures with their warnings, and
moves the file's resume point. A run killed at any moment has either committed a chunk
entirely or not at all, so the next run resumes at the last committed record and ends in
exactly the state of one uninterrupted run.

The file's end (a run that read it to its end, or the last of its parts) merges the stage
into the watch list in one sorted pass (``merge_file_keys``), counts the file's duplicates
then, and only then looks for the accounts that got a leaked address during the ingest
(``flag_late_accounts``). Until the merge, a file's ``duplicates`` (its own, its leak's,
and what a run reports) leave out its staged keys, and an account created meanwhile finds
none of them in the watch list: the merge's late-account look flags it. ``lines``,
``valid``, ``invalid``, ``matched``, ``notices`` and the progress (records, matched) are
exact after every chunk.

Reading and canonicalizing (CPU, Python) overlap with the database work and the argon2
hashing of leaked passwords (waiting, outside the GIL): the main thread reads chunk k+1
while a single writer thread commits chunk k. One writer keeps commits in file order.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

from sqlalchemy import select
from sqlalchemy.orm import Session

from jobs.ingest.checks import (
    IngestInterrupted,
    IngestRefused,
    check_leak_file,
    leak_elsewhere,
    refuse_if_elsewhere,
)
from jobs.ingest.lock import IngestBusy, ingest_lock
from jobs.reader.stream import (
    MAX_LINE_BYTES,
    FileDigests,
    LeakFileError,
    LeakFormat,
    LeakSource,
    RecordBatch,
    file_digests,
    open_leak,
    shown_path,
)
from service.addresses import AddressKeys, PackedKeys, canonical_texts
from service.db import utcnow
from service.db.bulk import merge_stage, stage_and_match
from service.leaks.candidates import AccountFilter, account_filter
from service.leaks.catalogue import LeakFacts
from service.leaks.counters import Counters
from service.leaks.exposures import NewExposure, late_accounts, record_exposures
from service.leaks.passwords import hash_leaked_password
from service.leaks.progress import (
    MAX_REPORTED_LINES,
    OpenedFile,
    ReadFaults,
    Target,
    find_file,
    finish_file,
    forget_file,
    open_leak_file,
    record_chunk,
    record_run_time,
    records_done,
    start_run,
)
from service.models import ExposureKind, LeakFile, LeakFileState
from service.runtime import Runtime

log = logging.getLogger(__name__)

FINGERPRINT_BLOCK = 1 << 20
# The first chunk's records; each next chunk twice the last, up to the chunk size. The
# first warnings commit (and go out) within a moment of the start instead of after the
# whole first chunk, while a big file still runs in big chunks after a few small ones.
FIRST_CHUNK_RECORDS = 1000
# Records without a candidate a batch puts back one by one; more are put back in one pass.
_FEW_MISSING = 32
# How far before a file's start the look for accounts that got their address during its
# ingest reaches back: for clocks of other application hosts running behind, and for a
# transaction that wrote an account's address some time before it committed.
LATE_ACCOUNT_MARGIN = timedelta(minutes=10)

__all__ = [
    "IngestBusy",
    "IngestInterrupted",
    "IngestProgress",
    "IngestRefused",
    "IngestReport",
    "LeakFileError",
    "ingest_leak",
]


@dataclass(slots=True)
class IngestReport:
    """What one run did. ``matched`` and ``notices`` count only what this run added."""

    leak: str
    format: str
    compression: str | None
    sha256: str
    format_reason: str = ""  # why this format: what auto-detection saw, or --format
    run: Counters = field(default_factory=Counters)
    invalid_lines: list[int] = field(default_factory=list)
    # Lines over the reader's cap (64 KiB) in a line format, read by this run: each is one
    # of the invalid records, refused rather than held whole.
    long_lines: int = 0
    # A compressed file cut short: the file's bytes read when its stream ended without its
    # end marker. The records before the cut are ingested and the file completes; the rest
    # of the leak is not in the file.
    truncated_after_bytes: int | None = None
    resumed_at_record: int = 0
    already_ingested: bool = False
    dry_run: bool = False
    seconds: float = 0.0
    facts_not_applied: tuple[str, ...] = ()  # given for an existing leak, which kept its own

    def to_json(self) -> dict[str, Any]:
        return {
            "leak": self.leak,
            **self.run.as_dict(),
            "format": self.format,
            "format_reason": self.format_reason,
            "compression": self.compression,
            "sha256": self.sha256,
            "invalid_lines": self.invalid_lines,
            "long_lines": self.long_lines,
            "truncated_after_bytes": self.truncated_after_bytes,
            "resumed_at_record": self.resumed_at_record,
            "already_ingested": self.already_ingested,
            "dry_run": self.dry_run,
            "seconds": round(self.seconds, 3),
            "facts_not_applied": list(self.facts_not_applied),
        }

    def summary(self) -> str:
        run = self.run
        head = "dry run, nothing written: " if self.dry_run else ""
        if self.already_ingested:
            return (
                f"leak {self.leak}: this file ({self.sha256[:12]}) was ingested before; "
                "nothing changed (matched 0, notices 0)"
            )
        text = (
            f"{head}leak {self.leak} ({self.format}"
            f"{', ' + self.compression if self.compression else ''}): "
            f"{run.lines} records, {run.valid} valid, {run.invalid} invalid, "
            f"{run.duplicates} duplicates; {run.matched} accounts flagged, "
            f"{run.notices} warnings queued in {self.seconds:.1f}s"
        )
        if self.format_reason:
            text += f"\nformat {self.format}: {self.format_reason}"
        if self.resumed_at_record:
            text += f"\nresumed after record {self.resumed_at_record} of an interrupted run"
        if self.invalid_lines:
            shown = ", ".join(str(n) for n in self.invalid_lines[:20])
            more = "" if run.invalid <= 20 else f" (and more; {run.invalid} in all)"
            text += f"\ninvalid at lines {shown}{more}"
        return text + fault_notes(
            ReadFaults(self.long_lines, self.truncated_after_bytes), self.format
        )


def fault_notes(faults: ReadFaults, fmt: str) -> str:
    """The lines a report adds for what its reader met (each starts with a newline)."""
    text = ""
    if faults.truncated_after_bytes is not None:
        text += (
            f"\nthe compressed stream is truncated after {faults.truncated_after_bytes:,} "
            "bytes of the file: every complete record before the cut is ingested, the "
            "rest of the leak is missing from this file; ingest a complete copy under the "
            "same leak to read the rest"
        )
    if faults.long_lines:
        text += (
            f"\n{faults.long_lines} line(s) longer than {MAX_LINE_BYTES // 1024} KiB, "
            f"counted invalid: no {fmt} record is that long"
        )
    return text


@dataclass(slots=True)
class _Chunk:
    records: int  # records consumed, the resume point moves by this much
    counters: Counters
    keys: PackedKeys  # every valid record's key, in file order
    candidates: set[bytes]  # the keys the account filter let through
    passwords: dict[bytes, str]  # the first leaked password of each candidate
    invalid_lines: list[int]
    end_byte: int = 0  # how far the reader was in the file's bytes at the chunk's end


@dataclass(frozen=True, slots=True)
class IngestProgress:
    """Where a run is, after each committed chunk."""

    records: int  # records of the file whose effects are committed (resumed ones included)
    matched: int  # accounts this run flagged so far
    bytes_read: int  # of the file's own bytes (compressed bytes for a compressed file)
    total_bytes: int


ProgressCallback = Callable[[IngestProgress], None]


def fingerprint_file(path: Path, *, stop: threading.Event | None = None) -> FileDigests:
    """Return the SHA-256 of the file's bytes (the file's identity across runs) and of its
    decompressed content (what another leak's copy in another compression shares with it),
    in one read of the file (``jobs.reader.stream.file_digests``).

    Refuses anything but a regular file before reading a byte. Raises LeakFileError,
    IngestInterrupted once ``stop`` is set.
    """

    def check() -> None:
        if stop is not None and stop.is_set():
            raise IngestInterrupted(0)

    return file_digests(path, block=FINGERPRINT_BLOCK, check=check)


def ingest_leak(
    runtime: Runtime,
    path: Path,
    *,
    slug: str,
    name: str | None = None,
    source: str | None = None,
    facts: LeakFacts | None = None,
    fmt: LeakFormat = LeakFormat.AUTO,
    dry_run: bool = False,
    chunk_records: int | None = None,
    on_progress: ProgressCallback | None = None,
    accept_invalid: bool = False,
    also_as_new_leak: bool = False,
    operator: str | None = None,
    stop: threading.Event | None = None,
) -> IngestReport:
    """Flag every account whose address is in the leak file at ``path``.

    Idempotent: a file ingested to the end is recognised by its SHA-256 and how it was read,
    and changes nothing. Resumable: an interrupted run of the same file continues where its
    last commit stopped. ``dry_run`` does everything in one transaction and rolls it back.
    ``chunk_records`` (default: the setting ``ingest_chunk_records``) is the records per
    transaction: memory and resume granularity. ``facts``: what the notices say of the leak
    (its names per language, its own date). ``stop``, once set (a signal), ends the run at
    the next chunk boundary with IngestInterrupted. Raises IngestRefused for a file not to
    ingest (``jobs.ingest.checks``; nothing recorded), LeakFileError for an unusable file,
    IngestBusy if another run holds this file, LeakRetracted for a retracted leak.
    """
    started = time.monotonic()
    digests = fingerprint_file(path, stop=stop)
    sha256 = digests.bytes_sha256
    with open_leak(path, fmt) as reader:
        source_info = reader.source
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
        report = IngestReport(
            leak=slug,
            format=source_info.format.value,
            format_reason=source_info.reason,
            compression=source_info.compression,
            sha256=sha256,
            dry_run=dry_run,
        )
        writer = ChunkWriter(runtime, dry_run=dry_run, started=started)
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
                info=source_info,
                path=path,
                operator=operator,
            )
            leak_id, file_id, done = opened.leak_id, opened.file_id, opened.records_done
            report.facts_not_applied = opened.facts_not_applied
            if opened.state is LeakFileState.COMPLETE:
                report.already_ingested = True
                return report
            if opened.parts:
                raise IngestBusy.saying(
                    lambda w: f"this file is being ingested in parts by workers: {w.resume_parts}"
                )
            with ingest_lock(runtime, file_id, dry_run=dry_run):
                done = writer.records_done(file_id) if not dry_run else done
                writer.start_run(file_id)
                report.resumed_at_record = done
                size = chunk_records or runtime.settings.ingest_chunk_records
                chunks = read_chunks(
                    runtime.keys,
                    reader.batches(skip=done),
                    size,
                    report.invalid_lines,
                    accounts=writer.account_filter(),
                    position=reader.bytes_read,
                    stop=stop,
                    first=FIRST_CHUNK_RECORDS,
                )
                progress = _progress_reporter(on_progress, done, source_info.size)
                try:
                    ended = writer.run(
                        chunks, Target(leak_id, file_id), report, progress, stop=stop
                    )
                    report.long_lines = reader.long_lines
                    report.truncated_after_bytes = reader.truncated_at
                except LeakFileError:
                    # Bad input harms nothing: a file that breaks before any of its records
                    # is committed leaves no half-registered leak to list or resume.
                    if done == 0 and report.run.lines == 0:
                        writer.forget_file(leak_id, file_id)
                    raise
                # A stop after the file's merge is too late to interrupt anything: the run
                # finishes and reports, with the duplicates the merge counted.
                if not ended and stop is not None and stop.is_set():
                    writer.record_time(file_id)  # up to the stop, not only the last commit
                    raise IngestInterrupted(done + report.run.lines, dry_run=dry_run)
                if done == 0 and report.run.valid == 0:
                    # Let through by --accept-invalid, and not one address in the whole file:
                    # it added nothing, so it leaves nothing either.
                    writer.forget_file(leak_id, file_id, untouched=False)
                    raise IngestRefused(
                        f"{shown_path(path)}: no valid address in its {report.run.lines} "
                        f"records read as {source_info.format.value}; nothing recorded"
                    )
                report.seconds = time.monotonic() - started
                writer.finish(
                    file_id,
                    seconds=report.seconds,
                    faults=ReadFaults(report.long_lines, report.truncated_after_bytes),
                )
        finally:
            writer.close()
    log.info(
        "ingested leak %s: %s records, %s flagged, %s notices",
        slug,
        report.run.lines,
        report.run.matched,
        report.run.notices,
    )
    return report


def _progress_reporter(
    on_progress: ProgressCallback | None, done: int, total_bytes: int
) -> Callable[[_Chunk], None] | None:
    """Turn committed chunks into IngestProgress for ``on_progress``."""
    if on_progress is None:
        return None
    records, matched = done, 0

    def report(chunk: _Chunk) -> None:
        nonlocal records, matched
        records += chunk.records
        matched += chunk.counters.matched
        on_progress(IngestProgress(records, matched, chunk.end_byte, total_bytes))

    return report


def read_chunks(
    keys: AddressKeys,
    batches: Iterable[RecordBatch],
    size: int,
    invalid_lines: list[int],
    *,
    accounts: AccountFilter,
    locate_invalid: bool = True,
    position: Callable[[], int] | None = None,
    stop: threading.Event | None = None,
    first: int | None = None,
) -> Iterator[_Chunk]:
    """Canonicalize and hash records into chunks of ``size``; the hot loop of the ingest.

    ``batches``: the records, as ``LeakReader.batches`` yields them. ``first``: the first
    chunk holds that many records (at most ``size``), each next one twice as many, up to
    ``size`` (FIRST_CHUNK_RECORDS).

    Only keys in ``accounts`` become candidates to look up, and only their leaked
    passwords are kept: memory stays flat whatever the format.
    ``locate_invalid`` False: count invalid records without their line numbers (a part of
    a split file knows only lines relative to its own start). ``position`` tells how far
    the reader is in the file's bytes, stored on each chunk for progress. ``stop``, once
    set, ends the chunks early: the chunk being read is dropped, uncommitted, so the run
    stops at the boundary of the last chunk handed on.
    """
    reported = 0 if locate_invalid else MAX_REPORTED_LINES
    limit = min(first or size, size)
    chunk = _new_chunk()
    read = 0  # records of this chunk; its counters are set from it when it is handed on
    for batch in batches:
        if stop is not None and stop.is_set():
            return
        start, count = 0, len(batch)
        while start < count:
            take = min(count - start, limit - read)
            room = MAX_REPORTED_LINES - reported - len(invalid_lines) - len(chunk.invalid_lines)
            part = batch if take == count else batch.sliced(start, start + take)
            _add_batch(keys, chunk, part, accounts, room)
            start += take
            read += take
            if read >= limit:
                _count(chunk, read, position)
                yield chunk
                limit = min(2 * limit, size)
                chunk = _new_chunk()
                read = 0
    if read and not (stop is not None and stop.is_set()):
        _count(chunk, read, position)
        yield chunk


def _add_batch(
    keys: AddressKeys, chunk: _Chunk, batch: RecordBatch, accounts: AccountFilter, room: int
) -> None:
    """Add the keys of a batch's valid records to ``chunk``, the line numbers of its invalid
    ones (at most ``room``), and the first leaked password of each candidate key."""
    candidates = batch.candidates
    missing = _indexes_of_none(candidates)
    texts = cast("list[str]", candidates)
    if missing:
        texts = [text for text in candidates if text is not None]
    canonical = canonical_texts(texts, keys.rules)
    if len(missing) <= _FEW_MISSING:
        for index in missing:  # ascending: each lands where its record stands
            canonical.insert(index, None)
    else:  # one pass: an insert per record would be quadratic in a batch of junk
        found = iter(canonical)
        canonical = [None if text is None else next(found) for text in candidates]
    invalid = _indexes_of_none(canonical)
    valid = cast("list[str]", canonical)
    if invalid:
        if room > 0:
            lines = batch.lines
            chunk.invalid_lines.extend(lines[index] for index in invalid[:room])
        valid = [address for address in canonical if address is not None]
    digests = keys.hasher.hash_all(valid)
    chunk.keys.extend(digests)
    hits = accounts.among(digests)
    if not hits:
        return
    chunk.candidates.update(digests[index] for index in hits)
    passwords = batch.passwords
    if passwords is None:
        return
    records = (
        [index for index, address in enumerate(canonical) if address is not None]
        if invalid
        else range(len(canonical))
    )
    kept = chunk.passwords
    for index in hits:
        key, password = digests[index], passwords[records[index]]
        if password and key not in kept:
            kept[key] = password


def _indexes_of_none(items: list[str | None]) -> list[int]:
    """Return the indexes of the Nones in ``items``, ascending (a C-speed scan between
    them: Nones are few)."""
    indexes: list[int] = []
    index = -1
    try:
        while True:
            index = items.index(None, index + 1)
            indexes.append(index)
    except ValueError:
        return indexes


def _count(chunk: _Chunk, records: int, position: Callable[[], int] | None) -> None:
    """Set a chunk's counters: every record is either one valid key or one invalid line."""
    chunk.records = records
    counters = chunk.counters
    counters.lines = records
    counters.valid = len(chunk.keys)
    counters.invalid = records - counters.valid
    if position is not None:
        chunk.end_byte = position()


def _new_chunk() -> _Chunk:
    return _Chunk(
        records=0,
        counters=Counters(),
        keys=PackedKeys(),
        candidates=set(),
        passwords={},
        invalid_lines=[],
    )


def merge_file_keys(session: Session, target: Target, *, now: datetime) -> Counters:
    """Merge the file's staged keys into the leak's watch list; count their duplicates.

    The duplicates (staged keys already in the leak's watch list, from this file or an
    earlier one, or twice in the file) are added to the file's, the leak's and, for a split
    file, ``target``'s part's counters in the same transaction as the merge. Returns what
    it added (``duplicates`` alone; nothing for a file without a stage: merged already).
    Raises LeakRetracted if the leak was retracted meanwhile. Does not commit.
    """
    merged = merge_stage(session, target.leak_id, target.file_id)
    if merged is None:
        return Counters()
    staged, new_entries = merged
    added = Counters(duplicates=staged - new_entries)
    record_chunk(session, target, records=0, added=added, invalid_lines=[], now=now)
    return added


def flag_late_accounts(session: Session, target: Target, *, now: datetime) -> Counters:
    """Expose the accounts that got their address after the file's ingest began and
    whose key it holds (``late_accounts``): the account filter of a run is built when the
    run starts, and an account's own look at the watch list finds a key only once the
    file's stage is merged. Call after ``merge_file_keys``. Counted as the file's matches;
    returns what it added. Does not commit."""
    started, accounts_xmin = session.execute(
        select(LeakFile.started_at, LeakFile.accounts_xmin).where(LeakFile.id == target.file_id)
    ).one()
    late = late_accounts(
        session,
        target.leak_id,
        since=started - LATE_ACCOUNT_MARGIN,
        accounts_xmin=accounts_xmin,
    )
    if not late:
        return Counters()
    outcome = record_exposures(
        session, target.leak_id, [NewExposure(account_id) for account_id in late], now=now
    )
    added = Counters(matched=outcome.flagged, notices=outcome.notices)
    record_chunk(session, target, records=0, added=added, invalid_lines=[], now=now)
    return added


class ChunkWriter:
    """The database side of one run: opens the file's record, commits chunks in order."""

    def __init__(self, runtime: Runtime, *, dry_run: bool, started: float | None = None) -> None:
        self.runtime = runtime
        self.dry_run = dry_run
        self.started = time.monotonic() if started is None else started  # this run's clock
        # A dry run keeps one transaction open across the whole file and rolls it back.
        self._dry_session: Session | None = runtime.db.sessions() if dry_run else None
        self._hash_pool = ThreadPoolExecutor(max_workers=_hash_workers())

    def _session(self) -> Any:
        if self._dry_session is not None:
            return _borrowed(self._dry_session)
        return self.runtime.db.transaction()

    def open_file(
        self,
        *,
        slug: str,
        name: str | None,
        source: str | None,
        sha256: str,
        content_sha256: str,
        read_as: str,
        info: LeakSource,
        content_prefixes: tuple[str, ...] = (),
        text_sha256: str | None = None,
        text_prefixes: tuple[str, ...] | None = None,
        path: Path,
        facts: LeakFacts | None = None,
        operator: str | None = None,
    ) -> OpenedFile:
        with self._session() as session:
            return open_leak_file(
                session,
                slug=slug,
                name=name,
                source=source,
                facts=facts,
                sha256=sha256,
                content_sha256=content_sha256,
                content_prefixes=content_prefixes,
                text_sha256=text_sha256,
                text_prefixes=text_prefixes,
                read_as=read_as,
                size=info.size,
                file_format=info.format.value,
                compression=info.compression,
                file_name=shown_path(Path(path.name))[:255],
                ran_by=operator[:200] if operator else None,
                now=utcnow(),
            )

    def record_time(self, file_id: int) -> None:
        with self._session() as session:
            record_run_time(session, file_id, seconds=time.monotonic() - self.started)

    def account_filter(self) -> AccountFilter:
        """The account keys as they are now, for the run's chunks to be matched against."""
        with self.runtime.db.read_session() as session:
            return account_filter(session)

    def start_run(self, file_id: int) -> None:
        with self._session() as session:
            start_run(session, file_id)

    def records_done(self, file_id: int) -> int:
        with self.runtime.db.read_session() as session:
            return records_done(session, file_id)

    def run(
        self,
        chunks: Iterator[_Chunk],
        target: Target,
        report: IngestReport,
        on_progress: Callable[[_Chunk], None] | None,
        *,
        stop: threading.Event | None = None,
    ) -> bool:
        """Commit chunks on a writer thread while this thread reads the next one.

        ``stop``, once set, commits no further chunk: the one being committed ends the run.
        A run of a whole file that reads to its end then merges the file's staged keys into
        the watch list and flags the accounts its filter could not know, and returns True
        (the file's effects are all committed: a stop that comes later changes nothing);
        for a part, the last part to complete does (``jobs.ingest.parts``). Returns False
        for a part, and for a run that stopped before the file's end.
        """
        # A rendezvous: the reader hands a chunk on and reads the next only once the writer
        # has taken it, and the writer lets go of a committed chunk before it waits. So at
        # most two chunks are alive, the one being committed and the one being read; a
        # queued third one (about 2.5 MiB at 100,000 records) would gain no overlap, since
        # the writer never waits for the reader when the database is the slower side.
        handoff: queue.Queue[_Chunk | None] = queue.Queue(maxsize=1)
        failure: list[BaseException] = []

        def take() -> _Chunk | None:
            chunk = handoff.get()
            handoff.task_done()  # lets the reader read on
            return chunk

        def write() -> None:
            chunk = take()
            try:
                while chunk is not None:
                    if stop is not None and stop.is_set():
                        break  # chunks read but not committed: the next run reads them again
                    self._commit_chunk(chunk, target, report)
                    if on_progress is not None:
                        on_progress(chunk)
                    chunk = None  # committed: not kept alive while waiting for the next
                    chunk = take()
            except BaseException as exc:  # noqa: BLE001  (re-raised on the reading thread)
                failure.append(exc)
            while chunk is not None:  # drain so the reader never blocks
                chunk = take()

        thread = threading.Thread(target=write, name="ingest-writer", daemon=True)
        thread.start()
        try:
            for chunk in chunks:
                if failure or (stop is not None and stop.is_set()):
                    break
                handoff.put(chunk)
                handoff.join()  # until the writer has taken it
        finally:
            handoff.put(None)
            thread.join()
        if failure:
            raise failure[0]
        if target.part_id is None and (stop is None or not stop.is_set()):
            # A part's end is not the file's: the last part to complete does both
            # (jobs.ingest.parts). The late accounts are looked for in the watch list, so
            # after the merge, in a transaction of their own.
            with self._session() as session:
                report.run.add(merge_file_keys(session, target, now=utcnow()))
            with self._session() as session:
                report.run.add(flag_late_accounts(session, target, now=utcnow()))
            return True
        return False

    def _commit_chunk(self, chunk: _Chunk, target: Target, report: IngestReport) -> None:
        counters = chunk.counters
        now = utcnow()
        leak_id = target.leak_id
        with self._session() as session:
            # The keys are staged, not yet in the watch list: their duplicates are counted
            # by the merge at the file's end (merge_file_keys), 0 until then.
            matches = stage_and_match(
                session, (leak_id, target.file_id), chunk.keys, sorted(chunk.candidates)
            )
            candidates = self._exposures(matches, chunk.passwords)
            outcome = record_exposures(session, leak_id, candidates, now=now)
            counters.matched, counters.notices = outcome.flagged, outcome.notices
            record_chunk(
                session,
                target,
                records=chunk.records,
                added=counters,
                invalid_lines=chunk.invalid_lines,
                now=now,
            )
            if target.part_id is None:
                record_run_time(session, target.file_id, seconds=time.monotonic() - self.started)
        report.run.add(counters)
        report.invalid_lines.extend(
            chunk.invalid_lines[: MAX_REPORTED_LINES - len(report.invalid_lines)]
        )

    def _exposures(
        self, matches: list[tuple[int, bytes]], passwords: dict[bytes, str]
    ) -> list[NewExposure]:
        """Exposure rows for matched accounts; leaked passwords hashed in parallel."""
        plain = [NewExposure(account_id) for account_id, key in matches if key not in passwords]
        credential = [
            (account_id, passwords[key]) for account_id, key in matches if key in passwords
        ]
        hashes = self._hash_pool.map(hash_leaked_password, [p for _, p in credential])
        exposures = plain + [
            NewExposure(account_id, ExposureKind.CREDENTIAL, password_hash)
            for (account_id, _), password_hash in zip(credential, hashes, strict=True)
        ]
        # One order for every writer: parallel parts then take row locks in the same order.
        return sorted(exposures, key=lambda exposure: exposure.account_id)

    def finish(self, file_id: int, *, seconds: float, faults: ReadFaults) -> None:
        with self._session() as session:
            finish_file(session, file_id, seconds=seconds, now=utcnow(), faults=faults)

    def forget_file(self, leak_id: int, file_id: int, *, untouched: bool = True) -> None:
        with self._session() as session:
            forget_file(session, leak_id, file_id, untouched=untouched)

    def close(self) -> None:
        self._hash_pool.shutdown(wait=True)
        if self._dry_session is not None:
            self._dry_session.rollback()
            self._dry_session.close()


class _borrowed:  # noqa: N801  (a context manager used like a function)
    """Lend the dry run's one session to a block without committing it."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def __enter__(self) -> Session:
        return self.session

    def __exit__(self, *exc: object) -> None:
        self.session.flush()


def _hash_workers() -> int:
    # argon2-cffi releases the GIL: one hashing thread per core runs truly in parallel.
    return max(1, os.cpu_count() or 1)
