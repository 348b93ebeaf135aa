"""The benches (bench/) as the tests import them: by plain module name, as the benches
import each other (``from common import ...``)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parents[2] / "bench"


@contextmanager
def bench_importer() -> Iterator[Callable[[str], ModuleType]]:
    """``import_module`` with bench/ on the path until the block ends."""
    sys.path.insert(0, str(BENCH))
    try:
        yield importlib.import_module
    finally:
        sys.path.remove(str(BENCH))
