"""What a bench run owns and gives back however it ends: its child processes, its Redis
database, its loopback ports.

- Child processes (workers, ingests, SMTP sinks, servers) are started by ``start``, each in
  a session of its own, and registered. ``run_bench`` turns Ctrl-C and SIGTERM into
  ``KeyboardInterrupt`` after stopping every registered child with its whole tree (SIGTERM,
  then SIGKILL after a grace period), so the benches' ``finally`` blocks, which drop the
  PostgreSQL database, empty Redis and delete the temporary files, run once no child writes
  to them any more. A bench interrupted this way prints one line and exits 130.
- A Redis database is claimed as the test suite claims its own (``tests/support/services.py``:
  a ``SET NX`` key per database in database 0, lapsing after 6 hours), so two benches, or
  a bench and a test run, never share one, and a bench never empties a database that
  another run holds or that holds anyone's data.
- A loopback port comes from the kernel (port 0), never a fixed number.

Imported by its plain name from the bench folder, like ``common``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

from redis import Redis, RedisError

# --- child processes -------------------------------------------------------------------------

STOP_GRACE_SECONDS = 10.0  # a worker finishing its job, a sink writing its counts
_children: list[subprocess.Popen[Any]] = []


def start(command: Sequence[str], **options: Any) -> subprocess.Popen[Any]:
    """``subprocess.Popen(command, **options)`` in a session of its own, registered so that
    ``stop_children`` ends it (and everything it started) if the bench stops early.

    A session of its own: Ctrl-C in the terminal reaches the bench alone, which then stops
    its children in order, before it drops what they write to.
    """
    process: subprocess.Popen[Any] = subprocess.Popen(command, start_new_session=True, **options)
    _children.append(process)
    return process


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (a wrapper's command, gunicorn's workers, rq's horses,
    which rq puts in sessions of their own)."""
    found: list[int] = []
    pending = [pid]
    while pending:
        parent = pending.pop()
        try:
            with open(f"/proc/{parent}/task/{parent}/children") as handle:
                children = [int(child) for child in handle.read().split()]
        except OSError:
            continue
        found += children
        pending += children
    return found


def _running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie waiting for its parent."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _signal_all(processes: list[subprocess.Popen[Any]], pids: set[int], number: int) -> None:
    for process in processes:
        if process.poll() is None:  # not yet reaped: its group id cannot be anyone else's
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, number)
    for pid in pids:
        with suppress(ProcessLookupError, PermissionError):
            os.kill(pid, number)


def stop_children(grace: float = STOP_GRACE_SECONDS) -> None:
    """End every registered child still running, with its process group and every process
    below it: SIGTERM, then SIGKILL for what is left after ``grace`` seconds."""
    processes = list(_children)
    _children.clear()
    # The tree is read before any signal: once a parent dies its children move to init.
    pids = {
        pid
        for process in processes
        if process.poll() is None
        for pid in [process.pid, *descendants(process.pid)]
    }
    if not pids:
        return
    _signal_all(processes, pids, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        for process in processes:
            process.poll()  # reap our own children, so they do not count as running
        if not any(_running(pid) for pid in pids):
            break
        time.sleep(0.05)
    _signal_all(processes, {pid for pid in pids if _running(pid)}, signal.SIGKILL)
    for process in processes:
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)


def _interrupt(number: int, frame: FrameType | None) -> None:
    """SIGINT or SIGTERM: stop the children first, then unwind through every ``finally``."""
    # A second Ctrl-C must not break the clean-up half way (it is bounded by timeouts).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print(
        f"\ninterrupted ({signal.Signals(number).name}): stopping the bench's processes and "
        "removing its databases and files",
        file=sys.stderr,
        flush=True,
    )
    stop_children()
    raise KeyboardInterrupt


def run_bench(main: Callable[[], None]) -> None:
    """Run a bench's ``main``: Ctrl-C or SIGTERM stops its children, unwinds its clean-up
    and exits 130 with one line; a child left running by any other end is stopped too."""
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        main()
    except KeyboardInterrupt:
        print("interrupted: the bench stopped and cleaned up", file=sys.stderr)
        sys.exit(130)
    finally:
        stop_children()


# --- Redis -----------------------------------------------------------------------------------

REDIS_SERVER_URL = os.environ.get("LEAKGUARD_BENCH_REDIS_SERVER", "redis://127.0.0.1:6379")
CLAIM_TTL_SECONDS = 6 * 3600  # as the test suite's: a dead bench's claim lapses
# Inside a claimed database, as the test suite writes it: a database left with only this
# (its claim lapsed) was a dead run's, and the next run may empty and take it.
OWNER_KEY = "leakguard:test-run-owner"


class RedisUnavailable(Exception):
    """No Redis database could be had for the bench; the message says why, in one line."""


def redis_claim_key(number: int) -> str:
    """The claim of database ``number``: the same key the test suite sets for its own."""
    return f"leakguard:test-run:db{number}"


def _server_and_number(url: str) -> tuple[str, int]:
    """``redis://host:port/12`` -> (``redis://host:port``, 12); database 0 without a path."""
    parts = urlsplit(url)
    path = parts.path.strip("/")
    if parts.scheme not in ("redis", "rediss") or (path and not path.isdigit()):
        raise RedisUnavailable(f"{url}: expected redis://HOST:PORT/NUMBER")
    return f"{parts.scheme}://{parts.netloc}", int(path or 0)


def _take(admin: Redis, server: str, number: int, owner: str) -> str | None:
    """Claim database ``number`` and take it if it is empty (or a dead run's); its URL, or
    None when another run holds it or it holds data."""
    if not admin.set(redis_claim_key(number), owner, nx=True, ex=CLAIM_TTL_SECONDS):
        return None
    url = f"{server}/{number}"
    try:
        with Redis.from_url(url, socket_connect_timeout=5) as database:
            if database.dbsize() == 0 or database.exists(OWNER_KEY):
                database.flushdb()
                database.set(OWNER_KEY, owner)
                return url
    except BaseException:
        admin.delete(redis_claim_key(number))  # interrupted: no claim held for 6 hours
        raise
    admin.delete(redis_claim_key(number))
    return None


def _give_back(admin: Redis, url: str, owner: str) -> None:
    _, number = _server_and_number(url)
    with Redis.from_url(url, socket_connect_timeout=5) as database:
        database.flushdb()
    claim = redis_claim_key(number)
    if admin.get(claim) == owner.encode():
        admin.delete(claim)


def _claim(admin: Redis, server: str, number: int | None, owner: str) -> str:
    """Database ``number`` if it can be taken, or without one the first free of 1-15."""
    if number is not None:
        if number == 0:
            raise RedisUnavailable(f"{server}/0 holds the claims: name a database of 1-15")
        url = _take(admin, server, number, owner)
        if url is None:
            raise RedisUnavailable(
                f"{server}/{number} is in use (claimed by another run, or not empty): empty "
                "it, or unset LEAKGUARD_BENCH_REDIS to take a free database"
            )
        return url
    count = int(admin.config_get("databases").get("databases", 16))
    for candidate in range(1, count):
        url = _take(admin, server, candidate, owner)
        if url is not None:
            return url
    raise RedisUnavailable(
        f"every Redis database 1-{count - 1} on {server} is claimed by another run or not "
        "empty (a bench or test run empties its own at the end)"
    )


@contextmanager
def redis_database(fixed: str | None = None) -> Iterator[str]:
    """The URL of a Redis database the bench has to itself; emptied and given back at the
    end, however the bench ends.

    ``fixed`` (a bench's ``LEAKGUARD_BENCH_REDIS``) names the database; without it the first
    free one of 1-15 on ``LEAKGUARD_BENCH_REDIS_SERVER`` is taken. Either way only a database
    no other run has claimed and that is empty (or a dead run's): raises RedisUnavailable
    otherwise, and when the server cannot be reached.
    """
    owner = f"bench {os.path.basename(sys.argv[0])} {socket.gethostname()}:{os.getpid()}"
    server, number = _server_and_number(fixed) if fixed else (REDIS_SERVER_URL, 0)
    admin = Redis.from_url(f"{server}/0", socket_connect_timeout=5)
    url: str | None = None
    try:
        try:
            url = _claim(admin, server, number if fixed else None, owner)
        except RedisError as exc:
            raise RedisUnavailable(f"Redis at {server} not reachable: {exc}") from exc
        yield url
    finally:
        if url is not None:
            stop_children()  # none of them may write to it once it is emptied and given back
            try:
                _give_back(admin, url, owner)
            except RedisError as exc:
                print(f"could not empty {url}: {exc}", file=sys.stderr)
        admin.close()


# --- ports -----------------------------------------------------------------------------------


def free_port(host: str = "127.0.0.1") -> int:
    """A loopback port the kernel gives out now (port 0); a server binds it a moment later."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])
