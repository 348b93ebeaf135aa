"""Bearer-key authentication and per-endpoint scopes for /v1.

Default-deny: an endpoint without a declared scope answers 403 to everyone, so a new
endpoint cannot be exposed by forgetting its decorator.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from flask import current_app, g, request

from service.clients import Principal, PrincipalCache, Scope
from service.errors import Forbidden, Unauthorized
from service.runtime import Runtime, runtime_of

F = TypeVar("F", bound=Callable[..., object])
SCOPE_ATTRIBUTE = "_leakguard_scope"
PRINCIPALS = "leakguard.principals"  # the app's PrincipalCache, in app.extensions
PRINCIPAL = "leakguard_principal"  # this request's Principal or None, in flask.g


def requires_scope(scope: Scope) -> Callable[[F], F]:
    """Mark a view as needing ``scope``; checked before the body is even parsed."""

    def mark(view: F) -> F:
        setattr(view, SCOPE_ATTRIBUTE, scope)
        return view

    return mark


def current_principal() -> Principal:
    """The authenticated caller (inside a /v1 view, after ``authenticate_request``)."""
    principal = request_principal()
    if principal is None:
        raise Unauthorized("the API key is unknown or revoked")
    return principal


def bearer_key() -> str | None:
    """The key of ``Authorization: Bearer <key>`` (RFC 6750 section 2.1), or None.

    The scheme is case-insensitive and whitespace around and between the parts is not
    part of the key (RFC 9110 section 11.6.2), so every spelling of one header names one key.
    """
    parts = request.headers.get("Authorization", "").split(None, 1)
    if len(parts) != 2 or parts[0].lower() != "bearer":
        return None
    return parts[1].strip() or None


def request_principal() -> Principal | None:
    """The API client the request's key authenticates, or None; resolved once per request.

    The rate limiter asks first (its hook runs before the blueprint's), then the scope check.
    """
    if PRINCIPAL not in g:
        key = bearer_key()
        found = None if key is None else principal_cache().authenticate(runtime().db, key)
        setattr(g, PRINCIPAL, found)
    principal: Principal | None = getattr(g, PRINCIPAL)
    return principal


def runtime() -> Runtime:
    return runtime_of(current_app)


def principal_cache() -> PrincipalCache:
    """This app's cache of authenticated keys, made on first use."""
    cache: PrincipalCache | None = current_app.extensions.get(PRINCIPALS)
    if cache is None:  # setdefault: two threads of a fresh worker keep the same one
        cache = current_app.extensions.setdefault(PRINCIPALS, PrincipalCache())
    return cache


def authenticate_request() -> None:
    """Resolve the bearer key to a principal and enforce the endpoint's scope."""
    view = current_app.view_functions.get(request.endpoint or "")
    if view is None:
        return  # 404/405: let routing answer
    if bearer_key() is None:
        raise Unauthorized("send Authorization: Bearer <key>")
    principal = request_principal()
    if principal is None:
        raise Unauthorized("the API key is unknown or revoked")
    scope: Scope | None = getattr(view, SCOPE_ATTRIBUTE, None)
    if scope is None or not principal.may(scope):
        raise Forbidden(f"this endpoint needs the scope {scope}" if scope else None)
