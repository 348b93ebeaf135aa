"""Logging that never shows an address, or a link's token, in the clear.

Code logs addresses only through ``mask_email``; this filter is the second line: every
record leaving a handler has each address-shaped token masked, whatever library wrote it
(an access log line with an email used as an account id, an exception text). The
single-use token of an email-change link (``GET /email-change/confirm?token=...`` in an
access log line) is cut out too: whoever reads the log must not be able to follow it.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
from datetime import timedelta
from typing import Any

from gunicorn import glogging

from service.addresses import mask_addresses

_LINK_TOKEN = re.compile(r"([?&]token=)[^&\s\"']+")


def mask_secrets(text: str) -> str:
    """``text`` with addresses masked and link tokens (``?token=...``) replaced by ***."""
    return _LINK_TOKEN.sub(r"\1***", mask_addresses(text))


class MaskAddresses(logging.Filter):
    """Rewrite the record's message (and its exception text) with addresses masked and
    link tokens cut out."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_secrets(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_secrets(record.exc_text)
        return True


def configure_logging(level: str = "WARNING") -> None:
    """One stderr handler with the mask, for the app, the CLI and the workers. Idempotent."""
    root = logging.getLogger()
    if any(isinstance(f, MaskAddresses) for h in root.handlers for f in h.filters):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(MaskAddresses())
    root.addHandler(handler)
    root.setLevel(level)


class GunicornLogger(glogging.Logger):  # type: ignore[misc]  # gunicorn ships no types
    """gunicorn's logger with the address mask on its access and error logs.

    gunicorn writes its logs through handlers of its own, not the root logger's: without
    this, ``GET /v1/accounts/alice@example.org`` lands in the access log in clear. Named in
    deploy/gunicorn.conf.py as ``logger_class``.
    """

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for logger in (self.error_log, self.access_log):
            for handler in logger.handlers:
                if not any(isinstance(f, MaskAddresses) for f in handler.filters):
                    handler.addFilter(MaskAddresses())


class ThrottledLog:
    """Log a kind of failure once per interval, with how many were left out meanwhile.

    For outages that fail every request alike: the first line says what broke, and the
    log is not flooded with a line (or a traceback) per request. Thread-safe.
    """

    def __init__(self, logger: logging.Logger, *, every: timedelta) -> None:
        self._logger = logger
        self._every = every.total_seconds()
        self._lock = threading.Lock()
        self._last: dict[str, tuple[float, int]] = {}  # kind -> (logged at, left out since)

    def warning(self, kind: str, message: str, *args: object) -> None:
        now = time.monotonic()
        with self._lock:
            logged_at, left_out = self._last.get(kind, (float("-inf"), 0))
            if now - logged_at < self._every:
                self._last[kind] = (logged_at, left_out + 1)
                return
            self._last[kind] = (now, 0)
        if left_out:
            message += " (and %d more like it since the last such line)"
            args = (*args, left_out)
        self._logger.warning(message, *args)
