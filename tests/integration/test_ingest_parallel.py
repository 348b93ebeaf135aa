"""One leak, ingested by two real `leakguard worker` processes through the real Redis.

The totals must be exact whatever the number of workers, and a worker SIGKILLed in the
middle of a part must lose nothing: its part is taken up again from its last commit. The
operator's `leakguard ingest --enqueue` runs in this process, on an app with the workers'
settings.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskCliRunner
from sqlalchemy import func, select

from jobs.account_import import import_accounts
from service.models import Exposure, LeakEntry, LeakFile, LeakPart, Notice, NoticeState
from service.runtime import Runtime
from tests.support.cli import LEAKGUARD, cli_env, invoke, json_output, start_leakguard
from tests.support.processes import kill_session

ACCOUNTS = 3000
LEAK_LINES = 60_000
# Small chunks: many commits per part, so a kill lands between two of them.
CHUNK_RECORDS = 1500


@pytest.fixture
def postgres_only(db_url: str) -> str:
    if not db_url.startswith("postgresql"):
        pytest.skip("workers on many machines share PostgreSQL; SQLite is one process's")
    return db_url


def environment(db_url: str, redis_url: str, instance: Path) -> dict[str, str]:
    """The workers' environment; at INFO, rq logs each job a worker takes."""
    return cli_env(
        db_url,
        instance,
        LEAKGUARD_REDIS_URL=redis_url,
        LEAKGUARD_INGEST_CHUNK_RECORDS=str(CHUNK_RECORDS),
        LEAKGUARD_LOG_LEVEL="INFO",
    )


@pytest.fixture
def operator(make_app: Callable[..., Flask], redis_url: str) -> FlaskCliRunner:
    """``leakguard`` with the workers' settings, for the operator's commands."""
    return make_app(redis_url=redis_url, ingest_chunk_records=CHUNK_RECORDS).test_cli_runner()


def write_leak(runtime: Runtime, tmp_path: Path) -> Path:
    accounts = tmp_path / "accounts.csv"
    accounts.write_text(
        "external_id,email\n" + "".join(f"u{i},Person.{i}@Example.org\n" for i in range(ACCOUNTS))
    )
    assert import_accounts(runtime, accounts).created == ACCOUNTS
    lines = []
    for i in range(LEAK_LINES):
        if i % 20 == 0:
            lines.append(f"person.{(i // 20) % ACCOUNTS}+leak@example.org")  # 3,000 hits
        elif i % 101 == 0:
            lines.append("not an address")
        else:
            lines.append(f"stranger{i % 40_000}@example.net")  # duplicates too
    leak = tmp_path / "leak.txt"
    leak.write_text("\n".join(lines) + "\n")
    return leak


def expected_counts() -> dict[str, int]:
    invalid = sum(1 for i in range(LEAK_LINES) if i % 20 != 0 and i % 101 == 0)
    hits = {(i // 20) % ACCOUNTS for i in range(0, LEAK_LINES, 20)}
    strangers = {i % 40_000 for i in range(LEAK_LINES) if i % 20 != 0 and i % 101 != 0}
    valid = LEAK_LINES - invalid
    return {
        "lines": LEAK_LINES,
        "valid": valid,
        "invalid": invalid,
        "duplicates": valid - len(hits) - len(strangers),
        "matched": len(hits),
        "notices": len(hits),
    }


@pytest.fixture
def workers(
    runtime: Runtime, postgres_only: str, redis_url: str, tmp_path: Path
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Worker processes, killed before ``runtime`` empties the tables they write to."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        kill_session(process.pid)
        process.wait(timeout=30)


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return start_leakguard(env, "worker", log=log)


def database_state(runtime: Runtime) -> dict[str, int]:
    with runtime.db.read_session() as session:
        return {
            "leak_entries": session.scalar(select(func.count()).select_from(LeakEntry)) or 0,
            "exposures": session.scalar(select(func.count()).select_from(Exposure)) or 0,
            "notices": session.scalar(select(func.count()).select_from(Notice)) or 0,
        }


def ingest(operator: FlaskCliRunner, leak: Path, *extra: str) -> dict[str, object]:
    args = ("ingest", str(leak), "--leak", "parallel", "--enqueue", "--json", *extra)
    summary: dict[str, object] = json_output(invoke(operator, *args))
    return summary


def test_two_workers_ingest_one_leak_with_exact_totals(
    runtime: Runtime,
    postgres_only: str,
    redis_url: str,
    operator: FlaskCliRunner,
    tmp_path: Path,
    workers: list[subprocess.Popen[bytes]],
) -> None:
    leak = write_leak(runtime, tmp_path)
    env = environment(postgres_only, redis_url, tmp_path / "instance")
    logs = [tmp_path / "worker-a.log", tmp_path / "worker-b.log"]
    workers.extend(start_worker(env, log) for log in logs)
    summary = ingest(operator, leak, "--parts", "8")
    expected = expected_counts()
    assert {name: summary[name] for name in expected} == expected
    assert summary["complete"] is True
    assert summary["parts"] == 8
    state = database_state(runtime)
    assert state["exposures"] == state["notices"] == expected["matched"]
    assert state["leak_entries"] == expected["valid"] - expected["duplicates"]
    # Both workers took parts: the leak really was spread over them.
    for log in logs:
        assert "ingest_part" in log.read_text(), log.read_text()[-2000:]
    again = ingest(operator, leak)
    assert again["already_ingested"] is True
    assert again["matched"] == again["notices"] == 0


def test_a_worker_killed_mid_part_loses_nothing(
    runtime: Runtime,
    postgres_only: str,
    redis_url: str,
    operator: FlaskCliRunner,
    tmp_path: Path,
    workers: list[subprocess.Popen[bytes]],
) -> None:
    leak = write_leak(runtime, tmp_path)
    env = environment(postgres_only, redis_url, tmp_path / "instance")
    planned = ingest(operator, leak, "--parts", "3", "--no-wait")
    assert planned["complete"] is False
    victim = start_worker(env, tmp_path / "victim.log")
    workers.append(victim)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until a part is part-way: committed, not done
        with runtime.db.read_session() as session:
            busy = session.scalar(
                select(func.count())
                .select_from(LeakPart)
                .where(LeakPart.records_done > 0, LeakPart.state != "complete")
            )
        if busy:
            break
        time.sleep(0.02)
    else:
        pytest.fail("the worker never committed a chunk")
    # The whole session: rq's work horse leaves the worker's process group, and a kill of
    # the group alone would let it finish the part.
    kill_session(victim.pid)
    victim.wait(timeout=30)
    with runtime.db.read_session() as session:
        unfinished = session.scalar(
            select(func.count()).select_from(LeakPart).where(LeakPart.state != "complete")
        )
    assert unfinished, "the kill came too late to test anything"
    workers.append(start_worker(env, tmp_path / "survivor.log"))
    # The operator runs the same command again: it waits, and re-enqueues the dead part.
    summary = ingest(operator, leak)
    assert summary["complete"] is True
    with runtime.db.read_session() as session:
        leak_file = session.scalars(select(LeakFile)).one()
        totals = {name: getattr(leak_file, name) for name in expected_counts()}
    assert totals == expected_counts()
    state = database_state(runtime)
    assert state["exposures"] == state["notices"] == expected_counts()["matched"]


def test_a_burst_worker_sends_the_warnings_of_the_parts_it_ran(
    runtime: Runtime,
    postgres_only: str,
    redis_url: str,
    operator: FlaskCliRunner,
    tmp_path: Path,
) -> None:
    """Found by trying: `ingest --enqueue --no-wait` then `worker --burst` ran every part
    but left their warnings pending (the burst relayed once, before the parts ran)."""
    leak = write_leak(runtime, tmp_path)
    planned = ingest(operator, leak, "--parts", "4", "--no-wait")
    assert planned["enqueued"] == 4
    env = environment(postgres_only, redis_url, tmp_path / "instance")
    subprocess.run(
        [str(LEAKGUARD), "worker", "--burst"], env=env, check=True, timeout=600, capture_output=True
    )
    with runtime.db.read_session() as session:
        states = dict(
            session.execute(select(Notice.state, func.count()).group_by(Notice.state)).all()
        )
    assert states == {NoticeState.SENT: expected_counts()["notices"]}
