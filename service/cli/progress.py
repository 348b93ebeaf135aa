"""How a long command shows its progress on stderr: a bar, lines, JSON lines, or nothing.

On a terminal a tqdm bar with percentage and ETA (from the bytes read: compressed bytes for
a compressed file); off a terminal (cron, nohup, a Kubernetes Job) one line every
``every`` seconds, also while nothing moves; ``json``: the same lines as JSON objects for
machines; ``--quiet``: nothing. stdout stays for the summary (``--json``).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Final

from tqdm import tqdm

from jobs.ingest.pipeline import IngestProgress

if TYPE_CHECKING:  # only a type here: the module imports rq and redis
    from jobs.ingest.parts import SplitProgress

LINE_SECONDS: Final = 10.0  # off a terminal: a line at least this often, at most this often


class ProgressMode(StrEnum):
    AUTO = "auto"  # a bar on a terminal, else lines
    BAR = "bar"
    LINES = "lines"
    JSON = "json"


@dataclass(slots=True)
class _State:
    phase: str = "checking the file"
    records: int = 0
    matched: int = 0
    bytes_read: int = 0
    total_bytes: int = 0
    parts: int = 0
    parts_done: int = 0


class ProgressDisplay:
    """One command's progress; a context manager. ``ingest`` and ``parts`` feed it."""

    def __init__(
        self,
        mode: ProgressMode = ProgressMode.AUTO,
        *,
        quiet: bool = False,
        every: float = LINE_SECONDS,
        stream: IO[str] | None = None,
    ) -> None:
        self.stream = stream or sys.stderr
        if mode is ProgressMode.AUTO:
            mode = ProgressMode.BAR if self.stream.isatty() else ProgressMode.LINES
        self.mode: ProgressMode | None = None if quiet else mode
        self.every = every
        self.started = time.monotonic()
        self._state = _State()
        self._lock = threading.Lock()
        self._last_line = self.started
        self._bar: tqdm[Any] | None = None
        self._closed = threading.Event()
        self._ticker: threading.Thread | None = None
        if self.mode in (ProgressMode.LINES, ProgressMode.JSON) and every > 0:
            # Lines keep coming while nothing moves (a long fingerprint, a slow chunk).
            self._ticker = threading.Thread(target=self._tick, name="progress", daemon=True)
            self._ticker.start()

    def __enter__(self) -> ProgressDisplay:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def ingest(self, progress: IngestProgress) -> None:
        """A chunk is committed."""
        with self._lock:
            state = self._state
            state.phase = "ingesting"
            state.records, state.matched = progress.records, progress.matched
            state.bytes_read, state.total_bytes = progress.bytes_read, progress.total_bytes
        if self.mode is ProgressMode.BAR:
            bar = self._ensure_bar(progress.total_bytes, unit="B")
            bar.set_postfix(records=progress.records, matched=progress.matched, refresh=False)
            bar.update(max(0, progress.bytes_read - bar.n))
            bar.refresh()  # once a chunk: cheap, and the postfix is never stale
        else:
            self._maybe_line()

    def parts(self, progress: SplitProgress) -> None:
        """The waiting ``ingest --enqueue`` looked at its parts."""
        with self._lock:
            state = self._state
            state.phase = "waiting for workers"
            state.parts, state.parts_done = progress.parts, progress.complete
            state.records, state.matched = progress.totals.lines, progress.totals.matched
        if self.mode is ProgressMode.BAR:
            bar = self._ensure_bar(progress.parts, unit=" parts")
            bar.set_postfix(
                records=progress.totals.lines, matched=progress.totals.matched, refresh=False
            )
            bar.update(max(0, progress.complete - bar.n))
            bar.refresh()
        else:
            self._maybe_line()

    def close(self) -> None:
        self._closed.set()
        if self._ticker is not None:
            self._ticker.join()
        if self._bar is not None:
            self._bar.close()

    # --- rendering ---------------------------------------------------------------------

    def _ensure_bar(self, total: int, *, unit: str) -> tqdm[Any]:
        if self._bar is None:
            self._bar = tqdm(
                total=total or None,
                unit=unit,
                unit_scale=unit == "B",
                unit_divisor=1024,
                file=self.stream,
                leave=False,
                dynamic_ncols=True,
            )
        return self._bar

    def _tick(self) -> None:
        while not self._closed.wait(self.every):
            if time.monotonic() - self._last_line >= self.every:
                self._emit()

    def _maybe_line(self) -> None:
        if time.monotonic() - self._last_line >= self.every:
            self._emit()

    def _emit(self) -> None:
        with self._lock:
            self._last_line = time.monotonic()
            facts = self._facts()
        if self.mode is ProgressMode.JSON:
            line = json.dumps({"event": "progress", **facts})
        elif self.mode is ProgressMode.LINES:
            line = _sentence(facts)
        else:
            return
        print(line, file=self.stream, flush=True)

    def _facts(self) -> dict[str, Any]:
        state = self._state
        elapsed = time.monotonic() - self.started
        facts: dict[str, Any] = {
            "phase": state.phase,
            "records": state.records,
            "matched": state.matched,
            "elapsed_seconds": round(elapsed, 1),
        }
        if state.parts:
            facts |= {"parts": state.parts, "parts_done": state.parts_done}
            share = state.parts_done / state.parts
        else:
            facts |= {"bytes_read": state.bytes_read, "total_bytes": state.total_bytes}
            share = state.bytes_read / state.total_bytes if state.total_bytes else 0.0
        facts["percent"] = round(100 * share, 1)
        facts["eta_seconds"] = round(elapsed * (1 - share) / share) if 0 < share < 1 else None
        return facts


def _sentence(facts: dict[str, Any]) -> str:
    """One line for a log: what phase, how far, how long."""
    if facts["phase"] == "checking the file":
        return f"ingest: checking the file ({_duration(facts['elapsed_seconds'])} so far)"
    if "parts" in facts:
        where = f"{facts['parts_done']} of {facts['parts']} parts done"
    else:
        where = (
            f"{facts['percent']:.0f}% ({_size(facts['bytes_read'])} of "
            f"{_size(facts['total_bytes'])})"
        )
    eta = facts["eta_seconds"]
    left = f", about {_duration(eta)} left" if eta is not None else ""
    return (
        f"ingest: {where}, {facts['records']:,} records, {facts['matched']:,} matched, "
        f"{_duration(facts['elapsed_seconds'])} elapsed{left}"
    )


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def _duration(seconds: float) -> str:
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
