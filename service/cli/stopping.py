"""How a long command (ingest, accounts import) stops on Ctrl-C or SIGTERM: at its next
commit, saying what is committed and that the same command is safe to run again."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

INTERRUPTED_EXIT = 130  # 128 + SIGINT, as shells report a Ctrl-C


@contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """Turn the first SIGINT or SIGTERM into a stop request the command sees at its next
    chunk boundary; a second one interrupts at once."""
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    previous: dict[int, Any] = {}
    try:
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, request_stop)
    except ValueError:  # not the main thread (an embedding caller): no handlers
        pass
    try:
        yield stop
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
