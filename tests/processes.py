"""Processes the tests start and kill like a lost machine."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path


def kill_session(leader: int) -> None:
    """SIGKILL every process in the session of ``leader``, like a machine that is lost.

    rq's work horse puts itself in a process group of its own, so a kill of the worker's
    group would leave it running; it stays in the worker's session.
    """
    while True:
        members = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue  # gone meanwhile
            state, _ppid, _group, session = stat.rsplit(")", 1)[1].split()[:4]
            if int(session) == leader and state != "Z":
                members.append(int(entry.name))
        if not members:
            return
        for pid in members:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)
