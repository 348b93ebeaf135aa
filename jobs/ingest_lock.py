"""One ingest at a time per leak file, with a lock that dies with its holder.

A killed run must never leave a lock that blocks the resume: PostgreSQL's session
advisory lock is released when the connection drops, and an flock is released when the
process exits, however it exits.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import func, select

from service.runtime import Runtime

ADVISORY_NAMESPACE = 0x4C47  # "LG": keeps our lock ids apart from other users' of the database


class IngestBusy(Exception):
    """Another run is ingesting this file right now."""


@contextmanager
def ingest_lock(runtime: Runtime, file_id: int, *, dry_run: bool = False) -> Iterator[None]:
    """Hold the file's lock for the block; raise IngestBusy if another run holds it."""
    if dry_run:
        yield
        return
    if runtime.db.is_postgres:
        with runtime.db.engine.connect() as connection:
            taken = connection.scalar(
                select(func.pg_try_advisory_lock(ADVISORY_NAMESPACE, file_id))
            )
            connection.commit()
            if not taken:
                raise IngestBusy("another run is ingesting this file; wait for it or stop it")
            try:
                yield
            finally:
                connection.scalar(select(func.pg_advisory_unlock(ADVISORY_NAMESPACE, file_id)))
                connection.commit()
        return
    directory = runtime.settings.instance_dir / "locks"
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / f"leak-file-{file_id}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise IngestBusy("another run is ingesting this file; wait for it or stop it") from None
        yield
    finally:
        os.close(fd)
