"""What the benchmarks share: a throw-away PostgreSQL database, and the address mix.

Each bench runs as a script (`python bench/<name>.py`), so this module is imported by its
plain name from the bench folder.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from owned import stop_children

PG_ADMIN_URL = os.environ.get("LEAKGUARD_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")

# Mail domains weighted roughly as in leaked lists of European consumer accounts, with the
# cases the canonical form treats specially: gmail dots, googlemail, an IDN domain.
DOMAINS = (
    ("gmail.com", 28),
    ("googlemail.com", 3),
    ("yahoo.com", 8),
    ("outlook.com", 9),
    ("hotmail.com", 5),
    ("web.de", 8),
    ("gmx.de", 8),
    ("proton.me", 5),
    ("posteo.de", 3),
    ("icloud.com", 6),
    ("fastmail.com", 2),
    ("bücher.de", 1),
    ("example-corp.com", 4),
    ("mail.example.co.uk", 2),
)


# A child's ru_maxrss starts at its parent's RSS at fork time (the kernel carries the old
# memory map's high-water mark across exec), and a bench holds its generated data by then.
# So a measured command is started by this small fresh interpreter, which forks the real
# command and writes that grandchild's own "<peak RSS KiB> <CPU seconds>" to the file named
# by its first argument (wait4 also covers the command's waited-for children, such as rq's
# work horses). Usage: [sys.executable, "-c", RUSAGE_WRAPPER, usage_file, *command].
RUSAGE_WRAPPER = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as out:
    out.write(f"{usage.ru_maxrss} {usage.ru_utime + usage.ru_stime}")
code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
"""


def pg_url(name: str) -> str:
    """The psycopg URL of database ``name`` on the bench's PostgreSQL server."""
    return f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"


def bench_database_name(bench: str) -> str:
    """``leakguard_bench_<bench>_<pid>``: two runs of a bench at once never share (or drop)
    each other's database."""
    return f"leakguard_bench_{bench}_{os.getpid()}"


def _admin() -> psycopg.Connection[Any]:
    """The administrative connection; an unreachable server ends the bench in one line."""
    try:
        return psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        sys.exit(f"PostgreSQL not reachable at {PG_ADMIN_URL} (LEAKGUARD_BENCH_PG): {reason}")


def create_pg_database(name: str) -> str:
    """Create ``name`` afresh (dropping a leftover); return its SQLAlchemy URL."""
    with _admin() as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    return pg_url(name).replace("postgresql://", "postgresql+psycopg://")


def drop_pg_database(name: str) -> None:
    """Drop ``name`` once no process this bench started can still use it."""
    stop_children()
    with _admin() as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def backend_database(backend: str, directory: Path, name: str) -> Iterator[str]:
    """The URL of the bench's database: a SQLite file in ``directory``, or the PostgreSQL
    database ``name``, created here and dropped however the block ends (a Ctrl-C while it
    is being created included)."""
    try:
        if backend == "sqlite":
            yield f"sqlite:///{directory / 'bench.sqlite3'}"
        else:
            yield create_pg_database(name)
    finally:
        if backend == "postgres":
            drop_pg_database(name)


def child_env(url: str, instance: Path, hash_key: str) -> dict[str, str]:
    """The environment of a measured ``leakguard`` command: this one's, minus LEAKGUARD_*."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("LEAKGUARD_")}
    env.update(
        LEAKGUARD_DATABASE_URL=url,
        LEAKGUARD_INSTANCE_DIR=str(instance),
        LEAKGUARD_HASH_KEY=hash_key,
    )
    return env


class OffersPipelining:
    """Part of a benches' aiosmtpd sink: with ``pipelining``, its EHLO answer offers
    PIPELINING as real relays do (RFC 2920); aiosmtpd answers pipelined commands in order
    but does not say so itself."""

    pipelining: bool

    async def handle_EHLO(  # noqa: N802
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        if self.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses
