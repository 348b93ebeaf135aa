"""PostgreSQL's CPU per statement kind for an ingest's watch-list writes; prints figures.

Issue 18 measured PostgreSQL at about 20 us of CPU per plain line. This isolates the
statements a chunk and a file's end send, without the reader or the accounts, and times
the server's own backend (user+system CPU from ``/proc/<backend pid>/stat``, so other
users of the server are not counted), per statement kind, for two designs:

- ``per-chunk``: the design before issue 18. Each chunk COPYs its keys into a temporary
  table, then ``INSERT INTO leak_entry SELECT DISTINCT ... ORDER BY 1 ON CONFLICT DO
  NOTHING``.
- ``staged``: what ``service.db.bulk`` does now. Each chunk COPYs its keys into the file's
  own table (``stage_and_match``), and the file's end merges them once (``merge_stage``).

The keys are random 16-byte keys, 5 % of them repeats, in chunks of ``--chunk`` keys (the
ingest's default chunk). ``--existing`` keys of another leak are in the watch list first
(a server that holds earlier leaks). A CHECKPOINT before each design, so each starts with
the same full-page-image state.

    .venv/bin/python bench/watch_list.py [--keys 2000000] [--chunk 100000]
        [--existing 2000000]

A database ``leakguard_bench_watch_<pid>`` on postgres@127.0.0.1 is created and dropped.
"""

from __future__ import annotations

import argparse
import os
import random
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from service.db import bulk
from service.db.migrate import upgrade_database

SERVER = "postgresql://postgres@127.0.0.1:5432"
TICK = os.sysconf("SC_CLK_TCK")


def backend_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


class Timer:
    """Server CPU seconds and wall seconds per statement kind."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.cpu: dict[str, float] = defaultdict(float)
        self.wall: dict[str, float] = defaultdict(float)

    @contextmanager
    def kind(self, name: str) -> Iterator[None]:
        cpu, wall = backend_cpu(self.pid), time.perf_counter()
        yield
        self.wall[name] += time.perf_counter() - wall
        self.cpu[name] += backend_cpu(self.pid) - cpu


def keys_of(count: int, rng: random.Random) -> list[bytes]:
    keys = [rng.randbytes(16) for _ in range(count)]
    for i in range(0, count, 20):  # 5 % repeat an earlier key
        keys[i] = keys[rng.randrange(i + 1)]
    return keys


def per_chunk(connection: Any, leak_id: int, chunks: list[list[bytes]], timer: Timer) -> int:
    new = 0
    with connection.cursor() as cursor:
        cursor.execute("CREATE TEMP TABLE IF NOT EXISTS ingest_stage (email_key bytea NOT NULL)")
        connection.commit()
        for chunk in chunks:
            cursor.execute("SET LOCAL synchronous_commit = off")
            with timer.kind("truncate temp"):
                cursor.execute("TRUNCATE ingest_stage")
            with (
                timer.kind("copy (write_row)"),
                cursor.copy("COPY ingest_stage (email_key) FROM STDIN (FORMAT BINARY)") as copy,
            ):
                copy.set_types(["bytea"])
                for key in chunk:
                    copy.write_row((key,))
            with timer.kind("insert leak_entry"):
                cursor.execute(
                    "INSERT INTO leak_entry (email_key, leak_id) SELECT DISTINCT email_key, %s "
                    "FROM ingest_stage ORDER BY 1 ON CONFLICT DO NOTHING",
                    (leak_id,),
                )
                new += cursor.rowcount
            with timer.kind("commit"):
                connection.commit()
    return new


def staged(engine: Any, leak_id: int, file_id: int, chunks: list[list[bytes]], timer: Timer) -> int:
    with Session(engine) as session:
        for chunk in chunks:
            with timer.kind("stage (copy, buffer)"):
                bulk.stage_and_match(session, (leak_id, file_id), chunk, [])
            with timer.kind("commit"):
                session.commit()
        with timer.kind("merge"):
            merged = bulk.merge_stage(session, leak_id, file_id)
        with timer.kind("commit"):
            session.commit()
    return 0 if merged is None else merged[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=2_000_000)
    parser.add_argument("--chunk", type=int, default=100_000)
    parser.add_argument("--existing", type=int, default=2_000_000)
    args = parser.parse_args()
    name = f"leakguard_bench_watch_{os.getpid()}"
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    # One pooled connection: every session of the run is the same server backend.
    engine = create_engine(
        f"{SERVER.replace('postgresql', 'postgresql+psycopg')}/{name}", pool_size=1, max_overflow=0
    )
    try:
        upgrade_database(engine)
        rng = random.Random(18)
        keys = keys_of(args.keys, rng)
        chunks = [keys[i : i + args.chunk] for i in range(0, len(keys), args.chunk)]
        print(
            f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {args.keys:,} keys "
            f"in chunks of {args.chunk:,}; {args.existing:,} keys of another leak first"
        )
        for design, leak_id in (("per-chunk", 2), ("staged", 3)):
            with engine.connect() as connection:
                raw: Any = connection.connection.driver_connection
                raw.autocommit = True
                raw.execute("DELETE FROM leak_entry")
                raw.execute("VACUUM leak_entry")
                existing = rng.randbytes(16 * args.existing)
                with (
                    raw.cursor() as cursor,
                    cursor.copy("COPY leak_entry FROM STDIN (FORMAT BINARY)") as copy,
                ):
                    copy.set_types(["bytea", "int8"])
                    for i in range(0, len(existing), 16):
                        copy.write_row((existing[i : i + 16], 1))
                raw.execute("CHECKPOINT")
                pid = raw.execute("SELECT pg_backend_pid()").fetchone()[0]
                raw.autocommit = False
            timer = Timer(pid)
            started = time.perf_counter()
            if design == "per-chunk":
                with engine.connect() as connection:
                    new = per_chunk(connection.connection.driver_connection, leak_id, chunks, timer)
            else:
                new = staged(engine, leak_id, 1, chunks, timer)
            wall = time.perf_counter() - started
            total = sum(timer.cpu.values())
            print(
                f"\n{design}: {new:,} new entries of {args.keys:,} keys; server CPU "
                f"{total:.2f} s = {total / args.keys * 1e6:.2f} us per key; wall {wall:.1f} s"
            )
            for kind, cpu in sorted(timer.cpu.items(), key=lambda item: -item[1]):
                print(
                    f"  {kind:<22} server CPU {cpu:6.2f} s = {cpu / args.keys * 1e6:5.2f} us "
                    f"per key; wall {timer.wall[kind]:6.2f} s"
                )
    finally:
        engine.dispose()
        with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


if __name__ == "__main__":
    main()
