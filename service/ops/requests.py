"""A request id for every request: in every log line written while it is served, and in
the ``X-Request-ID`` answer header (which gunicorn's access line reads); and the refusal
of a request head past the documented limits (``service.ops.head``)."""

from __future__ import annotations

import logging
import time

from flask import Flask, Response, g, request
from werkzeug.exceptions import RequestHeaderFieldsTooLarge, RequestURITooLarge

from service.logs import REQUEST_ID_HEADER, bind_request_id, unbind_request_id
from service.ops.head import head_of

_ID = "leakguard_request_id"
_STARTED = "leakguard_request_clock"
log = logging.getLogger(__name__)


def register_request_ids(app: Flask) -> None:
    """Bind a request id before any other hook of ``app`` runs; answer it in a header."""

    def _bind() -> None:
        setattr(g, _ID, bind_request_id(request.headers.get(REQUEST_ID_HEADER)))
        setattr(g, _STARTED, time.perf_counter())

    # First of the before-request hooks: a line the limiter or authentication logs has it.
    app.before_request_funcs.setdefault(None, []).insert(0, _bind)

    @app.after_request
    def _answer(response: Response) -> Response:
        request_id = g.get(_ID)
        if request_id is not None:
            response.headers[REQUEST_ID_HEADER] = request_id
        started = g.get(_STARTED)
        if started is not None:
            # The path only: a query string may carry a token (the mask sees to addresses).
            log.debug(
                "answered %s %s with %s in %.1f ms",
                request.method,
                request.path,
                response.status_code,
                (time.perf_counter() - started) * 1000,
            )
        return response

    @app.teardown_request
    def _unbind(_error: BaseException | None) -> None:
        unbind_request_id()


def register_head_limits(app: Flask) -> None:
    """Refuse a request whose head is past the limits (414, 431) before any other hook of
    ``app`` but the request id's: before the rate limiter counts it or the staff site
    reads its session. Call after ``register_request_ids``.

    Raised as werkzeug's HTTP errors, so each face renders it as it renders its others:
    problem+json, or the staff site's page under /staff.
    """

    def _refuse_oversized_head() -> None:
        refusal = head_of(request.environ).refusal()
        if refusal is None:
            return
        status, detail = refusal
        raise (RequestURITooLarge if status == 414 else RequestHeaderFieldsTooLarge)(detail)

    app.before_request_funcs.setdefault(None, []).insert(1, _refuse_oversized_head)
