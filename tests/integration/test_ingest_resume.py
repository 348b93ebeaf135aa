"""An ingest killed with SIGKILL at many points and run again ends exactly where one clean run
ends (SECURITY.md, "Ingest: idempotent and resumable"), on SQLite and PostgreSQL.

The clean run is made once, on a SQLite database of its own: both backends must end in
that very state. The kills hit the installed console script; the run that finishes the
file, and the one after it, are the same command in this process.
"""

from __future__ import annotations

import random
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskCliRunner
from sqlalchemy import func, select

from jobs.ingest.pipeline import ingest_leak
from service.config import Settings
from service.db.migrate import upgrade_database
from service.leaks.counters import COUNTERS
from service.models import Leak, LeakEntry, LeakFile
from service.runtime import Runtime, build_runtime
from tests.support.cli import LEAKGUARD, cli_env, invoke, json_output
from tests.support.db import exposures, notices
from tests.support.factories import load_accounts
from tests.support.leakfiles import BigLeak, write_big_leak
from tests.support.settings import make_settings

SLUG = "exchange-2019"
CHUNK_RECORDS = 2000
# Kill windows as fractions of the file: each kill lands later than the one before, so every
# run resumes a file that an earlier kill left part-done.
KILL_WINDOWS = ((0.05, 0.25), (0.35, 0.55), (0.65, 0.85))
POLL_SECONDS = 0.002


def snapshot(runtime: Runtime) -> dict[str, Any]:
    """Everything an ingest decides: counters, resume point, flags, warnings, watch list."""
    with runtime.db.read_session() as session:
        leaks = session.execute(
            select(Leak.slug, *(getattr(Leak, name) for name in COUNTERS))
        ).all()
        files = session.execute(
            select(
                LeakFile.sha256,
                LeakFile.state,
                LeakFile.records_done,
                LeakFile.invalid_lines,
                *(getattr(LeakFile, name) for name in COUNTERS),
            )
        ).all()
        entries = session.scalar(select(func.count()).select_from(LeakEntry))
    return {
        "leaks": [tuple(row) for row in leaks],
        "files": [tuple(row) for row in files],
        "leak_entries": entries,
        "exposures": exposures(runtime),
        "notices": notices(runtime),  # a list: a doubled warning would show twice
    }


def records_done(runtime: Runtime) -> int:
    with runtime.db.read_session() as session:
        return session.scalar(select(func.coalesce(func.max(LeakFile.records_done), 0))) or 0


def start_ingest(env: dict[str, str], path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            str(LEAKGUARD),
            *("ingest", str(path), "--leak", SLUG),
            *("--chunk-records", str(CHUNK_RECORDS), "--json"),
        ],
        env=env,
        cwd=env["LEAKGUARD_INSTANCE_DIR"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def kill(process: subprocess.Popen[str]) -> None:
    assert process.poll() is None, f"the run ended before the kill: {process.communicate()}"
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)
    assert process.returncode == -signal.SIGKILL


def file_registered(runtime: Runtime) -> bool:
    with runtime.db.read_session() as session:
        return session.scalar(select(func.count()).select_from(LeakFile)) == 1


def past(runtime: Runtime, threshold: int) -> Callable[[], bool]:
    return lambda: records_done(runtime) >= threshold


def kill_when(
    runtime: Runtime, env: dict[str, str], path: Path, reached: Callable[[], bool]
) -> int:
    """Run the ingest, SIGKILL it as soon as ``reached()``; return the committed resume point."""
    process = start_ingest(env, path)
    deadline = time.monotonic() + 60
    while not reached():
        assert process.poll() is None, f"the run ended early: {process.communicate()}"
        assert time.monotonic() < deadline, "no progress within 60 s"
        time.sleep(POLL_SECONDS)
    kill(process)
    return records_done(runtime)


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> BigLeak:
    return write_big_leak(
        tmp_path_factory.mktemp("big-leak"),
        accounts=2000,
        lines=200_000,
        leaked_accounts=300,
        seed=2019,
    )


@pytest.fixture(scope="module")
def clean_run_state(big: BigLeak, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The state one uninterrupted run leaves, on a database of its own."""
    directory = tmp_path_factory.mktemp("clean-run")
    clean = build_runtime(
        make_settings(f"sqlite:///{directory / 'clean.sqlite3'}", directory / "instance")
    )
    try:
        upgrade_database(clean.db.engine)
        load_accounts(clean, directory, big.accounts)
        ingest_leak(clean, big.path, slug=SLUG, chunk_records=CHUNK_RECORDS)
        return snapshot(clean)
    finally:
        clean.db.dispose()


def test_invariant_ingest_killed_at_random_points_resumes_to_the_clean_run_state(
    runtime: Runtime,
    settings: Settings,
    runner: FlaskCliRunner,
    big: BigLeak,
    clean_run_state: dict[str, Any],
    tmp_path: Path,
) -> None:
    seed = random.randrange(1 << 32)
    rng = random.Random(seed)
    expected = clean_run_state
    assert 250 <= len(expected["exposures"]) <= 300  # the file really flags a few hundred
    files = expected["files"]
    assert files[0][2] == big.lines  # records_done: every line is a record
    load_accounts(runtime, tmp_path, big.accounts)
    env = cli_env(settings.resolved_database_url, settings.instance_dir)

    # Two kills before the first commit: while the process starts, and (most runs) between
    # registering the file and committing its first chunk.
    early = start_ingest(env, big.path)
    time.sleep(rng.uniform(0.05, 0.3))
    kill(early)
    assert records_done(runtime) == 0
    kill_points = [kill_when(runtime, env, big.path, lambda: file_registered(runtime))]
    for low, high in KILL_WINDOWS:
        threshold = int(rng.uniform(low, high) * big.lines)
        kill_points.append(kill_when(runtime, env, big.path, past(runtime, threshold)))
    assert kill_points == sorted(kill_points), f"seed {seed}: {kill_points}"
    assert len(set(kill_points[1:])) == 3, f"seed {seed}: {kill_points}"
    assert 0 < kill_points[-1] < big.lines, f"seed {seed}: {kill_points}"

    final = json_output(
        invoke(
            runner,
            *("ingest", str(big.path), "--leak", SLUG),
            *("--chunk-records", str(CHUNK_RECORDS), "--json"),
        )
    )

    assert final["resumed_at_record"] == kill_points[-1] > 0
    assert final["lines"] == big.lines - kill_points[-1]
    assert snapshot(runtime) == expected, f"seed {seed}, killed at {kill_points}"
    with runtime.db.read_session() as session:
        runs, run_seconds, seconds = session.execute(
            select(LeakFile.runs, LeakFile.run_seconds, LeakFile.seconds)
        ).one()
    # Every killed run that committed a chunk counts, with its time, beside the last one.
    assert runs >= 4, run_seconds
    assert len(run_seconds) == runs
    assert seconds == pytest.approx(sum(run_seconds))
    again = json_output(invoke(runner, "ingest", str(big.path), "--leak", SLUG, "--json"))
    assert again["already_ingested"] is True
    assert (again["matched"], again["notices"]) == (0, 0)
    assert snapshot(runtime) == expected
