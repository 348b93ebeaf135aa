"""One ingest at a time per leak file, and per part of a split file.

The lock dies with its holder (``service.db.locks``): a killed run never blocks its resume.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from sqlalchemy import select

from service.db.locks import LockBusy, exclusive_lock
from service.errors import JobError
from service.leaks.wording import Worded
from service.models import LeakFile, LeakFileState, LeakPart
from service.runtime import Runtime

# Keep our lock ids apart from other users of the database, and files apart from parts.
FILE_NAMESPACE = 0x4C47  # "LG"
PART_NAMESPACE = 0x4C48


class IngestBusy(JobError, Worded):
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
    """Tell whether a run is ingesting the file right now, or will without being asked.

    A whole file: whether a process holds its lock. A split file (``ingest --enqueue``):
    whether a process holds one of its parts' locks, or, with a shared Redis, whether its
    parts wait in that queue, where `leakguard worker`s take them. On the embedded default
    the queue lived in the process that was stopped: nothing takes the parts but the same
    command again (interrupted).
    """
    try:
        with ingest_lock(runtime, file_id):
            pass
    except IngestBusy:
        return True
    with runtime.db.read_session() as session:
        parts = session.scalars(
            select(LeakPart.id).where(
                LeakPart.leak_file_id == file_id, LeakPart.state != LeakFileState.COMPLETE
            )
        ).all()
        # A part that could not read the file stopped the run (jobs.ingest.parts): its
        # queue holds nothing that will go on, whatever else is in it.
        stopped = session.scalar(select(LeakFile.finished_at).where(LeakFile.id == file_id))
    if not parts:
        return False
    if runtime.settings.redis_url is not None and stopped is None:
        return True
    return any(not part_is_idle(runtime, part_id) for part_id in parts)
