"""The runtime an rq job runs with: built once per worker process, from the environment.

Job arguments are ids, never addresses or ORM objects; the job looks everything else up
through this runtime.
"""

from __future__ import annotations

import threading

from service.config import load_settings
from service.runtime import Runtime, build_runtime

_lock = threading.Lock()
_runtime: Runtime | None = None


def job_runtime() -> Runtime:
    """The process's runtime, built from LEAKGUARD_* on first use."""
    global _runtime
    with _lock:
        if _runtime is None:
            _runtime = build_runtime(load_settings())
        return _runtime


def use_runtime(runtime: Runtime) -> None:
    """Make jobs in this process use ``runtime`` (the CLI's, for in-process workers)."""
    global _runtime
    with _lock:
        _runtime = runtime
