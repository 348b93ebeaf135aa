"""One ingest at a time per leak file, and per part of a split file.

The lock dies with its holder (``service.db.locks``): a killed run never blocks its resume.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from service.db.locks import LockBusy, exclusive_lock
from service.errors import JobError
from service.runtime import Runtime

# Keep our lock ids apart from other users of the database, and files apart from parts.
FILE_NAMESPACE = 0x4C47  # "LG"
PART_NAMESPACE = 0x4C48


class IngestBusy(JobError):
    """Another run is ingesting this file right now."""


@contextmanager
def ingest_lock(
    runtime: Runtime, file_id: int, *, part_id: int | None = None, dry_run: bool = False
) -> Iterator[None]:
    """Hold the lock of a file (or of one part of it) for the block.

    Raises IngestBusy if another run holds it. A dry run writes nothing and takes none.
    """
    if dry_run:
        yield
        return
    namespace, key, what = (
        (FILE_NAMESPACE, file_id, "file") if part_id is None else (PART_NAMESPACE, part_id, "part")
    )
    with ExitStack() as stack:
        try:
            stack.enter_context(
                exclusive_lock(
                    runtime.db,
                    namespace,
                    key,
                    lock_dir=runtime.settings.instance_dir / "locks",
                    name=f"leak-{what}-{key}",
                )
            )
        except LockBusy:
            raise IngestBusy(
                f"another run is ingesting this {what}; wait for it or stop it"
            ) from None
        yield


def part_is_idle(runtime: Runtime, part_id: int) -> bool:
    """Tell whether no process holds the part's lock (its worker finished or died)."""
    try:
        with ingest_lock(runtime, 0, part_id=part_id):
            return True
    except IngestBusy:
        return False


def file_is_held(runtime: Runtime, file_id: int) -> bool:
    """Tell whether a process holds the file's lock (a run is ingesting it right now)."""
    try:
        with ingest_lock(runtime, file_id):
            return False
    except IngestBusy:
        return True
