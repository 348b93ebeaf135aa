"""Logging that never shows an address, or a link's token, in the clear, as JSON lines
with a request id.

Code logs addresses only through ``mask_email``; this filter is the second line: every
record leaving a handler has each address-shaped token masked, whatever library wrote it
(an access log line with an email used as an account id, an exception text). The
single-use token of an email-change link (``GET /email-change/confirm?token=...`` in an
access line) is cut out too: whoever reads the log must not be able to follow it. The last
line is the formatter: the rendered line itself passes the mask once more.

Every line goes to stderr: one JSON object per line (structlog's ``ProcessorFormatter``)
in production, a readable line in development (``LEAKGUARD_LOG_FORMAT`` chooses). Lines
written while a request is served carry its ``request_id`` (contextvars).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import time
import unicodedata
import uuid
from collections.abc import Mapping, MutableMapping
from datetime import timedelta
from typing import Any

import structlog
from gunicorn import glogging

from service.addresses import mask_addresses

# The query of a link (``?token=...``), or a query string alone (gunicorn's ``q`` atom).
_LINK_TOKEN = re.compile(r"((?:^|[?&])token=)[^&\s\"']+")
# A staff enrolment link carries its one-time token in the path (service/staff/users.py,
# ENROL_PATH), where the access line shows it: whoever read the log within its 72 hours
# could open the link and enrol as the new staff user (an admin, first of all) before them.
# The path as gunicorn logs it (decoded), with repeated slashes (the router merges them)
# or a slash still encoded as %2F (a raw request line).
_ENROL_TOKEN = re.compile(r"((?:/|%2f)+staff(?:/|%2f)+enrol(?:/|%2f)+)[^/?#&\s\"']+", re.I)


def mask_secrets(text: str) -> str:
    """``text`` with addresses masked and link tokens (``?token=...``, a staff enrolment
    link's path) replaced by ***."""
    return _ENROL_TOKEN.sub(r"\1***", _LINK_TOKEN.sub(r"\1***", mask_addresses(text)))


# Characters a log line never shows as they are: controls (a NUL, an ANSI escape, a CR that
# forges a line), format characters (bidi overrides such as U+202E, zero-width spaces),
# separators other than the space, surrogates, private-use and unassigned code points.
_UNSHOWN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs"})


def _unshown(char: str) -> bool:
    return char != " " and unicodedata.category(char) in _UNSHOWN_CATEGORIES


def printable_wsgi_text(text: str) -> str:
    """A request's path or header as a log line may show it: printable and unambiguous.

    WSGI hands them over as latin-1 text of the raw bytes (PEP 3333): the bytes are decoded
    as UTF-8, a byte that is no UTF-8 shows as ``\\xNN``, a character a line must not show
    (see ``_UNSHOWN_CATEGORIES``) as ``\\xNN``, ``\\uNNNN`` or ``\\UNNNNNNNN``, and a
    backslash as two, so that every escape reads one way. Never raises.
    """
    try:
        decoded = text.encode("latin-1").decode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        decoded = text  # not WSGI's latin-1 text: a str already
    if decoded.isascii() and decoded.isprintable() and "\\" not in decoded:
        return decoded
    return "".join(_escaped(char) for char in decoded)


def _escaped(char: str) -> str:
    code = ord(char)
    if char == "\\":
        return "\\\\"
    if 0xDC80 <= code <= 0xDCFF:  # a byte that is no UTF-8 (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    if not _unshown(char):
        return char
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def escape_unshown(line: str) -> str:
    """``line`` with every character a log line must not show as a JSON-style ``\\uNNNN``
    escape (valid inside a JSON string too); newlines and tabs stay (tracebacks)."""
    if line.isascii() and line.isprintable():
        return line
    return "".join(
        _json_escape(char) if char not in "\n\t" and _unshown(char) else char for char in line
    )


def _json_escape(char: str) -> str:
    code = ord(char)
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000  # astral: a UTF-16 surrogate pair, as JSON spells it
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


REQUEST_ID_HEADER = "X-Request-ID"
# A caller's request id is kept only if it is short and plain: it goes into every line.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
JSON, CONSOLE = "json", "console"
# The fields of an access line (``AccessFormatter``), the only record extras rendered.
ACCESS_FIELDS = (
    "remote",
    "method",
    "path",
    "status",
    "bytes",
    "duration_ms",
    "request_id",
    "user_agent",
)


class MaskAddresses(logging.Filter):
    """Rewrite the record's message (and its exception text) with addresses masked and
    link tokens cut out."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, Mapping):
            # gunicorn's access record: its atoms stay apart (AccessFormatter reads them),
            # each masked on its own.
            record.args = {
                key: mask_secrets(value) if isinstance(value, str) else value
                for key, value in record.args.items()
            }
        message = record.getMessage()
        masked = mask_secrets(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_secrets(record.exc_text)
        return True


class MaskedFormatter(structlog.stdlib.ProcessorFormatter):
    """structlog's formatter for stdlib records, whose finished line passes the mask."""

    def format(self, record: logging.LogRecord) -> str:
        return escape_unshown(mask_secrets(super().format(record)))


def make_formatter(log_format: str) -> logging.Formatter:
    """A formatter of one JSON object per line (``json``) or a readable line (``console``):
    time (UTC, ISO 8601), level, logger, event, the request id when there is one."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.stdlib.ExtraAdder(allow=ACCESS_FIELDS),
    ]
    renderer: Any = (
        # Characters as they are, not \u escapes: the mask's last pass must see them.
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if log_format == JSON
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    return MaskedFormatter(
        foreign_pre_chain=shared,
        processors=[
            _masked_exception,
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )


def _masked_exception(
    _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """The traceback as MaskAddresses left it (``exc_text``), not rendered again from the
    exception, whose message may name an address."""
    record = event_dict.get("_record")
    if record is not None and record.exc_text:
        event_dict.pop("exc_info", None)
        event_dict["exception"] = record.exc_text
    return event_dict


def log_format_from_env() -> str:
    """``LEAKGUARD_LOG_FORMAT`` if set, else JSON in production and console elsewhere (for
    gunicorn's master, which logs before any settings are built)."""
    chosen = os.environ.get("LEAKGUARD_LOG_FORMAT", "").strip().lower()
    if chosen in {JSON, CONSOLE}:
        return chosen
    return JSON if os.environ.get("LEAKGUARD_ENV", "").lower() == "production" else CONSOLE


def configure_logging(level: str = "WARNING", log_format: str = CONSOLE) -> None:
    """One stderr handler with the mask, for the app, the CLI and the workers. Idempotent."""
    root = logging.getLogger()
    if any(isinstance(f, MaskAddresses) for h in root.handlers for f in h.filters):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(make_formatter(log_format))
    handler.addFilter(MaskAddresses())
    root.addHandler(handler)
    root.setLevel(level)


def bind_request_id(given: str | None) -> str:
    """Bind this request's id for every line logged while it is served; return it.

    The caller's ``X-Request-ID`` when it is plain and short (a load balancer's id then
    joins both logs), else a new random one.
    """
    request_id = given if given and _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
    structlog.contextvars.bind_contextvars(request_id=request_id)
    return request_id


def unbind_request_id() -> None:
    structlog.contextvars.unbind_contextvars("request_id")


class GunicornLogger(glogging.Logger):  # type: ignore[misc]  # gunicorn ships no types
    """gunicorn's logger with the address mask on its access and error logs.

    gunicorn writes its logs through handlers of its own, not the root logger's: without
    this, ``GET /v1/accounts/alice@example.org`` lands in the access log in clear. Named in
    deploy/gunicorn.conf.py as ``logger_class``.
    """

    def atoms(self, resp: Any, req: Any, environ: Any, request_time: Any) -> dict[str, Any]:
        """gunicorn's atoms, with the path and user agent decoded and escaped before the mask
        reads them (the mask must see "jürgen@bücher.de", not its latin-1 mojibake)."""
        atoms: dict[str, Any] = super().atoms(resp, req, environ, request_time)
        for key in ("U", "a"):
            if isinstance(atoms.get(key), str):
                atoms[key] = printable_wsgi_text(atoms[key])
        return atoms

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        log_format = log_format_from_env()
        for logger in (self.error_log, self.access_log):
            for handler in logger.handlers:
                if not any(isinstance(f, MaskAddresses) for f in handler.filters):
                    handler.addFilter(MaskAddresses())
                handler.setFormatter(
                    AccessFormatter(log_format)
                    if logger is self.access_log
                    else make_formatter(log_format)
                )


class AccessFormatter(logging.Formatter):
    """gunicorn's access line built from its atoms, never from its request line.

    The fields are chosen here, not by ``access_log_format``: the path without its query
    string (a query may carry a token or an address), no Referer (the page before may have
    held one in its URL), the status, size, duration and the request id the app answered.
    """

    def __init__(self, log_format: str) -> None:
        super().__init__()
        self._inner = make_formatter(log_format)

    def format(self, record: logging.LogRecord) -> str:
        atoms = record.args if isinstance(record.args, dict) else {}
        fields = {
            "remote": atoms.get("h"),
            "method": atoms.get("m"),
            "path": atoms.get("U"),
            "status": _number(atoms.get("s")),
            "bytes": _number(atoms.get("B")),
            "duration_ms": _number(atoms.get("M")),
            "request_id": atoms.get("{x-request-id}o") or None,
            "user_agent": atoms.get("a"),
        }
        copy = logging.makeLogRecord(record.__dict__)
        copy.msg, copy.args = "access", None
        copy.__dict__.update(fields)
        return self._inner.format(copy)


def _number(value: object) -> int | None:
    try:
        return int(str(value))
    except ValueError:
        return None


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
