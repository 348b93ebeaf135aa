"""Per-client and per-account rate limits on the /v1 endpoints (Flask-Limiter).

Default-deny, like the scopes: every /v1 view declares its limit with ``@rate_limit`` or
says why it has none with ``@no_rate_limit``; the app refuses to start with a view that
does neither, so a new endpoint cannot go out unlimited by omission.

Counters live in Redis (``LEAKGUARD_REDIS_URL``), shared by every web process; without
it, in this process's memory. When Redis cannot be reached the request fails closed with
503: an attacker must not be able to switch the limits off by overloading their store.
Per-client limits key on the authenticated client's id, so every spelling of one key
shares one budget; requests without a valid key count against their IP, and failed
authentications have a budget of their own per IP.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import Flask, Response, request
from flask_limiter import Limiter, RequestLimit

from service.api import API_PREFIX, api
from service.api.auth import request_principal
from service.api.problems import problem_response
from service.config import Settings

F = TypeVar("F", bound=Callable[..., object])
LIMIT_ATTRIBUTE = "_leakguard_rate_limit"


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A view's limit, named by the setting that holds it (``Settings.rate_limit_*``).

    ``per_client`` bounds each API client; None, with a ``reason``: deliberately unlimited.
    (Budgets per account, such as emailed codes, live in the step-up throttle, where the
    risk check sees them: ``service.stepup.throttle``.)
    """

    per_client: str | None
    reason: str | None = None
    # Further limits, each a setting and the key it counts by (an account, an address).
    keyed: tuple[tuple[str, Callable[[], str]], ...] = ()
    # Which answers the keyed limits count (None: every request). A limit per account
    # that counted refusals would let anyone who can send refused requests lock the
    # account's owner out; such a limit counts only what got past the request's own
    # authentication (a refused request is still bounded by the per-client limit).
    keyed_counts: Callable[[Response], bool] | None = None


def rate_limit(
    per_client: str,
    *keyed: tuple[str, Callable[[], str]],
    counts: Callable[[Response], bool] | None = None,
) -> Callable[[F], F]:
    """Declare the view's limit by setting name, e.g. ``rate_limit("rate_limit_risk")``,
    and any further limits as (setting name, key function) pairs: the key function names
    what the limit counts, e.g. the account of the path (never an address in clear: the
    key is stored in Redis). ``counts``: which answers the further limits count (given the
    response; default every request); a full budget refuses with 429 all the same."""
    return _declare(RateLimit(per_client, keyed=keyed, keyed_counts=counts))


def no_rate_limit(reason: str) -> Callable[[F], F]:
    """Declare that the view has no rate limit, and why."""
    return _declare(RateLimit(None, reason))


def _declare(limit: RateLimit) -> Callable[[F], F]:
    def mark(view: F) -> F:
        setattr(view, LIMIT_ATTRIBUTE, limit)
        return view

    return mark


def declared_limit(view: Callable[..., object]) -> RateLimit | None:
    return getattr(view, LIMIT_ATTRIBUTE, None)


def client_key() -> str:
    """The authenticated API client, however its header is spelled; else the caller's IP."""
    principal = request_principal()
    return f"client:{principal.client_id}" if principal is not None else f"ip:{remote_ip()}"


def remote_ip() -> str:
    """The caller's address (behind LEAKGUARD_TRUSTED_PROXIES proxies: as they report it)."""
    return request.remote_addr or "unknown"


def _unauthenticated(response: Response) -> bool:
    return response.status_code == 401


def _not_a_guess() -> bool:
    return not request.path.startswith(API_PREFIX) or request_principal() is not None


def too_many_requests(limit: RequestLimit) -> Response:
    """The 429 answer, with the seconds until the limit's window ends."""
    retry_after = max(1, math.ceil(limit.window.reset_time - time.time()))
    return problem_response(
        429,
        "too_many_requests",
        "Too many requests",
        detail=f"at most {limit.limit}; retry in {retry_after} s",
        headers={"Retry-After": str(retry_after)},
    )


def install_rate_limits(app: Flask, settings: Settings) -> Limiter:
    """Attach the limits to the registered /v1 views; call after the blueprint is registered."""
    limiter = Limiter(
        key_func=client_key,
        app=app,
        storage_uri=settings.redis_url or "memory://",
        storage_options={"socket_timeout": 2, "socket_connect_timeout": 2},
        strategy="fixed-window",
        # X-RateLimit-* headers would cost two more Redis reads on every request (the risk
        # check's largest cost after the database): only a refusal reads its window.
        headers_enabled=False,
        on_breach=too_many_requests,
        key_prefix="leakguard",
        # Failed authentications, per IP (``client_key`` of a request without a valid key),
        # over all of /v1 together: checked before the scope check, counted only when the
        # answer is 401, and never applied to a request with a valid key. An application
        # limit, because a route's own limits are only checked once its view runs.
        application_limits=[settings.rate_limit_auth_failures],
        application_limits_exempt_when=_not_a_guess,
        application_limits_deduct_when=_unauthenticated,
    )
    views: dict[str, Any] = app.view_functions
    for endpoint in [name for name in views if name.startswith(f"{api.name}.")]:
        limit = declared_limit(views[endpoint])
        if limit is None:
            raise RuntimeError(f"{endpoint} declares no rate limit (@rate_limit/@no_rate_limit)")
        view = views[endpoint]
        if limit.per_client is not None:
            view = limiter.limit(getattr(settings, limit.per_client), key_func=client_key)(view)
        for setting, key_func in limit.keyed:
            view = limiter.limit(
                getattr(settings, setting), key_func=key_func, deduct_when=limit.keyed_counts
            )(view)
        views[endpoint] = view
    return limiter
