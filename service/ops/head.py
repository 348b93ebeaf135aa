"""The request head's limits: the request line, each header line, the number of headers.

The app refuses a head past them, so that the refusal is the app's own answer: problem+json
under /v1 (RFC 9457, like every API error) and the staff site's error page under /staff.
gunicorn refused such requests itself, with an HTML page of its own, before the app saw
them. ``deploy/gunicorn.conf.py`` therefore reads heads a good deal larger than these
limits (its own maximums) and leaves the refusal to the app; a head past even those is
refused by the server's worker (``service.ops.server``), still as problem+json.

No Flask here: the worker imports this module in gunicorn's master process.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote

# The documented limits (README "Serving"), in bytes as the client sent them.
MAX_REQUEST_LINE_BYTES: Final = 8000
MAX_HEADER_LINE_BYTES: Final = 8190
MAX_HEADERS: Final = 100

# What gunicorn reads before it refuses on its own (deploy/gunicorn.conf.py): above the
# limits, so that every head the app is to refuse reaches it. 8190 is the longest request
# line gunicorn reads at all; a header line and the count may go higher, but each header
# line and header costs memory per connection (limit_request_fields x field size).
SERVER_REQUEST_LINE_BYTES: Final = 8190
SERVER_HEADER_LINE_BYTES: Final = 16384
SERVER_HEADERS: Final = 200

# Where the worker leaves the head it parsed (exact, header by header) for the app.
ENVIRON_KEY: Final = "leakguard.request_head"
# WSGI's names of the two headers it does not prefix with HTTP_ (PEP 3333).
_UNPREFIXED: Final = {"CONTENT_TYPE": "CONTENT-TYPE", "CONTENT_LENGTH": "CONTENT-LENGTH"}


@dataclass(frozen=True, slots=True)
class RequestHead:
    """The sizes of a request's head: its request line (method, target and version, without
    the CRLF), its longest header line (``Name: value``), and how many headers it has."""

    line_bytes: int
    longest_header_bytes: int
    headers: int

    @classmethod
    def of(
        cls, method: str, target: str, version: str, headers: Iterable[tuple[str, str]]
    ) -> RequestHead:
        """From the parts as read off the wire (WSGI's latin-1 strings: one char a byte)."""
        lines = [len(name) + 2 + len(value) for name, value in headers]
        return cls(
            line_bytes=len(method) + 1 + len(target) + 1 + len(version),
            longest_header_bytes=max(lines, default=0),
            headers=len(lines),
        )

    @classmethod
    def of_environ(cls, environ: Mapping[str, Any]) -> RequestHead:
        """From a WSGI environ, for a server that leaves no ``ENVIRON_KEY`` (the development
        server, a test client). WSGI joins a repeated header into one value, so there the
        count may be lower and a line longer than on the wire."""
        target = environ.get("RAW_URI") or environ.get("REQUEST_URI")
        if not target:
            path = quote(environ.get("PATH_INFO", "").encode("latin-1"), safe="/;=,@:!$&'()*+")
            query = environ.get("QUERY_STRING", "")
            target = f"{path}?{query}" if query else path
        headers = [
            (_header_name(key), str(value))
            for key, value in environ.items()
            if key.startswith("HTTP_") or key in _UNPREFIXED
        ]
        return cls.of(
            str(environ.get("REQUEST_METHOD", "")),
            str(target),
            str(environ.get("SERVER_PROTOCOL", "HTTP/1.1")),
            headers,
        )

    def refusal(self) -> tuple[int, str] | None:
        """The status and the reason a head past the limits is refused with; None if it
        is within them. 414 for the request line (RFC 9110 15.5.15), 431 for the headers
        (RFC 6585 section 5)."""
        if self.line_bytes > MAX_REQUEST_LINE_BYTES:
            return 414, (
                f"the request line is {self.line_bytes:,} bytes, over the "
                f"{MAX_REQUEST_LINE_BYTES:,} this service reads: shorten the URL"
            )
        if self.longest_header_bytes > MAX_HEADER_LINE_BYTES:
            return 431, (
                f"a header line is {self.longest_header_bytes:,} bytes, over the "
                f"{MAX_HEADER_LINE_BYTES:,} this service reads"
            )
        if self.headers > MAX_HEADERS:
            return 431, (
                f"the request has {self.headers:,} headers, over the {MAX_HEADERS:,} this "
                "service reads"
            )
        return None


def _header_name(key: str) -> str:
    return _UNPREFIXED.get(key) or key.removeprefix("HTTP_").replace("_", "-")


def head_of(environ: Mapping[str, Any]) -> RequestHead:
    """The request's head: as the worker parsed it, else as the environ shows it."""
    head = environ.get(ENVIRON_KEY)
    return head if isinstance(head, RequestHead) else RequestHead.of_environ(environ)
