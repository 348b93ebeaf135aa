"""An ingest's bookkeeping: the leak file's record, its counters and its resume point.

Whatever reads the file (one process, or many workers over byte-range parts), each chunk's
counters are added in the chunk's own transaction, to the part, the file and the leak at
once, and the resume point moves with them: so a killed run resumes exactly where its last
commit ended, and totals are exact whatever the number of writers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from service.db import bulk, rowcount
from service.leaks.catalogue import (
    LeakFacts,
    LeakRetracted,
    check_leak_facts,
    facts_not_applied,
    get_or_create_leak,
)
from service.leaks.counters import Counters
from service.models import (
    Exposure,
    IngestCounters,
    Leak,
    LeakFile,
    LeakFileState,
    LeakPart,
    Notice,
)

MAX_REPORTED_LINES = 100  # invalid line numbers kept per file, for the operator's report


@dataclass(frozen=True, slots=True)
class Target:
    """Where a run's progress is committed: the file, or one part of it (split runs)."""

    leak_id: int
    file_id: int
    part_id: int | None = None


@dataclass(frozen=True, slots=True)
class OpenedFile:
    leak_id: int
    file_id: int
    state: LeakFileState
    records_done: int
    parts: int  # > 0: the file is split into parts for workers
    # Facts given for a leak that existed already, which it kept (catalogue.facts_not_applied).
    facts_not_applied: tuple[str, ...] = ()


def open_leak_file(
    session: Session,
    *,
    slug: str,
    name: str | None,
    source: str | None,
    sha256: str,
    read_as: str,
    size: int,
    content_sha256: str | None = None,
    content_prefixes: Sequence[str] | None = None,
    text_sha256: str | None = None,
    text_prefixes: Sequence[str] | None = None,
    file_format: str,
    compression: str | None,
    file_name: str | None = None,
    ran_by: str | None = None,
    now: datetime,
    facts: LeakFacts | None = None,
) -> OpenedFile:
    """Find the leak's record of this file (its SHA-256 read as ``read_as``), creating leak
    and file as needed. ``content_sha256``, ``content_prefixes``: of the decompressed
    content (``FileDigests``), stored with a new file, and with one recorded before they
    were kept; ``text_sha256``, ``text_prefixes``: of that content as text, given only
    where it differs from the content (None: the same).

    Does not commit. Raises ValidationFailed for a bad slug, LeakRetracted.
    """
    leak = get_or_create_leak(session, slug=slug, name=name, source=source, facts=facts, now=now)
    given_name, given_source, given = check_leak_facts(name, source, facts or LeakFacts(), now=now)
    kept = facts_not_applied(leak, name=given_name, source=given_source, facts=given)
    digest = bytes.fromhex(sha256)
    leak_file = session.scalars(
        select(LeakFile).where(
            LeakFile.leak_id == leak.id, LeakFile.sha256 == digest, LeakFile.read_as == read_as
        )
    ).one_or_none()
    content = bytes.fromhex(content_sha256) if content_sha256 is not None else None
    prefixes = list(content_prefixes) if content_prefixes is not None else None
    if leak_file is not None and leak_file.content_sha256 is None and content is not None:
        leak_file.content_sha256 = content  # a compressed file from before revision 0018
    if leak_file is not None and leak_file.content_prefixes is None and prefixes is not None:
        leak_file.content_prefixes = prefixes  # a file from before revision 0018
    text = bytes.fromhex(text_sha256) if text_sha256 is not None else None
    text_list = list(text_prefixes) if text_prefixes is not None else None
    if leak_file is not None and leak_file.text_sha256 is None and text is not None:
        # A file from before revision 0019 whose text differs from its content (CRLF, BOM,
        # UTF-16): known from now on by its text as well.
        leak_file.text_sha256, leak_file.text_prefixes = text, text_list
    if leak_file is None:
        leak_file = LeakFile(
            leak_id=leak.id,
            sha256=digest,
            content_sha256=content,
            content_prefixes=prefixes,
            text_sha256=text,
            text_prefixes=text_list,
            read_as=read_as,
            name=file_name,
            ran_by=ran_by,
            size=size,
            format=file_format,
            compression=compression,
            state=LeakFileState.RUNNING,
            records_done=0,
            invalid_lines=[],
            runs=0,
            seconds=0.0,
            run_seconds=[],
            started_at=now,
            accounts_xmin=bulk.snapshot_xmin(session),
            parts=0,
            **Counters().as_dict(),
        )
        session.add(leak_file)
        session.flush()
        # A new file has nothing staged: a stage left under its id by a file deleted without
        # its stage (SQLite reuses the highest id; a sequence may be reset) is not its own.
        bulk.drop_stages(session, [leak_file.id])
    return OpenedFile(
        leak.id, leak_file.id, leak_file.state, leak_file.records_done, leak_file.parts, kept
    )


@dataclass(frozen=True, slots=True)
class FileElsewhere:
    """The same file, recorded under another leak: its bytes (``same_bytes``), its content
    in another compression (a gzip of a plain file, a plain copy of a gzip, ...), or, with
    ``same_prefix_bytes``, as many first bytes of content as the shorter of the two has in
    its longest prefix (``FileDigests.content_prefixes``): one is a copy of the other cut
    short, or extended."""

    slug: str
    started_at: datetime
    read_as: str
    same_bytes: bool = True
    name: str | None = None  # the other file's basename, as it was ingested
    same_prefix_bytes: int | None = None
    # The same text only, in other content: saved with other line ends, a BOM added or
    # removed, or another Unicode encoding (UTF-16).
    same_text: bool = False


def find_file(session: Session, *, slug: str, sha256: str, read_as: str) -> LeakFileState | None:
    """The state of the leak's record of these bytes read this way; None if there is none."""
    state: LeakFileState | None = session.scalar(
        select(LeakFile.state)
        .join(Leak, Leak.id == LeakFile.leak_id)
        .where(
            Leak.slug == slug,
            LeakFile.sha256 == bytes.fromhex(sha256),
            LeakFile.read_as == read_as,
        )
    )
    return state


def file_elsewhere(
    session: Session,
    *,
    slug: str,
    sha256: str,
    content_sha256: str | None = None,
    content_prefixes: Sequence[str] = (),
    prefix_bytes: int = 0,
    text_sha256: str | None = None,
    text_prefixes: Sequence[str] | None = None,
) -> FileElsewhere | None:
    """The first other leak that recorded these bytes or, given ``content_sha256``, this
    decompressed content (however read), if any; a file of the same bytes before one of
    the same content, and that before one of the same text only (``text_sha256``: the
    content decoded, without BOM, with LF line ends; None where that is the content).
    Failing those, the first whose content or text starts as this one's does, as far as the
    shorter of the two has ``content_prefixes`` or ``text_prefixes`` (the first
    ``prefix_bytes`` << k bytes each).

    A file stores its text's fingerprints only where they differ from its content's (and
    files from before revision 0019 none): its content's stand for its text there.
    """
    digest = bytes.fromhex(sha256)
    same = LeakFile.sha256 == digest
    content = bytes.fromhex(content_sha256) if content_sha256 is not None else None
    text = bytes.fromhex(text_sha256) if text_sha256 is not None else content
    texts = list({value for value in (content, text) if value is not None})
    if texts:
        same = or_(same, LeakFile.content_sha256.in_(texts), LeakFile.text_sha256.in_(texts))
    row = session.execute(
        select(
            Leak.slug,
            LeakFile.started_at,
            LeakFile.read_as,
            LeakFile.sha256,
            LeakFile.name,
            LeakFile.content_sha256,
        )
        .join(Leak, Leak.id == LeakFile.leak_id)
        .where(same, Leak.slug != slug)
        .order_by(
            (LeakFile.sha256 != digest),
            # NULL (a compressed file from before 0018) is no match of the content.
            func.coalesce(LeakFile.content_sha256 != content, True),
            LeakFile.started_at,
            LeakFile.id,
        )
        .limit(1)
    ).one_or_none()
    if row is not None:
        same_bytes = row[3] == digest
        return FileElsewhere(
            row[0],
            row[1],
            row[2],
            same_bytes=same_bytes,
            name=row[4],
            same_text=not same_bytes and (content is None or row[5] != content),
        )
    ours = [list(content_prefixes)]
    if text_prefixes is not None:
        ours.append(list(text_prefixes))
    if not any(ours):
        return None
    # A leak has a few files, a deployment a few thousand at most: each file's prefixes
    # (at most ~40 digests each) are compared here rather than indexed.
    rows = session.execute(
        select(
            Leak.slug,
            LeakFile.started_at,
            LeakFile.read_as,
            LeakFile.name,
            LeakFile.content_prefixes,
            LeakFile.text_prefixes,
        )
        .join(Leak, Leak.id == LeakFile.leak_id)
        .where(
            Leak.slug != slug,
            or_(LeakFile.content_prefixes.is_not(None), LeakFile.text_prefixes.is_not(None)),
        )
        .order_by(LeakFile.started_at, LeakFile.id)
    )
    for other_slug, started_at, read_as, name, content_theirs, text_theirs in rows:
        for theirs in (content_theirs or [], text_theirs or []):
            for mine in ours:
                shared = min(len(mine), len(theirs))
                if shared and theirs[shared - 1] == mine[shared - 1]:
                    return FileElsewhere(
                        other_slug,
                        started_at,
                        read_as,
                        same_bytes=False,
                        name=name,
                        same_prefix_bytes=prefix_bytes << (shared - 1),
                    )
    return None


def start_run(session: Session, file_id: int) -> None:
    """Count a new run of the file (a first run or a resume), its time starting at 0."""
    leak_file = session.scalars(select(LeakFile).where(LeakFile.id == file_id)).one()
    leak_file.runs += 1
    leak_file.run_seconds = [*(leak_file.run_seconds or []), 0.0]


def record_run_time(session: Session, file_id: int, *, seconds: float) -> None:
    """Set the current run's time so far; the file's total is the sum over its runs.

    Called in every chunk's transaction, so an interrupted or killed run keeps its time.
    """
    stored = session.scalar(select(LeakFile.run_seconds).where(LeakFile.id == file_id))
    runs = [float(x) for x in (stored or [])] or [0.0]
    runs[-1] = round(seconds, 3)
    session.execute(
        update(LeakFile).where(LeakFile.id == file_id).values(run_seconds=runs, seconds=sum(runs))
    )


def records_done(session: Session, file_id: int) -> int:
    """The file's resume point: records whose effects are committed."""
    return int(session.scalar(select(LeakFile.records_done).where(LeakFile.id == file_id)) or 0)


@dataclass(frozen=True, slots=True)
class ReadFaults:
    """What a reader met in a whole file, or in one part of it.

    ``long_lines``: lines over the reader's cap in a line format, each counted invalid.
    ``truncated_after_bytes``: a compressed file's bytes read when its stream ended without
    its end marker (None: the stream was whole).
    """

    long_lines: int = 0
    truncated_after_bytes: int | None = None


def record_chunk(
    session: Session,
    target: Target,
    *,
    records: int,
    added: Counters,
    invalid_lines: list[int],
    now: datetime,
) -> None:
    """Add a chunk's counters to the part, file and leak, and move the resume point.

    Call last in the chunk's transaction: parallel parts share the file's and the leak's
    rows, so their row locks are then held only from here to the commit. Does not commit.
    """
    increments = added.as_dict()
    if target.part_id is not None:
        session.execute(
            update(LeakPart)
            .where(LeakPart.id == target.part_id)
            .values(records_done=LeakPart.records_done + records, **_plus(LeakPart, increments))
        )
        file_progress: dict[str, Any] = {}
    else:
        file_progress = {"records_done": LeakFile.records_done + records}
    session.execute(
        update(LeakFile)
        .where(LeakFile.id == target.file_id)
        .values(**file_progress, **_plus(LeakFile, increments))
    )
    # A retraction that committed while this chunk was written wins: the chunk is undone.
    counted = session.execute(
        update(Leak)
        .where(Leak.id == target.leak_id, Leak.retracted_at.is_(None))
        .values(updated_at=now, **_plus(Leak, increments))
    )
    if not rowcount(counted):
        raise LeakRetracted("the leak was retracted while this file was being ingested")
    if invalid_lines:
        stored = session.scalar(select(LeakFile.invalid_lines).where(LeakFile.id == target.file_id))
        merged = (list(stored or []) + invalid_lines)[:MAX_REPORTED_LINES]
        session.execute(
            update(LeakFile).where(LeakFile.id == target.file_id).values(invalid_lines=merged)
        )


def _plus(model: type[IngestCounters], increments: dict[str, int]) -> dict[str, Any]:
    return {name: getattr(model, name) + n for name, n in increments.items()}


def finish_file(
    session: Session,
    file_id: int,
    *,
    seconds: float,
    now: datetime,
    faults: ReadFaults | None = None,
) -> None:
    """Mark the file complete: from now on, ingesting it again changes nothing.

    ``seconds``: the time of this (last) run; earlier runs keep theirs. ``faults``: what
    the last run's reader met in the whole file (a resumed run reads it from its start,
    passing over the committed records), kept for ``leaks show``.
    """
    record_run_time(session, file_id, seconds=seconds)
    faults = faults or ReadFaults()
    session.execute(
        update(LeakFile)
        .where(LeakFile.id == file_id)
        .values(
            state=LeakFileState.COMPLETE,
            finished_at=now,
            long_lines=faults.long_lines,
            truncated_after_bytes=faults.truncated_after_bytes,
        )
    )


def forget_file(session: Session, leak_id: int, file_id: int, *, untouched: bool = True) -> None:
    """Remove a file none of whose records is committed, and its leak if it has no other.

    ``untouched`` False: remove it even with records committed, taking its counters off the
    leak's; only for a file that added nothing else (no valid address: no watch-list entry,
    no exposure, no notice).
    """
    if not untouched:
        leak_file = session.scalars(select(LeakFile).where(LeakFile.id == file_id)).one()
        taken = Counters.of(leak_file).as_dict()
        session.execute(
            update(Leak)
            .where(Leak.id == leak_id)
            .values(**{name: getattr(Leak, name) - n for name, n in taken.items()})
        )
        session.execute(delete(LeakFile).where(LeakFile.id == file_id))
    else:
        session.execute(delete(LeakFile).where(LeakFile.id == file_id, LeakFile.records_done == 0))
    if not untouched or not session.scalar(select(LeakFile.id).where(LeakFile.id == file_id)):
        bulk.drop_stages(session, [file_id])  # gone: whatever it staged goes with it
    others = select(LeakFile.id).where(LeakFile.leak_id == leak_id).exists()
    gone = session.scalar(delete(Leak).where(Leak.id == leak_id, ~others).returning(Leak.id))
    if gone is not None:
        # Exposures and notices name their leak without a foreign key (models.leaks): none
        # should exist for a leak without a committed file, and none may outlive it.
        session.execute(delete(Notice).where(Notice.leak_id == gone))
        session.execute(delete(Exposure).where(Exposure.leak_id == gone))
