"""gunicorn's gthread worker, as ``deploy/gunicorn.conf.py`` runs it (``worker_class``).

Two changes to the stock worker, both so that no answer of the server is another format
than the API's own:

- A request gunicorn refuses before the app sees it (a head past the server's maximums,
  malformed HTTP, a Transfer-Encoding it does not read) was answered with gunicorn's own
  HTML page. It is now ``application/problem+json`` (RFC 9457) with the status and the
  ``code`` the app gives the same status (``service.api.problems.render_http_error``). The
  server has not read which page was asked for, so the staff site gets it too.
- The head it parsed goes to the app (``service.ops.head``), which refuses one past the
  documented limits with its own answer: problem+json, or the staff site's page.
- A body whose framing is malformed (a chunk size that is no number, a chunk without its
  CRLF, bad trailers) raised gunicorn's parse error inside the app, which answered it as
  an unhandled error (500, with a traceback in the log). Reading it now raises werkzeug's
  BadRequest, which the app answers 400 as it answers its own.

gunicorn ships no types: the overrides are typed as far as ours go.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from typing import Any, Final

from gunicorn import util
from gunicorn.http.errors import ChunkMissingTerminator, InvalidChunkSize, NoMoreData
from gunicorn.http.errors import ParseException as GunicornParseError
from gunicorn.workers.gthread import ThreadWorker
from werkzeug.exceptions import BadRequest
from werkzeug.http import HTTP_STATUS_CODES

from service.errors import PROBLEM_BASE
from service.ops.head import (
    ENVIRON_KEY,
    MAX_HEADER_LINE_BYTES,
    MAX_HEADERS,
    MAX_REQUEST_LINE_BYTES,
    SERVER_HEADER_LINE_BYTES,
    SERVER_HEADERS,
    SERVER_REQUEST_LINE_BYTES,
    RequestHead,
)

PROBLEM_MEDIA_TYPE: Final = "application/problem+json"
# Our words, never gunicorn's message: that may quote the request (a header's value, the
# request line), and with it an address.
_DETAILS: Final = {
    400: "the request is not valid HTTP/1.1 (RFC 9112)",
    414: (
        f"the request line is over {SERVER_REQUEST_LINE_BYTES:,} bytes, the most the server "
        f"reads (this service's limit: {MAX_REQUEST_LINE_BYTES:,}): shorten the URL"
    ),
    431: (
        f"the request's headers are past what the server reads (a header line over "
        f"{SERVER_HEADER_LINE_BYTES:,} bytes, or over {SERVER_HEADERS} headers; this "
        f"service's limits: {MAX_HEADER_LINE_BYTES:,} bytes and {MAX_HEADERS} headers)"
    ),
}

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class ProblemWorker(ThreadWorker):  # type: ignore[misc]  # gunicorn ships no types
    """gunicorn's gthread worker whose own refusals are problem+json; see the module."""

    wsgi: WsgiApp  # set by gunicorn's load_wsgi

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The head of the request each thread serves, for the app: a thread runs one
        # request from parse to answer (``handle_request`` calls the app itself).
        self._heads = threading.local()

    def load_wsgi(self) -> None:
        super().load_wsgi()
        app = self.wsgi
        heads = self._heads

        def with_head(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
            head = getattr(heads, "current", None)
            if head is not None:
                environ[ENVIRON_KEY] = head
            environ["wsgi.input"] = CheckedBody(environ["wsgi.input"])
            return app(environ, start_response)

        self.wsgi = with_head

    def handle_request(self, req: Any, conn: Any) -> Any:
        # The head exactly as parsed: WSGI joins repeated headers, so the app's environ
        # alone can neither count them nor tell a long line from two short ones.
        major, minor = req.version
        self._heads.current = RequestHead.of(
            req.method, req.uri, f"HTTP/{major}.{minor}", req.headers
        )
        try:
            return super().handle_request(req, conn)
        finally:
            self._heads.current = None

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        """gunicorn's handling (its status, log lines and access line), with our body."""
        page = _GunicornsPage()
        super().handle_error(req, page, addr, exc)
        try:
            util.write_nonblock(client, problem_answer(page.status()))
        except Exception:  # noqa: BLE001  (the client is gone: as gunicorn, nothing to do)
            self.log.debug("Failed to send error message.")


class CheckedBody:
    """gunicorn's request body (``wsgi.input``), whose framing errors are the client's:
    werkzeug's BadRequest (400) instead of gunicorn's parse error (an unhandled 500).

    gunicorn has marked the body failed by then, so the connection closes after the
    answer: where the next request would start is unknown.
    """

    def __init__(self, body: Any) -> None:
        self._body = body

    def read(self, size: int | None = None) -> bytes:
        data: bytes = self._checked(self._body.read, size)
        return data

    def readline(self, size: int | None = None) -> bytes:
        line: bytes = self._checked(self._body.readline, size)
        return line

    def readlines(self, hint: int | None = None) -> list[bytes]:
        lines: list[bytes] = self._checked(self._body.readlines, hint)
        return lines

    def __iter__(self) -> CheckedBody:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    @staticmethod
    def _checked(read: Callable[[int | None], Any], size: int | None) -> Any:
        try:
            return read(size)
        except (InvalidChunkSize, ChunkMissingTerminator) as exc:
            raise BadRequest(
                "the request body is not valid chunked transfer coding (RFC 9112 section 7.1)"
            ) from exc
        except GunicornParseError as exc:
            raise BadRequest("the request body's framing is not valid HTTP/1.1") from exc
        except NoMoreData as exc:
            raise BadRequest("the request body ended before its end: the client stopped") from exc


class _GunicornsPage:
    """Takes the client socket's place while gunicorn writes its HTML error page: its
    status line is kept; the page itself is never sent."""

    def __init__(self) -> None:
        self.written = bytearray()

    def gettimeout(self) -> float:
        return 0.0  # "non-blocking already": gunicorn writes at once

    def sendall(self, data: bytes) -> None:
        self.written += data

    def status(self) -> int:
        try:
            return int(bytes(self.written).split(b" ", 2)[1])
        except (IndexError, ValueError):
            return 400  # a page we cannot read: the refusals gunicorn answers are 4xx


def problem_answer(status: int) -> bytes:
    """A whole HTTP/1.1 answer of ``status`` as problem+json, closing the connection (the
    request was not read to its end: where the next one starts is unknown)."""
    if status >= 500:
        title, code = "Internal error", "internal_error"  # the app's own 500
    else:
        title = HTTP_STATUS_CODES.get(status, "Bad Request")
        code = title.lower().replace(" ", "_").replace("'", "")
    problem: dict[str, object] = {
        "type": PROBLEM_BASE + code.replace("_", "-"),
        "title": title,
        "status": status,
        "code": code,
    }
    if status in _DETAILS:
        problem["detail"] = _DETAILS[status]
    body = json.dumps(problem).encode()
    reason = HTTP_STATUS_CODES.get(status, "Error")
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        "Connection: close\r\n"
        f"Content-Type: {PROBLEM_MEDIA_TYPE}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "\r\n"
    )
    return head.encode("latin-1") + body
