"""Processes the tests start, wait for and kill like a lost machine."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
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


def wait_for(condition: Callable[[], bool], *, timeout: float, what: str) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
