"""A file's keys wait in its stage until the file ends, then merge into the watch list once
(issue 18), on SQLite and PostgreSQL: the states between the last chunk and the merge, a
crash in the merge, duplicates across files, a dry run, a retraction, a forgotten file,
an account created meanwhile, and a file ingested in parts."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskCliRunner
from sqlalchemy import func, inspect, select, text

import jobs.ingest.pipeline as pipeline
from jobs.ingest.parts import plan_parts, run_part
from jobs.ingest.pipeline import IngestInterrupted, IngestProgress, ingest_leak
from service.addresses import PackedKeys
from service.db import bulk, utcnow
from service.leaks.catalogue import LeakRetracted
from service.leaks.counters import COUNTERS
from service.leaks.exposures import late_accounts
from service.leaks.progress import forget_file
from service.leaks.retract import retract_leak
from service.models import (
    Account,
    Exposure,
    Leak,
    LeakEntry,
    LeakFile,
    LeakFileState,
    LeakPart,
    Notice,
)
from service.runtime import Runtime
from tests.support.cli import output
from tests.support.db import flagged, notices
from tests.support.factories import load_accounts
from tests.support.leakfiles import write_lines

SLUG = "stage-2019"
ACCOUNTS = {"u-ann": "ann@example.org", "u-ben": "ben@example.org", "u-cy": "cy@example.org"}
# 12 records: 11 valid (one invalid), 8 distinct keys, so 3 duplicates; ann and ben flagged.
FIRST = [
    "ann@example.org",
    "s1@example.net",
    "s2@example.net",
    "ANN@example.org",  # duplicate
    "s1@example.net",  # duplicate
    "not an address",
    "s3@example.net",
    "ben@example.org",
    "s4@example.net",
    "s5@example.net",
    "s6@example.net",
    "<s2@example.net>",  # duplicate
]
FIRST_COUNTS = {"lines": 12, "valid": 11, "invalid": 1, "duplicates": 3, "matched": 2, "notices": 2}
# Shares s1, s2 and ben with FIRST, has s7 twice: 6 valid, 3 distinct new, 3 duplicates.
SECOND = [
    "s1@example.net",
    "s7@example.net",
    "ben@example.org",
    "s7@example.net",
    "s2@example.net",
    "s8@example.net",
]
CHUNK = 2  # records per chunk: a file of many chunks
XMAX = "SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint"


@pytest.fixture
def accounts(runtime: Runtime, tmp_path: Path) -> dict[str, str]:
    load_accounts(runtime, tmp_path, ACCOUNTS)
    return ACCOUNTS


def stages(runtime: Runtime) -> list[str]:
    names = inspect(runtime.db.engine).get_table_names()
    return sorted(name for name in names if name.startswith(bulk.STAGE_PREFIX))


def staged_rows(runtime: Runtime, file_id: int) -> int:
    with runtime.db.engine.connect() as connection:
        name = bulk.stage_name(file_id)
        count = connection.exec_driver_sql(f"SELECT count(*) FROM {name}")  # noqa: S608
        return int(count.scalar_one())


def entries(runtime: Runtime, slug: str = SLUG) -> int:
    with runtime.db.read_session() as session:
        return (
            session.scalar(
                select(func.count())
                .select_from(LeakEntry)
                .join(Leak, Leak.id == LeakEntry.leak_id)
                .where(Leak.slug == slug)
            )
            or 0
        )


def file_state(runtime: Runtime, sha_prefix: str | None = None) -> dict[str, Any]:
    """The one file's (or the first file's) state and counters."""
    with runtime.db.read_session() as session:
        leak_file = session.scalars(select(LeakFile).order_by(LeakFile.id)).first()
        assert leak_file is not None
        return {
            "id": leak_file.id,
            "state": leak_file.state,
            "records_done": leak_file.records_done,
            **{name: getattr(leak_file, name) for name in COUNTERS},
        }


def leak_totals(runtime: Runtime, slug: str = SLUG) -> dict[str, int]:
    with runtime.db.read_session() as session:
        leak = session.scalars(select(Leak).where(Leak.slug == slug)).one()
        return {name: getattr(leak, name) for name in COUNTERS}


def ingest_until_merge(runtime: Runtime, path: Path, records: int) -> None:
    """Ingest ``path`` and stop it right after its last chunk commits: before the merge."""
    stop = threading.Event()

    def stop_after_last(progress: IngestProgress) -> None:
        if progress.records == records:
            stop.set()

    with pytest.raises(IngestInterrupted):
        ingest_leak(
            runtime, path, slug=SLUG, chunk_records=CHUNK, on_progress=stop_after_last, stop=stop
        )


def test_a_run_stopped_between_its_last_chunk_and_the_merge_resumes_to_exact_totals(
    runtime: Runtime, accounts: dict[str, str], tmp_path: Path
) -> None:
    path = write_lines(tmp_path / "leak.txt", FIRST)
    ingest_until_merge(runtime, path, len(FIRST))

    # Every record committed, its accounts flagged; its keys staged, not in the watch list,
    # their duplicates not counted yet.
    before = file_state(runtime)
    assert before["records_done"] == len(FIRST)
    assert before["state"] is LeakFileState.RUNNING
    assert {name: before[name] for name in COUNTERS} == FIRST_COUNTS | {"duplicates": 0}
    assert stages(runtime) == [bulk.stage_name(before["id"])]
    assert staged_rows(runtime, before["id"]) == FIRST_COUNTS["valid"]
    assert entries(runtime) == 0
    assert flagged(runtime, SLUG) == {"u-ann", "u-ben"}

    report = ingest_leak(runtime, path, slug=SLUG, chunk_records=CHUNK)

    assert report.resumed_at_record == len(FIRST)
    assert (report.run.lines, report.run.duplicates, report.run.matched) == (0, 3, 0)
    after = file_state(runtime)
    assert after["state"] is LeakFileState.COMPLETE
    assert {name: after[name] for name in COUNTERS} == FIRST_COUNTS
    assert leak_totals(runtime) == FIRST_COUNTS
    assert entries(runtime) == FIRST_COUNTS["valid"] - FIRST_COUNTS["duplicates"]
    assert stages(runtime) == []
    assert len(notices(runtime)) == 2
    again = ingest_leak(runtime, path, slug=SLUG, chunk_records=CHUNK)
    assert again.already_ingested
    assert entries(runtime) == 8


def test_a_stop_after_the_merge_is_too_late_and_the_run_reports_the_whole_file(
    runtime: Runtime, accounts: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by trying: a Ctrl-C landing after the merge reported the run as interrupted
    ("run the same command again"), and the run that then completed the file reported
    duplicates 0: no run ever reported the file's duplicates."""
    path = write_lines(tmp_path / "leak.txt", FIRST)
    stop = threading.Event()
    merge = pipeline.merge_file_keys

    def merge_then_stop(*args: Any, **kwargs: Any) -> Any:
        merged = merge(*args, **kwargs)
        stop.set()  # the Ctrl-C, right after the merge's commit is under way
        return merged

    monkeypatch.setattr(pipeline, "merge_file_keys", merge_then_stop)
    report = ingest_leak(runtime, path, slug=SLUG, chunk_records=CHUNK, stop=stop)

    assert stop.is_set()
    assert report.run.as_dict() == FIRST_COUNTS
    after = file_state(runtime)
    assert after["state"] is LeakFileState.COMPLETE
    assert {name: after[name] for name in COUNTERS} == FIRST_COUNTS
    assert stages(runtime) == []
    assert flagged(runtime, SLUG) == {"u-ann", "u-ben"}


def test_a_crash_in_the_merge_leaves_the_stage_whole_and_the_next_run_merges_it(
    runtime: Runtime, accounts: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_lines(tmp_path / "leak.txt", FIRST)
    merge = bulk.merge_stage

    def crash_after_merging(*args: Any) -> Any:
        merge(*args)  # the keys inserted and the stage dropped, uncommitted
        raise RuntimeError("crashed in the merge")

    monkeypatch.setattr(pipeline, "merge_stage", crash_after_merging)
    with pytest.raises(RuntimeError, match="crashed in the merge"):
        ingest_leak(runtime, path, slug=SLUG, chunk_records=CHUNK)

    state = file_state(runtime)
    assert (state["state"], state["records_done"], state["duplicates"]) == (
        LeakFileState.RUNNING,
        len(FIRST),
        0,
    )
    assert staged_rows(runtime, state["id"]) == FIRST_COUNTS["valid"]
    assert entries(runtime) == 0

    monkeypatch.setattr(pipeline, "merge_stage", merge)
    report = ingest_leak(runtime, path, slug=SLUG, chunk_records=CHUNK)
    assert (report.run.lines, report.run.duplicates) == (0, 3)
    assert leak_totals(runtime) == FIRST_COUNTS
    assert entries(runtime) == 8
    assert stages(runtime) == []


def test_two_files_of_one_leak_sharing_keys_count_duplicates_exactly(
    runtime: Runtime, accounts: dict[str, str], tmp_path: Path
) -> None:
    first = ingest_leak(
        runtime, write_lines(tmp_path / "a.txt", FIRST), slug=SLUG, chunk_records=CHUNK
    )
    second = ingest_leak(
        runtime, write_lines(tmp_path / "b.txt", SECOND), slug=SLUG, chunk_records=CHUNK
    )

    assert (first.run.valid, first.run.duplicates) == (11, 3)
    # s1, s2 and ben are the first file's; s7 is twice in this one.
    assert (second.run.valid, second.run.duplicates, second.run.matched) == (6, 4, 0)
    totals = leak_totals(runtime)
    assert (totals["valid"], totals["duplicates"]) == (17, 7)
    assert entries(runtime) == 17 - 7 == 10
    assert stages(runtime) == []


def test_a_dry_run_counts_duplicates_and_leaves_nothing_staged(
    runtime: Runtime, accounts: dict[str, str], tmp_path: Path
) -> None:
    path = write_lines(tmp_path / "leak.txt", FIRST)

    report = ingest_leak(runtime, path, slug=SLUG, chunk_records=CHUNK, dry_run=True)

    assert {name: getattr(report.run, name) for name in COUNTERS} == FIRST_COUNTS
    assert stages(runtime) == []
    with runtime.db.read_session() as session:
        assert session.scalar(select(func.count()).select_from(LeakFile)) == 0
    assert entries(runtime) == 0


def test_a_dry_run_of_a_staged_file_leaves_its_stage_as_it_was(
    runtime: Runtime, accounts: dict[str, str], tmp_path: Path
) -> None:
    path = write_lines(tmp_path / "leak.txt", FIRST)
    ingest_until_merge(runtime, path, len(FIRST))
    file_id = file_state(runtime)["id"]

    report = ingest_leak(runtime, path, slug=SLUG, chunk_records=CHUNK, dry_run=True)

    assert report.run.duplicates == 3  # merged in its transaction, rolled back
    assert stages(runtime) == [bulk.stage_name(file_id)]
    assert staged_rows(runtime, file_id) == 11
    assert entries(runtime) == 0


def test_retracting_a_leak_drops_what_its_files_staged(
    runtime: Runtime, accounts: dict[str, str], tmp_path: Path
) -> None:
    path = write_lines(tmp_path / "leak.txt", FIRST)
    ingest_until_merge(runtime, path, len(FIRST))
    assert len(stages(runtime)) == 1

    retract_leak(runtime.db, SLUG, reason="wrong file", actor="test", now=utcnow())

    assert stages(runtime) == []
    with pytest.raises(LeakRetracted):
        ingest_leak(runtime, path, slug=SLUG, chunk_records=CHUNK)
    assert stages(runtime) == []
    assert entries(runtime) == 0


def test_a_dry_retraction_of_a_staged_file_counts_what_the_retraction_does(
    runtime: Runtime, runner: FlaskCliRunner, accounts: dict[str, str], tmp_path: Path
) -> None:
    # FIRST merged (8 watch-list entries), SECOND interrupted with its 6 keys staged: the
    # dry run counted the staged keys as entries to remove (14), the retraction removed 8.
    ingest_leak(runtime, write_lines(tmp_path / "first.txt", FIRST), slug=SLUG, chunk_records=CHUNK)
    ingest_until_merge(runtime, write_lines(tmp_path / "second.txt", SECOND), len(SECOND))
    retract = ("leaks", "retract", SLUG, "--reason", "wrong file", "--json")

    dry = json.loads(output(runner, *retract, "--dry-run"))
    done = json.loads(output(runner, *retract))

    counts = ("exposures_ended", "warnings_cancelled", "entries_removed", "staged_keys_dropped")
    assert {name: dry[name] for name in counts} == {name: done[name] for name in counts}
    assert (done["entries_removed"], done["staged_keys_dropped"]) == (8, 6)
    assert stages(runtime) == []
    assert entries(runtime) == 0


def test_a_file_cut_short_by_a_retraction_is_abandoned_with_no_resume_hint(
    runtime: Runtime, runner: FlaskCliRunner, accounts: dict[str, str], tmp_path: Path
) -> None:
    path = write_lines(tmp_path / "leak.txt", FIRST)
    ingest_until_merge(runtime, path, len(FIRST))
    assert "run the same ingest again to resume" in output(runner, "leaks", "show", SLUG)

    output(runner, "leaks", "retract", SLUG, "--reason", "wrong file")

    shown = output(runner, "leaks", "show", SLUG)
    assert "resume" not in shown
    assert "    abandoned, 12 records done" in shown
    (leak_file,) = json.loads(output(runner, "leaks", "show", SLUG, "--json"))["files"]
    assert leak_file["state"] == "abandoned"
    with pytest.raises(LeakRetracted):  # what "interrupted" would have invited
        ingest_leak(runtime, path, slug=SLUG, chunk_records=CHUNK)


def test_forgetting_a_staged_file_drops_its_stage(
    runtime: Runtime, accounts: dict[str, str], tmp_path: Path
) -> None:
    ingest_until_merge(runtime, write_lines(tmp_path / "leak.txt", FIRST), len(FIRST))
    state = file_state(runtime)
    with runtime.db.transaction() as session:
        leak_id = session.scalar(select(Leak.id).where(Leak.slug == SLUG))
        assert leak_id is not None
        forget_file(session, leak_id, state["id"], untouched=False)
    assert stages(runtime) == []


def test_forgetting_a_leaks_last_file_leaves_no_row_naming_the_leak(
    runtime: Runtime, accounts: dict[str, str], tmp_path: Path
) -> None:
    # Exposures and notices name their leak without a foreign key (no cascade): the
    # leak's deletion removes them itself.
    ingest_until_merge(runtime, write_lines(tmp_path / "leak.txt", FIRST), len(FIRST))
    with runtime.db.transaction() as session:
        leak_id = session.scalar(select(Leak.id).where(Leak.slug == SLUG))
        assert leak_id is not None
        assert session.scalar(select(func.count()).where(Exposure.leak_id == leak_id)) == 2
        forget_file(session, leak_id, file_state(runtime)["id"], untouched=False)
    with runtime.db.read_session() as session:
        assert session.scalar(select(func.count()).select_from(Leak)) == 0
        assert session.scalar(select(func.count()).where(Exposure.leak_id == leak_id)) == 0
        assert session.scalar(select(func.count()).where(Notice.leak_id == leak_id)) == 0


@pytest.mark.parametrize(
    "external_id",
    [
        # s3's account comes after the run's account filter and reads the watch list before
        # the merge: nobody flags it yet.
        "u-s3",
        # cy's account is older than the file, but its row is rewritten with a staged
        # address during the ingest: the late look must not leave it out as written before
        # the file.
        "u-cy",
    ],
)
def test_an_account_given_a_staged_address_while_the_file_runs_is_flagged_by_the_merge(
    runtime: Runtime, accounts: dict[str, str], tmp_path: Path, external_id: str
) -> None:
    path = write_lines(tmp_path / "leak.txt", FIRST)
    ingest_until_merge(runtime, path, len(FIRST))
    later = tmp_path / "later"
    later.mkdir()
    load_accounts(runtime, later, {external_id: "s3@example.net"})
    assert flagged(runtime, SLUG) == {"u-ann", "u-ben"}

    report = ingest_leak(runtime, path, slug=SLUG, chunk_records=CHUNK)

    assert (report.run.matched, report.run.notices) == (1, 1)
    assert flagged(runtime, SLUG) == {"u-ann", "u-ben", external_id}
    assert leak_totals(runtime) == FIRST_COUNTS | {"matched": 3, "notices": 3}


def test_the_late_look_leaves_out_accounts_written_before_the_files_opening(
    runtime: Runtime, accounts: dict[str, str], tmp_path: Path
) -> None:
    # s3's account comes while its key is staged: late for the file. Asked as of a
    # transaction horizon taken after that account was written, PostgreSQL leaves it out
    # (every run's account filter would have held it); SQLite keeps no such horizon.
    ingest_until_merge(runtime, write_lines(tmp_path / "leak.txt", FIRST), len(FIRST))
    with runtime.db.read_session() as session:
        before = bulk.snapshot_xmin(session)
    later = tmp_path / "later"
    later.mkdir()
    load_accounts(runtime, later, {"u-s3": "s3@example.net"})
    with runtime.db.transaction() as session:
        # A horizon past s3's write for sure: the first transaction id not yet handed out
        # (the snapshot's xmin may be held back by any open transaction on the server).
        after = 0
        if bulk.is_postgres(session):
            after = session.connection().exec_driver_sql(XMAX).scalar_one()
        leak_id = session.scalars(select(Leak.id).where(Leak.slug == SLUG)).one()
        s3 = session.scalars(select(Account.id).where(Account.external_id == "u-s3")).one()
        assert bulk.merge_stage(session, leak_id, file_state(runtime)["id"]) is not None
        since = utcnow() - pipeline.LATE_ACCOUNT_MARGIN

        def late(horizon: int | None) -> list[int]:
            return late_accounts(session, leak_id, since=since, accounts_xmin=horizon)

        assert late(None) == [s3]
        assert late(before) == [s3]
        assert late(after) == ([] if bulk.is_postgres(session) else [s3])
        session.rollback()


def test_a_file_in_parts_merges_with_its_last_part_and_survives_a_crash_there(
    runtime: Runtime,
    accounts: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lines = [f"s{i % 40}@example.net" for i in range(120)] + ["ann@example.org"] * 3
    path = write_lines(tmp_path / "leak.txt", lines)
    plan = plan_parts(runtime, path, slug=SLUG, parts=3)
    assert len(plan.pending) == 3
    for part_id in plan.pending[:-1]:
        run_part(runtime, part_id, chunk_records=7)
    # Not merged with a part that is not the last.
    assert entries(runtime) == 0
    assert len(stages(runtime)) == 1

    def crash(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("crashed in the merge")

    monkeypatch.setattr("jobs.ingest.parts.merge_file_keys", crash)
    with pytest.raises(RuntimeError):
        run_part(runtime, plan.pending[-1], chunk_records=7)
    with runtime.db.read_session() as session:
        complete = session.scalar(
            select(func.count())
            .select_from(LeakPart)
            .where(LeakPart.state == LeakFileState.COMPLETE)
        )
    assert complete == 2
    assert entries(runtime) == 0
    monkeypatch.undo()

    run_part(runtime, plan.pending[-1], chunk_records=7)

    expected = {"lines": 123, "valid": 123, "invalid": 0, "duplicates": 82, "matched": 1}
    totals = leak_totals(runtime)
    assert {name: totals[name] for name in expected} == expected
    assert file_state(runtime)["state"] is LeakFileState.COMPLETE
    assert entries(runtime) == 41
    assert stages(runtime) == []
    with runtime.db.read_session() as session:
        parts = session.execute(select(func.sum(LeakPart.duplicates), func.sum(LeakPart.valid)))
        assert tuple(parts.one()) == (82, 123)


def test_a_new_file_never_merges_a_stage_left_under_its_id(
    runtime: Runtime, accounts: dict[str, str], tmp_path: Path
) -> None:
    ingest_leak(runtime, write_lines(tmp_path / "a.txt", FIRST), slug=SLUG, chunk_records=CHUNK)
    next_id = file_state(runtime)["id"] + 1
    with runtime.db.transaction() as session:  # keys staged under the id the next file gets
        leak_id = session.scalar(select(Leak.id).where(Leak.slug == SLUG))
        assert leak_id is not None
        bulk.stage_and_match(session, (leak_id, next_id), [bytes([n]) * 16 for n in range(5)], [])
    assert stages(runtime) == [bulk.stage_name(next_id)]

    second = ingest_leak(
        runtime, write_lines(tmp_path / "b.txt", SECOND), slug=SLUG, chunk_records=CHUNK
    )

    with runtime.db.read_session() as session:
        assert session.scalar(select(func.max(LeakFile.id))) == next_id
    assert (second.run.valid, second.run.duplicates) == (6, 4)
    assert entries(runtime) == 10  # none of the five stale keys
    assert stages(runtime) == []


class _Unpackable(PackedKeys):
    """A chunk's packed keys that fail the test when read one by one."""

    __slots__ = ()

    def __iter__(self) -> Any:
        raise AssertionError("the chunk's keys were unpacked")

    def __getitem__(self, index: Any) -> Any:
        raise AssertionError("the chunk's keys were unpacked")


@pytest.mark.parametrize(
    "db_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_a_chunk_is_staged_by_copy_from_its_packed_keys_without_unpacking_them(
    runtime: Runtime,
) -> None:
    """One bytes object per key beside the COPY stream was 6 MiB of a 100,000-record
    chunk (issue 18: the ingest's peak RSS). SQLite inserts a row per key: PostgreSQL only."""
    keys = [bytes([n]) * 15 + bytes([255 - n]) for n in range(200)]
    with runtime.db.sessions() as session:
        bulk.stage_and_match(session, (1, 987_654), _Unpackable(keys), [])
        name = bulk.stage_name(987_654)
        staged = session.execute(text(f"SELECT email_key FROM {name}"))  # noqa: S608
        assert [bytes(row[0]) for row in staged] == keys  # a heap in insertion order
        session.rollback()  # the stage's table too
    assert stages(runtime) == []
