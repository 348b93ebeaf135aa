"""Fixtures (a pytest plugin of the root conftest, so that every directory of browser tests
shares one Playwright driver per worker: two would fight over its event loop).

A real headless Chromium (Debian's ``chromium``, driven by Playwright through
``executable_path``: Playwright never downloads a browser here) against the app served by
a real WSGI server on loopback, in a thread of this process.

Install the browser with ``sh tests/system-packages.sh`` (``make test`` does). Without it
the browser tests are skipped with a visible reason, except under CI=true, where its
absence fails the run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Playwright, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    if not CHROMIUM.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is missing: run sh tests/system-packages.sh")
        pytest.skip(f"{CHROMIUM} is missing: run sh tests/system-packages.sh")
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
    yield launched
    launched.close()
