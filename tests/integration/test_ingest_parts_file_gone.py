"""A split ingest (--enqueue) whose file is gone when a part runs: the part stops the run
instead of failing and being retried forever, `leaks show` says the file is interrupted and
waits for its file (and what to do), and the run after the file is back records only the
time of work, not the wait in between."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskCliRunner

from jobs.ingest.parts import plan_parts, run_part, wait_for_parts
from jobs.queues import redis_connection
from service.runtime import Runtime
from tests.support.cli import invoke, json_output, output
from tests.support.factories import make_account
from tests.support.leakfiles import write_lines

GAP_SECONDS = 3.0  # the file is away this long: no run's time may hold it


def test_a_part_without_its_file_stops_the_run_and_the_rerun_times_only_work(
    runtime: Runtime,
    runner: FlaskCliRunner,
    make_app: Callable[..., Flask],
    redis_url: str,
    tmp_path: Path,
) -> None:
    make_account(runtime, "anna", "anna@example.org")
    path = write_lines(
        tmp_path / "leak.txt", ["anna@example.org", *(f"u{n}@example.com" for n in range(2000))]
    )
    started = time.monotonic()
    plan = plan_parts(runtime, path, slug="moved", parts=2)
    away = path.rename(tmp_path / "elsewhere.txt")

    for part_id in plan.pending:  # the rq job's body: no exception, so no retry
        assert run_part(runtime, part_id).lines == 0

    progress = wait_for_parts(runtime, plan, redis_connection(runtime.settings), poll_seconds=60)
    assert (progress.stopped, progress.done) == (True, False)
    for face in (runner, make_app(redis_url=redis_url).test_cli_runner()):  # embedded, Redis
        shown = json_output(invoke(face, "leaks", "show", "moved", "--json"))
        assert (shown["state"], shown["files"][0]["state"]) == ("interrupted", "interrupted")
    text = output(runner, "leaks", "show", "moved")
    assert (
        f"waiting for its file: {path} is gone; put it back there, then run the same ingest "
        "again to resume"
    ) in text
    stopped = json_output(invoke(runner, "leaks", "show", "moved", "--json"))["files"][0]
    assert (stopped["runs"], len(stopped["run_seconds"])) == (1, 1)

    time.sleep(GAP_SECONDS)
    away.rename(path)
    rerun = invoke(runner, "ingest", str(path), "--leak", "moved", "--enqueue", "--quiet")
    wall = time.monotonic() - started

    assert rerun.exit_code == 0, rerun.output
    final = json_output(invoke(runner, "leaks", "show", "moved", "--json"))["files"][0]
    assert (final["state"], final["runs"], len(final["run_seconds"])) == ("complete", 2, 2)
    assert final["lines"] == 2001
    assert final["seconds"] == pytest.approx(sum(final["run_seconds"]), abs=0.002)
    assert final["seconds"] < wall - GAP_SECONDS
