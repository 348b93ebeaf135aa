"""Domain errors. Each names a fact and carries what the API needs to render it.

``code`` is a stable slug the login service may branch on; it also forms the problem
``type`` URI (RFC 9457). Domain code raises these; only the web layer renders them.
"""

from __future__ import annotations

from typing import Any, ClassVar

PROBLEM_BASE = "https://leakguard.dev/problems/"


class LeakguardError(Exception):
    """Base of every error the service reports to a caller."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    title: ClassVar[str] = "Internal error"
    headers: ClassVar[dict[str, str]] = {}

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail
        self.extra = extra

    def response_headers(self) -> dict[str, str]:
        """Headers the HTTP answer carries, such as Retry-After; per instance if need be."""
        return dict(self.headers)

    def problem_members(self) -> dict[str, Any]:
        """Extension members of the problem document (RFC 9457 section 3.2), if any."""
        return {}


class InvalidRequest(LeakguardError):
    status = 400
    code = "invalid_request"
    title = "The request is not valid"


class ValidationFailed(LeakguardError):
    """Well-formed JSON whose fields break the schema; ``errors`` lists them per field."""

    status = 422
    code = "validation_failed"
    title = "The request's fields are not valid"


class InvalidEmail(ValidationFailed):
    code = "invalid_email"
    title = "The email address is not valid"


class Unauthorized(LeakguardError):
    status = 401
    code = "unauthorized"
    title = "A valid API key is required"
    headers: ClassVar[dict[str, str]] = {"WWW-Authenticate": 'Bearer realm="leakguard"'}


class Forbidden(LeakguardError):
    status = 403
    code = "forbidden"
    title = "The API key lacks the scope this endpoint requires"


class NotFound(LeakguardError):
    status = 404
    code = "not_found"
    title = "Not found"


class AlreadyExists(LeakguardError):
    status = 409
    code = "already_exists"
    title = "It exists already"


class UnsupportedMediaType(LeakguardError):
    status = 415
    code = "unsupported_media_type"
    title = "The request body must be JSON"
    headers: ClassVar[dict[str, str]] = {"Accept": "application/json"}


class UnsupportedContentEncoding(LeakguardError):
    """A compressed request body (``Content-Encoding: gzip``): nothing here decodes one, and
    reading the compressed bytes as JSON would call a good body malformed (RFC 9110
    section 15.5.16: 415, naming the codings accepted)."""

    status = 415
    code = "unsupported_content_encoding"
    title = "The request body must not be compressed"
    headers: ClassVar[dict[str, str]] = {"Accept-Encoding": "identity"}


class JobError(Exception):
    """A batch job cannot go on: an unusable input file, a run already going, a service down.

    Its message is one line for the operator (the CLI prints it and exits 1); like every
    message here, it never holds an address or a line of a leak.
    """
