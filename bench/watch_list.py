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
the same full-page-image state. ``--backend sqlite`` runs the same on a SQLite file (its CPU
is this process's).

    .venv/bin/python bench/watch_list.py [--keys 2000000] [--chunk 100000]
        [--existing 2000000] [--backend postgres|sqlite]

A database ``leakguard_bench_watch_<pid>`` on postgres@127.0.0.1 (``LEAKGUARD_BENCH_PG``) is
created and dropped, also when the bench is interrupted.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from common import bench_database_name, create_pg_database, drop_pg_database
from options import at_least, make_parser
from owned import run_bench
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from service.db import bulk, make_engine
from service.db.migrate import upgrade_database

TICK = os.sysconf("SC_CLK_TCK")


def backend_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


class Timer:
    """CPU seconds per statement kind: the server backend's (PostgreSQL) and this process's
    (the driver's, and SQLite's own, which runs in it), and wall seconds."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        self.cpu: dict[str, float] = defaultdict(float)
        self.ours: dict[str, float] = defaultdict(float)
        self.wall: dict[str, float] = defaultdict(float)

    @contextmanager
    def kind(self, name: str) -> Iterator[None]:
        server = backend_cpu(self.pid) if self.pid else 0.0
        ours, wall = time.process_time(), time.perf_counter()
        yield
        self.wall[name] += time.perf_counter() - wall
        self.ours[name] += time.process_time() - ours
        if self.pid:
            self.cpu[name] += backend_cpu(self.pid) - server

    def print(self, design: str, new: int, keys: int, wall: float) -> None:
        server, ours = sum(self.cpu.values()), sum(self.ours.values())
        # SQLite has no server: its work is in this process, in "ours".
        where = f"server {server / keys * 1e6:.2f} us, " if self.pid else ""
        print(
            f"\n{design}: {new:,} new entries of {keys:,} keys; CPU per key: {where}"
            f"ours {ours / keys * 1e6:.2f} us; wall {wall:.1f} s"
        )
        for kind in sorted(self.wall, key=lambda kind: -(self.cpu[kind] + self.ours[kind])):
            where = f"server {self.cpu[kind] / keys * 1e6:5.2f} us, " if self.pid else ""
            print(
                f"  {kind:<22} {where}ours {self.ours[kind] / keys * 1e6:5.2f} us per key; "
                f"wall {self.wall[kind]:6.2f} s"
            )


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


def per_chunk_sqlite(connection: Any, leak_id: int, chunks: list[list[bytes]], timer: Timer) -> int:
    """The SQLite statements of a chunk before issue 18."""
    new = 0
    connection.execute(
        "CREATE TEMP TABLE IF NOT EXISTS ingest_stage (email_key BLOB PRIMARY KEY) WITHOUT ROWID"
    )
    for chunk in chunks:
        with timer.kind("stage (temp, unique)"):
            connection.execute("DELETE FROM ingest_stage")
            connection.executemany(
                "INSERT OR IGNORE INTO ingest_stage (email_key) VALUES (?)", [(k,) for k in chunk]
            )
        with timer.kind("insert leak_entry"):
            cursor = connection.execute(
                "INSERT OR IGNORE INTO leak_entry (email_key, leak_id) "
                "SELECT email_key, ? FROM ingest_stage ORDER BY email_key",
                (leak_id,),
            )
            new += cursor.rowcount
        with timer.kind("commit"):
            connection.commit()
    return new


def sqlite_run(args: argparse.Namespace, keys: list[bytes], chunks: list[list[bytes]]) -> None:
    with tempfile.TemporaryDirectory(prefix="leakguard-bench-watch-") as directory:
        engine = make_engine(f"sqlite:///{directory}/watch.sqlite3")
        upgrade_database(engine)
        rng = random.Random(19)
        for design, leak_id in (("per-chunk", 2), ("staged", 3)):
            with engine.connect() as connection:
                raw: Any = connection.connection.driver_connection
                raw.execute("DELETE FROM leak_entry")
                existing = rng.randbytes(16 * args.existing)
                raw.executemany(
                    "INSERT INTO leak_entry (email_key, leak_id) VALUES (?, 1)",
                    ((existing[i : i + 16],) for i in range(0, len(existing), 16)),
                )
                raw.commit()
            timer = Timer(None)
            started = time.perf_counter()
            if design == "per-chunk":
                with engine.connect() as connection:
                    raw = connection.connection.driver_connection
                    new = per_chunk_sqlite(raw, leak_id, chunks, timer)
            else:
                new = staged(engine, leak_id, 1, chunks, timer)
            timer.print(design, new, len(keys), time.perf_counter() - started)
        engine.dispose()


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("--keys", type=at_least(1), default=2_000_000)
    parser.add_argument("--chunk", type=at_least(1), default=100_000)
    parser.add_argument("--existing", type=at_least(0), default=2_000_000)
    parser.add_argument("--backend", choices=("postgres", "sqlite"), default="postgres")
    args = parser.parse_args()
    if args.backend == "sqlite":
        rng = random.Random(18)
        keys = keys_of(args.keys, rng)
        chunks = [keys[i : i + args.chunk] for i in range(0, len(keys), args.chunk)]
        print(
            f"sqlite; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
            f"{args.keys:,} keys in chunks of {args.chunk:,}; {args.existing:,} keys of another "
            "leak first"
        )
        sqlite_run(args, keys, chunks)
        return
    name = bench_database_name("watch")
    try:  # created inside: a Ctrl-C while it is created still drops it
        url = create_pg_database(name)
        # One pooled connection: every session of the run is the same server backend.
        engine = create_engine(url, pool_size=1, max_overflow=0)
        try:
            measure(engine, args)
        finally:
            engine.dispose()
    finally:
        drop_pg_database(name)


def measure(engine: Any, args: argparse.Namespace) -> None:
    """Both designs on PostgreSQL, each after the other leak's keys and a CHECKPOINT."""
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
        timer.print(design, new, args.keys, time.perf_counter() - started)


if __name__ == "__main__":
    run_bench(main)
