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


def requires_scope(scope: Scope) -> Callable[[F], F]:
    """Mark a view as needing ``scope``; checked before the body is even parsed."""

    def mark(view: F) -> F:
        setattr(view, SCOPE_ATTRIBUTE, scope)
        return view

    return mark


def current_principal() -> Principal:
    principal: Principal = g.principal
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
    header = request.headers.get("Authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Unauthorized("send Authorization: Bearer <key>")
    principal = principal_cache().authenticate(runtime().db, key.strip())
    if principal is None:
        raise Unauthorized("the API key is unknown or revoked")
    scope: Scope | None = getattr(view, SCOPE_ATTRIBUTE, None)
    if scope is None or not principal.may(scope):
        raise Forbidden(f"this endpoint needs the scope {scope}" if scope else None)
    g.principal = principal
