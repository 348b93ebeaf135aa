"""The /v1 JSON API for the login service."""

from __future__ import annotations

from flask import request
from flask_openapi3 import APIBlueprint

from service.api.auth import authenticate_request
from service.api.problems import problem_responses
from service.errors import InvalidRequest, UnsupportedMediaType

JSON_METHODS = frozenset({"POST", "PUT", "PATCH"})
API_PREFIX = "/v1/"

api = APIBlueprint(
    "api",
    __name__,
    url_prefix=API_PREFIX.rstrip("/"),
    abp_security=[{"bearer": []}],
    abp_responses=problem_responses(401, 403, 429, 503),
    operation_id_callback=lambda name, path, method: name.removeprefix("api_"),
)


@api.before_request
def _authenticate() -> None:
    authenticate_request()


@api.before_request
def _require_json_body() -> None:
    """Reject a body that is not JSON with 400, before validation sees it as missing."""
    if request.method not in JSON_METHODS or _has_no_body():
        return  # an endpoint that needs a body answers 422 for the missing one
    if not request.is_json:
        raise UnsupportedMediaType("send the body as JSON (Content-Type: application/json)")
    # A declared Content-Length over MAX_CONTENT_LENGTH is a 413 already. A chunked body
    # has none: werkzeug reads it up to the limit and stops, and the cut-off JSON would
    # pass for malformed. Reading once more past the limit raises its 413 instead.
    request.get_data(cache=True)
    if getattr(request.stream, "is_exhausted", False):
        request.stream.read(1)
    try:
        parsed = request.get_json(silent=True)  # parsed from the cached data, for the view
    except RecursionError:  # deeply nested arrays exhaust the parser's recursion
        raise InvalidRequest("the body is nested too deeply") from None
    if parsed is None:
        raise InvalidRequest("the body is not valid JSON")


def _has_no_body() -> bool:
    chunked = "chunked" in request.headers.get("Transfer-Encoding", "").lower()
    return not request.content_length and not chunked


def register_routes() -> None:
    """Import the route modules, which attach themselves to ``api``."""
    from service.api import accounts, email_change, events, notices, risk, stepup  # noqa: F401
