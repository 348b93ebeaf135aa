"""The /v1 JSON API for the login service."""

from __future__ import annotations

import inspect
from functools import cache
from http import HTTPStatus

from flask import Response, current_app, request
from flask_openapi3 import APIBlueprint
from pydantic import ValidationError

from service.api.auth import authenticate_request
from service.api.problems import problem_responses
from service.errors import InvalidRequest, UnsupportedContentEncoding, UnsupportedMediaType

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


@api.after_request
def _no_type_without_content(response: Response) -> Response:
    """A 204 has no content (RFC 9110 section 15.3.5), so no media type: Flask would label
    the empty string text/html, which a client may try to read as a page."""
    if response.status_code == HTTPStatus.NO_CONTENT:
        response.headers.pop("Content-Type", None)
    return response


@api.before_request
def _require_json_body() -> None:
    """Parse the body once, strictly (``json_body``), before validation sees it: a body
    that is not one JSON object is a 400 with its reason, not a 422 for a missing body."""
    if request.method not in JSON_METHODS:
        return
    if _has_no_body():
        if _takes_body(request.endpoint):
            raise InvalidRequest("the body is empty: send a JSON object")
        return  # no body where none is needed, whatever the Content-Type says
    if _content_codings():
        raise UnsupportedContentEncoding(
            "send the body uncompressed, without Content-Encoding "
            f"(this one: {', '.join(_content_codings())})"
        )
    if not request.is_json:
        raise UnsupportedMediaType("send the body as JSON (Content-Type: application/json)")
    # A declared Content-Length over MAX_CONTENT_LENGTH is a 413 already. A chunked body
    # has none: werkzeug reads it up to the limit and stops, and the cut-off JSON would
    # pass for malformed. Reading once more past the limit raises its 413 instead.
    request.get_data(cache=True)
    if getattr(request.stream, "is_exhausted", False):
        request.stream.read(1)
    request.get_json()  # raises InvalidRequest; cached for the view and flask-openapi3


def _content_codings() -> list[str]:
    """The codings of ``Content-Encoding`` other than ``identity`` (RFC 9110 section 8.4),
    at most a few and each cut short: they are quoted back to the caller."""
    codings = [
        coding.strip().lower()[:20]
        for coding in request.headers.get("Content-Encoding", "").split(",")
        if coding.strip()
    ]
    return [coding for coding in codings if coding != "identity"][:3]


def _has_no_body() -> bool:
    chunked = "chunked" in request.headers.get("Transfer-Encoding", "").lower()
    return not request.content_length and not chunked


@cache
def _takes_body(endpoint: str | None) -> bool:
    """Whether the view of ``endpoint`` needs a body: it declares one (flask-openapi3
    validates ``body``) whose model does not stand for an absent body (TotpEnrollBody)."""
    view = current_app.view_functions.get(endpoint or "")
    if view is None:
        return False
    parameter = inspect.signature(view, eval_str=True).parameters.get("body")
    if parameter is None:
        return False
    try:
        parameter.annotation.model_validate(None)
    except ValidationError:
        return True
    return False


def register_routes() -> None:
    """Import the route modules, which attach themselves to ``api``."""
    from service.api import accounts, email_change, events, notices, risk, stepup  # noqa: F401
