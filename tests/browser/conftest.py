"""A real headless Chromium (Debian's ``chromium``, driven by Playwright through
``executable_path``: Playwright never downloads a browser here) against the app served by
a real WSGI server on loopback, in a thread of this process.

Install the browser with ``sh tests/system-packages.sh`` (``make test`` does). Without it
the browser tests are skipped with a visible reason, except under CI=true, where its
absence fails the run.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from playwright.sync_api import Browser, Playwright, sync_playwright
from werkzeug.serving import BaseWSGIServer, make_server

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


class LiveServer:
    """The app behind werkzeug's threaded WSGI server on 127.0.0.1, on a free port."""

    def __init__(self, app: Flask) -> None:
        self.server: BaseWSGIServer = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.thread.join(timeout=10)
        self.server.server_close()
