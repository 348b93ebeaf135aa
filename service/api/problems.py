"""RFC 9457 problem details for every error the API returns.

One handler, registered once by the app factory, renders domain errors, werkzeug's HTTP
errors and pydantic's validation errors as ``application/problem+json``. An unexpected
exception is logged and becomes a 500 with no detail: a stack trace helps only an attacker.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from http import HTTPStatus
from typing import Any

from flask import Flask, Response, json, request
from psycopg.errors import QueryCanceled, UndefinedColumn, UndefinedTable
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from redis.exceptions import RedisError
from sqlalchemy.exc import InterfaceError, OperationalError, ProgrammingError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from service.errors import PROBLEM_BASE, LeakguardError, ValidationFailed
from service.logs import ThrottledLog

log = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_SCHEMA_REF = "#/components/schemas/Problem"


class FieldError(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class Problem(BaseModel):
    """RFC 9457 problem details, with the stable ``code`` a client may branch on."""

    model_config = ConfigDict(title="Problem", extra="allow")

    type: str = Field(examples=[PROBLEM_BASE + "validation-failed"])
    title: str
    status: int = Field(ge=400, le=599)
    code: str
    detail: str | None = None
    errors: list[FieldError] | None = None


ResponseSpec = dict[str | int | HTTPStatus, type[BaseModel] | dict[Any, Any] | None]


def problem_responses(*statuses: int) -> ResponseSpec:
    """Describe error responses for the OpenAPI document (a fresh dict: the library edits it)."""
    return {
        status: {
            "description": _STATUS_TEXT.get(status, "Error"),
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": PROBLEM_SCHEMA_REF}}},
        }
        for status in statuses
    }


_STATUS_TEXT = {
    400: "Malformed request",
    401: "Missing or unknown API key",
    403: "The API key lacks the required scope",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request body too large",
    415: "Request body must be JSON",
    422: "Invalid fields",
    429: "Too many requests",
    503: "A backing service is unavailable",
}


def problem_response(
    status: int,
    code: str,
    title: str,
    *,
    detail: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    members: dict[str, Any] | None = None,
) -> Response:
    body: dict[str, Any] = {
        **(members or {}),
        "type": PROBLEM_BASE + code.replace("_", "-"),
        "title": title,
        "status": status,
        "code": code,
    }
    if detail:
        body["detail"] = detail
    if errors is not None:
        body["errors"] = errors
    response = Response(json.dumps(body), status=status, mimetype=PROBLEM_MEDIA_TYPE)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def render_domain_error(exc: LeakguardError) -> Response:
    errors = exc.extra.get("errors") if isinstance(exc, ValidationFailed) else None
    return problem_response(
        exc.status,
        exc.code,
        exc.title,
        detail=exc.detail,
        errors=errors,
        headers=exc.response_headers(),
        members=exc.problem_members(),
    )


def render_validation_error(exc: ValidationError) -> Response:
    """pydantic's report, minus the rejected input: it may hold an address or a secret."""
    errors = [
        {"loc": list(error["loc"]), "msg": error["msg"], "type": error["type"]}
        for error in exc.errors(include_url=False, include_input=False, include_context=False)
    ]
    return problem_response(
        ValidationFailed.status, ValidationFailed.code, ValidationFailed.title, errors=errors
    )


def render_http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    code = (exc.name or "error").lower().replace(" ", "_").replace("'", "")
    headers = {
        name: value
        for name, value in exc.get_headers()
        if name.lower() in {"allow", "retry-after", "www-authenticate"}
    }
    return problem_response(status, code, exc.name, detail=exc.description, headers=headers)


def register_problem_handlers(app: Flask) -> None:
    """Render every error as problem+json, once, for the whole app."""
    outages = ThrottledLog(log, every=OUTAGE_LOG_EVERY)

    @app.errorhandler(LeakguardError)
    def _domain(exc: LeakguardError) -> Response:
        return render_domain_error(exc)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response | HTTPException:
        if exc.response is not None:  # already rendered, e.g. by the validation callback
            return exc.response  # type: ignore[return-value]
        return render_http_error(exc)

    @app.errorhandler(RedisError)
    def _store_down(exc: RedisError) -> Response:
        # The rate limiter's store (or the queue) is down: refuse rather than run unlimited.
        return _unavailable(outages, "Redis", exc)

    @app.errorhandler(OperationalError)
    @app.errorhandler(InterfaceError)
    @app.errorhandler(PoolTimeout)
    def _database_down(exc: SQLAlchemyError) -> Response:
        # Unreachable, restarting, every pooled connection busy, or a statement past the
        # request timeout (behind a table lock, say): the caller should retry, and a
        # traceback per request would bury the one line that says so.
        if isinstance(getattr(exc, "orig", None), QueryCanceled):
            return _unavailable(outages, "the database (statement timeout)", exc)
        return _unavailable(outages, "the database", exc)

    @app.errorhandler(ProgrammingError)
    def _schema_missing(exc: ProgrammingError) -> Response:
        # A server started before `leakguard db upgrade`: not ready, not a bug (/readyz says
        # the same). SQLite reports a missing table as an OperationalError, handled above.
        if isinstance(exc.orig, UndefinedTable | UndefinedColumn):
            return _unavailable(outages, "the database (not migrated)", exc)
        return _unexpected(exc)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.error("unhandled error on %s %s", request.method, request.path, exc_info=exc)
        return problem_response(500, "internal_error", "Internal error")


UNAVAILABLE_RETRY_SECONDS = 5
OUTAGE_LOG_EVERY = timedelta(minutes=1)


def _unavailable(outages: ThrottledLog, service: str, exc: Exception) -> Response:
    """503 with Retry-After; one log line per kind of failure and minute, no traceback."""
    original = getattr(exc, "orig", None) or exc
    outages.warning(
        f"{service}:{type(original).__name__}",
        "%s unavailable (%s): %s",
        service,
        type(original).__name__,
        str(original).strip().splitlines()[0] if str(original).strip() else "no detail",
    )
    return problem_response(
        503,
        "service_unavailable",
        "A backing service is unavailable; try again shortly",
        detail=f"{service} is unavailable",
        headers={"Retry-After": str(UNAVAILABLE_RETRY_SECONDS)},
    )
