"""Files only the service's own user may read: the instance folder and what it holds.

The instance folder keeps the keys, the SQLite database (account addresses, hashes) and
the mail folder (whole messages): each folder is made 0700 and each file 0600, whatever
the process's umask, and a folder found wider is narrowed. SQLite creates its ``-wal`` and
``-shm`` files with the mode of the database file, so a database made 0600 as soon as SQLite
creates it (service/db/engine.py) keeps them so.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def private_dir(path: Path) -> Path:
    """Create ``path`` (and its missing parents) and make it 0700; return it.

    Only ``path`` itself is narrowed: its parents may be shared folders such as /var/lib.
    """
    path.mkdir(parents=True, exist_ok=True)
    _narrow(path, PRIVATE_DIR)
    return path


def narrow_if_present(path: Path) -> None:
    """Make an existing file 0600 (a -wal file left by an older, wider database)."""
    if path.exists():
        _narrow(path, PRIVATE_FILE)


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (0600) through a temporary file, so no reader sees half."""
    partial = path.with_name(path.name + ".part")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    partial.replace(path)


def _narrow(path: Path, mode: int) -> None:
    if not stat.S_IMODE(path.stat().st_mode) & ~mode:
        return
    try:
        path.chmod(mode)
    except PermissionError:  # not ours to change: say so, and go on
        log.warning("%s is readable by others and cannot be narrowed to %o", path, mode)
