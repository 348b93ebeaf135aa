"""`leakguard ingest` hands its warnings to the queue at once when Redis is shared."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from redis import Redis

from jobs.queues import QueueName, get_queue
from service.runtime import Runtime
from tests.support.cli import cli_env, run_leakguard
from tests.support.delivery import states
from tests.support.leakfiles import write_accounts_csv, write_lines

ACCOUNTS = {f"acct-{i}": f"relay.member{i}@example.com" for i in range(3)}


def accounts_and_leak(
    runtime: Runtime, db_url: str, redis_url: str, tmp_path: Path
) -> tuple[dict[str, str], Path]:
    """The CLI's environment with Redis, ACCOUNTS imported, and a leak of them and a stranger."""
    env = cli_env(db_url, runtime.settings.instance_dir, LEAKGUARD_REDIS_URL=redis_url)
    imported = run_leakguard(
        env, "accounts", "import", str(write_accounts_csv(tmp_path / "a.csv", ACCOUNTS))
    )
    assert imported.returncode == 0, imported.stderr
    return env, write_lines(tmp_path / "leak.txt", [*ACCOUNTS.values(), "stranger@example.org"])


@pytest.mark.redis
def test_ingest_relays_its_warnings_to_the_queue_at_once(
    runtime: Runtime, db_url: str, redis_url: str, tmp_path: Path
) -> None:
    env, leak = accounts_and_leak(runtime, db_url, redis_url, tmp_path)
    result = run_leakguard(env, "ingest", str(leak), "--leak", "relay-2026", "--json", "--quiet")
    assert result.returncode == 0, result.stderr
    assert states(runtime) == Counter(queued=3)  # no worker ran: only the relay
    queue = get_queue(QueueName.DEFAULT, Redis.from_url(redis_url))
    assert [len(job.args[0]) for job in queue.get_jobs()] == [3]
    assert result.stdout.lstrip().startswith("{")  # --json: the summary alone on stdout

    again = run_leakguard(env, "ingest", str(leak), "--leak", "relay-2026")
    assert again.returncode == 0, again.stderr
    assert "relayed" not in again.stderr  # nothing new: nothing to relay
    assert len(queue.get_jobs()) == 1


@pytest.mark.redis
def test_ingest_relays_each_chunks_warnings_as_it_commits(
    runtime: Runtime, db_url: str, redis_url: str, tmp_path: Path
) -> None:
    env, leak = accounts_and_leak(runtime, db_url, redis_url, tmp_path)
    result = run_leakguard(env, "ingest", str(leak), "--leak", "relay-2026", "--chunk-records", "1")
    assert result.returncode == 0, result.stderr
    assert states(runtime) == Counter(queued=3)
    # One job per chunk that flagged someone, handed on as that chunk committed: the first
    # warnings go out while the rest of the file is read, not after the whole file.
    queue = get_queue(QueueName.DEFAULT, Redis.from_url(redis_url))
    assert [len(job.args[0]) for job in queue.get_jobs()] == [1, 1, 1]
    assert "relayed 3 notices to the queue" in result.stderr


def test_ingest_with_redis_unreachable_succeeds_and_says_so_once(
    runtime: Runtime, db_url: str, tmp_path: Path
) -> None:
    closed = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    env = cli_env(db_url, runtime.settings.instance_dir, LEAKGUARD_REDIS_URL=closed)
    run_leakguard(env, "accounts", "import", str(write_accounts_csv(tmp_path / "a.csv", ACCOUNTS)))
    leak = write_lines(tmp_path / "leak.txt", list(ACCOUNTS.values()))
    result = run_leakguard(env, "ingest", str(leak), "--leak", "relay-2026", "--chunk-records", "1")
    assert result.returncode == 0, result.stderr
    assert states(runtime) == Counter(pending=3)  # for the workers' relay, once Redis is back
    assert result.stderr.count("the warnings stay pending, the workers relay them") == 1


def test_ingest_without_redis_leaves_the_warnings_pending(
    runtime: Runtime, db_url: str, tmp_path: Path
) -> None:
    env = cli_env(db_url, runtime.settings.instance_dir)
    run_leakguard(env, "accounts", "import", str(write_accounts_csv(tmp_path / "a.csv", ACCOUNTS)))
    leak = write_lines(tmp_path / "leak.txt", list(ACCOUNTS.values()))
    result = run_leakguard(env, "ingest", str(leak), "--leak", "relay-2026")
    assert result.returncode == 0, result.stderr
    assert states(runtime) == Counter(pending=3)  # for `leakguard worker --burst`
