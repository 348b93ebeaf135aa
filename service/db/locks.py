"""Locks that die with their holder: one run at a time per leak file or part.

A killed holder must never leave a lock that blocks the next run. On PostgreSQL a session
advisory lock is released when its connection drops, so it spans machines; on SQLite (one
machine by nature) an ``flock`` on a file in the instance folder is released when the
process exits, however it exits.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import func, select

from service.db.engine import Database
from service.private_files import private_dir


class LockBusy(Exception):
    """Another process holds the lock."""


@contextmanager
def exclusive_lock(
    database: Database, namespace: int, key: int, *, lock_dir: Path, name: str
) -> Iterator[None]:
    """Hold the lock (``namespace``, ``key``) for the block; raise LockBusy if it is taken.

    ``namespace`` keeps our lock ids apart from other users of the database; ``name`` is
    the lock file's name on SQLite.
    """
    if database.is_postgres:
        with database.engine.connect() as connection:
            taken = connection.scalar(select(func.pg_try_advisory_lock(namespace, key)))
            connection.commit()
            if not taken:
                raise LockBusy(name)
            try:
                yield
            finally:
                connection.scalar(select(func.pg_advisory_unlock(namespace, key)))
                connection.commit()
        return
    private_dir(lock_dir)
    fd = os.open(lock_dir / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockBusy(name) from None
        yield
    finally:
        os.close(fd)
