"""The app served by a real WSGI server (werkzeug's, threaded) on loopback, in a thread of
the test process: what a browser test points Chromium at."""

from __future__ import annotations

import threading

from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server


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
