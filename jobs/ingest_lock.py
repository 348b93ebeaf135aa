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

# Keep our lock ids apart from other users of the database, and files apart from parts.
FILE_NAMESPACE = 0x4C47  # "LG"
PART_NAMESPACE = 0x4C48


class IngestBusy(Exception):
    """Another run is ingesting this file right now."""


@contextmanager
def ingest_lock(
    runtime: Runtime, file_id: int, *, part_id: int | None = None, dry_run: bool = False
) -> Iterator[None]:
    """Hold the lock of a file (or of one part of it) for the block.

    Raises IngestBusy if another run holds it.
    """
    if dry_run:
        yield
        return
    namespace, key, what = (
        (FILE_NAMESPACE, file_id, "file") if part_id is None else (PART_NAMESPACE, part_id, "part")
    )
    busy = f"another run is ingesting this {what}; wait for it or stop it"
    if runtime.db.is_postgres:
        with runtime.db.engine.connect() as connection:
            taken = connection.scalar(select(func.pg_try_advisory_lock(namespace, key)))
            connection.commit()
            if not taken:
                raise IngestBusy(busy)
            try:
                yield
            finally:
                connection.scalar(select(func.pg_advisory_unlock(namespace, key)))
                connection.commit()
        return
    directory = runtime.settings.instance_dir / "locks"
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / f"leak-{what}-{key}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise IngestBusy(busy) from None
        yield
    finally:
        os.close(fd)


def part_is_idle(runtime: Runtime, part_id: int) -> bool:
    """Tell whether no process holds the part's lock (its worker finished or died)."""
    try:
        with ingest_lock(runtime, 0, part_id=part_id):
            return True
    except IngestBusy:
        return False
