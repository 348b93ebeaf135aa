"""The benches give back what they take, however they end (``bench/owned.py``).

A Redis database is claimed with the test suite's own claim keys, so a bench and a test run
(or two benches) never share one and a bench never empties one that holds another's data;
Ctrl-C stops a bench's child processes, whole trees included, before its PostgreSQL
database, Redis database and files are removed, and the bench exits 130 without a traceback.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import psycopg
import pytest
import redis

from tests.support.bench import BENCH, bench_importer
from tests.support.processes import wait_for
from tests.support.services import (
    PG_ADMIN_URL,
    REDIS_OWNER_KEY,
    REDIS_SERVER_URL,
    claim_redis_database,
    connect_redis_admin,
    redis_claim_key,
    release_redis_database,
)


@pytest.fixture(scope="module")
def bench() -> Iterator[Callable[[str], ModuleType]]:
    """Import a bench module by its plain name, as the benches import each other."""
    with bench_importer() as importer:
        yield importer


@pytest.fixture
def owned(bench: Callable[[str], ModuleType], monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    module = bench("owned")
    monkeypatch.setattr(module, "REDIS_SERVER_URL", REDIS_SERVER_URL)
    return module


@pytest.fixture
def admin() -> Iterator[redis.Redis]:
    connection = connect_redis_admin()  # skips (or fails under CI) without Redis
    yield connection
    connection.close()


def _number(url: str) -> int:
    return int(url.rsplit("/", 1)[1])


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _bench_env() -> dict[str, str]:
    return {
        **os.environ,
        "LEAKGUARD_BENCH_PG": PG_ADMIN_URL,
        "LEAKGUARD_BENCH_REDIS_SERVER": REDIS_SERVER_URL,
    }


def _pg_database_exists(name: str) -> bool:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3) as pg:
        found = pg.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    return found is not None


def test_a_bench_claims_its_redis_database_as_a_test_run_does(
    owned: ModuleType, admin: redis.Redis
) -> None:
    """Benches used fixed databases (10, 12, 13, 14) and emptied them at start: two benches
    at once, or a bench beside a test run that had claimed the same number, wiped each other."""
    assert owned.redis_claim_key(12) == redis_claim_key(12)  # one set of claims for both
    with owned.redis_database() as first, owned.redis_database() as second:
        assert first != second
        for url in (first, second):
            assert admin.get(redis_claim_key(_number(url))) is not None
            with redis.Redis.from_url(url) as database:
                database.set("bench:key", "1")
    for url in (first, second):
        assert admin.get(redis_claim_key(_number(url))) is None
        with redis.Redis.from_url(url) as database:
            assert database.dbsize() == 0


def test_a_bench_never_takes_or_empties_a_database_holding_data(
    owned: ModuleType, admin: redis.Redis
) -> None:
    number = claim_redis_database(admin)
    url = f"{REDIS_SERVER_URL}/{number}"
    try:
        with pytest.raises(owned.RedisUnavailable, match="is in use"), owned.redis_database(url):
            pass  # claimed by this test run
        # Someone's data without a claim, as a service using the database leaves it.
        with redis.Redis.from_url(url) as database:
            database.delete(REDIS_OWNER_KEY)
            database.set("someone:data", "keep")
        admin.delete(redis_claim_key(number))
        with pytest.raises(owned.RedisUnavailable, match="is in use"), owned.redis_database(url):
            pass
        with redis.Redis.from_url(url) as database:
            assert database.get("someone:data") == b"keep"
    finally:
        admin.set(redis_claim_key(number), "pytest")
        release_redis_database(admin, number)


def test_an_unreachable_redis_is_one_line(owned: ModuleType) -> None:
    with (
        pytest.raises(owned.RedisUnavailable, match="not reachable"),
        owned.redis_database("redis://127.0.0.1:1/3"),
    ):
        pass


def test_stopping_the_children_ends_their_whole_trees(owned: ModuleType) -> None:
    """A wrapper's command, rq's work horse (a session of its own) and a process that
    ignores SIGTERM are all gone once ``stop_children`` returns."""
    tree = owned.start(["sh", "-c", "setsid sleep 300 & sleep 300 & wait"])
    stubborn = owned.start(["sh", "-c", "trap '' TERM; sleep 300 & wait"])
    wait_for(
        lambda: len(owned.descendants(tree.pid)) == 2 and bool(owned.descendants(stubborn.pid)),
        timeout=10,
        what="the children's own children",
    )
    pids = [
        tree.pid,
        stubborn.pid,
        *owned.descendants(tree.pid),
        *owned.descendants(stubborn.pid),
    ]
    owned.stop_children(grace=1.0)
    assert [pid for pid in pids if _running(pid)] == []
    assert tree.returncode is not None
    assert stubborn.returncode is not None


SCRIPT = """
import sys, time
sys.path.insert(0, {bench!r})
from common import bench_database_name, create_pg_database, drop_pg_database
from owned import redis_database, run_bench, start

def main():
    name = bench_database_name("interrupted")
    create_pg_database(name)
    try:
        with redis_database() as url:
            child = start(["sh", "-c", "setsid sleep 300 & sleep 300 & wait"])
            time.sleep(0.5)
            print("READY", name, url, child.pid, flush=True)
            time.sleep(300)
    finally:
        drop_pg_database(name)

run_bench(main)
"""


def test_ctrl_c_stops_a_bench_and_removes_what_it_made(
    tmp_path: Path, owned: ModuleType, admin: redis.Redis
) -> None:
    script = tmp_path / "a_bench.py"
    script.write_text(SCRIPT.format(bench=str(BENCH)))
    process = subprocess.Popen(
        [sys.executable, str(script)],
        env=_bench_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        ready = process.stdout.readline().split()
        assert ready[:1] == ["READY"], process.stderr.read() if process.stderr else ""
        _, name, url, child = ready
        tree = [int(child), *owned.descendants(int(child))]
        assert len(tree) == 3
        assert _pg_database_exists(name)
        process.send_signal(signal.SIGINT)  # the terminal's Ctrl-C reaches the bench alone
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == "interrupted: the bench stopped and cleaned up"
    assert [pid for pid in tree if _running(pid)] == []
    assert not _pg_database_exists(name)
    assert admin.get(redis_claim_key(_number(url))) is None
    with redis.Redis.from_url(url) as database:
        assert database.dbsize() == 0


def test_ctrl_c_in_a_real_bench_drops_its_database(tmp_path: Path) -> None:
    """``bench/watch_list.py`` interrupted while it generates its keys: exit 130 in a line,
    its database dropped (it ended in a KeyboardInterrupt traceback before)."""
    process = subprocess.Popen(
        [sys.executable, str(BENCH / "watch_list.py"), "--keys", "5000000", "--existing", "0"],
        env=_bench_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    name = f"leakguard_bench_watch_{process.pid}"
    try:
        wait_for(lambda: _pg_database_exists(name), timeout=60, what="the bench's database")
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, err
    assert "Traceback" not in err
    assert not _pg_database_exists(name)


# A bench's smallest run that gets as far as creating its PostgreSQL database.
SMALLEST = {
    "deliver": ["--backend", "postgres", "--notices", "1", "--workers", "1"],
    "email_change": ["--backend", "postgres", "--notices", "1", "--samples", "1"],
    "enumeration": ["--backend", "postgres", "--requests", "2"],
    "incident": ["--accounts", "1", "--leaked", "1", "--mails", "1", "--per-mail", "1"],
    "watch_list": ["--keys", "1"],
    "bulk_dismiss": ["--accounts", "1", "--exposed", "1"],
    "risk": ["--accounts", "2", "--exposures", "1", "--profile-only"],
    "import_accounts": ["--rows", "1", "--backends", "postgres"],
    "ingest": ["--lines", "10000", "--accounts", "1", "--backends", "postgres"],
}


@pytest.mark.parametrize("name", sorted(SMALLEST))
def test_a_bench_interrupted_while_it_creates_its_database_drops_it(
    bench: Callable[[str], ModuleType], monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """The benches created the database and only then entered the ``try`` that drops it:
    a Ctrl-C in between (seen: ``bench/enumeration.py`` at 3 s) left it on the server."""
    common, module = bench("common"), bench(name)
    monkeypatch.setattr(common, "PG_ADMIN_URL", PG_ADMIN_URL)
    created: list[str] = []
    create = common.create_pg_database

    def create_then_interrupted(database: str) -> str:
        created.append(database)
        create(database)
        raise KeyboardInterrupt  # as a Ctrl-C right after the CREATE DATABASE

    # A bench creates its database itself, or through common.backend_database.
    where = module if hasattr(module, "create_pg_database") else common
    monkeypatch.setattr(where, "create_pg_database", create_then_interrupted)
    monkeypatch.setattr(sys, "argv", [f"{name}.py", *SMALLEST[name]])
    with pytest.raises(KeyboardInterrupt):
        module.main()
    assert len(created) == 1
    assert not _pg_database_exists(created[0])
