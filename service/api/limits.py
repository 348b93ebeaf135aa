"""Per-client and per-account rate limits on the /v1 endpoints (Flask-Limiter).

Default-deny, like the scopes: every /v1 view declares its limit with ``@rate_limit`` or
says why it has none with ``@no_rate_limit``; the app refuses to start with a view that
does neither, so a new endpoint cannot go out unlimited by omission.

Counters live in Redis (``LEAKGUARD_REDIS_URL``), shared by every web process; without
it, in this process's memory. When Redis cannot be reached the request fails closed with
503: an attacker must not be able to switch the limits off by overloading their store.
Per-client limits key on the authenticated client's id, so every spelling of one key
shares one budget; requests without a valid key count against their IP, and failed
authentications have a budget of their own per IP. Per-client limits are checked before
the view; budgets per account or address are checked by the view's domain step, where its
request is known to count (``Budgets``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import Flask, Response, current_app, g, request
from flask_limiter import Limiter, RequestLimit
from limits import RateLimitItem, parse_many
from werkzeug.exceptions import TooManyRequests

from service.api import API_PREFIX, api
from service.api.auth import request_principal
from service.api.problems import problem_response
from service.config import Settings

F = TypeVar("F", bound=Callable[..., object])
LIMIT_ATTRIBUTE = "_leakguard_rate_limit"
BUDGETS_EXTENSION = "leakguard_budgets"
_ADMITTED = "leakguard_budgets_admitted"
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A view's limit, named by the setting that holds it (``Settings.rate_limit_*``).

    ``per_client`` bounds each API client; None, with a ``reason``: deliberately unlimited.
    (Budgets per account, such as emailed codes, live in the step-up throttle, where the
    risk check sees them: ``service.stepup.throttle``.)
    """

    per_client: str | None
    reason: str | None = None
    # Budgets of what the request is about, each a setting and the key it counts by (an
    # account, an address): see ``admit``.
    keyed: tuple[tuple[str, Callable[[], str]], ...] = ()


def rate_limit(per_client: str, *keyed: tuple[str, Callable[[], str]]) -> Callable[[F], F]:
    """Declare the view's limit by setting name, e.g. ``rate_limit("rate_limit_risk")``,
    and any budgets as (setting name, key function) pairs: the key function names what
    the budget counts, e.g. the account of the path (never an address in clear: the key
    is stored in Redis). A view with budgets must call ``admit`` (through its domain
    step) where its request is known to count."""
    return _declare(RateLimit(per_client, keyed=keyed))


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
    return _too_many(limit.limit, limit.window.reset_time)


def _too_many(limit: RateLimitItem, reset_time: float) -> Response:
    retry_after = max(1, math.ceil(reset_time - time.time()))
    return problem_response(
        429,
        "too_many_requests",
        "Too many requests",
        detail=f"at most {limit}; retry in {retry_after} s",
        headers={"Retry-After": str(retry_after)},
    )


@dataclass(frozen=True, slots=True)
class Budget:
    """One budget of a view: its limits (a setting may name several) and its key."""

    setting: str
    items: tuple[RateLimitItem, ...]
    key_func: Callable[[], str]

    def identifiers(self) -> tuple[str, ...]:
        return ("leakguard", "budget", self.setting, self.key_func())


class Budgets:
    """The budgets per account and per address (``RateLimit.keyed``) of the /v1 views.

    A budget bounds what a request does to its account or address (mail sent, addresses
    probed after a step-up), so it is neither checked before the view, as a client's rate
    limit is, nor counted for every answer. Checked before the view, a spent budget
    answered 429 to a request that could not have succeeded at all (a resend with nothing
    pending, a change without a valid step-up), where the endpoint's own refusal was the
    true answer; counted for every answer, whoever can send refused requests would lock
    the owner out. So the domain step calls ``admit`` where its request is known to count,
    past the refusals that do not, and only an admitted request that did not fail on our
    side counts. That order tells nobody more than the endpoint tells anyway: a budget
    is only reached past its own checks (an unknown account is the same 404 either way).
    """

    def __init__(self, limiter: Limiter) -> None:
        self._limiter = limiter
        self._views: dict[str, tuple[Budget, ...]] = {}

    def add(self, endpoint: str, budgets: tuple[Budget, ...]) -> None:
        self._views[endpoint] = budgets

    def admit(self) -> None:
        """Raise TooManyRequests (429 problem+json with Retry-After) when a budget of the
        request's view is spent; else mark the request to be counted once answered."""
        strategy = self._limiter.limiter
        for budget in self._views.get(request.endpoint or "", ()):
            identifiers = budget.identifiers()
            for item in budget.items:
                if not strategy.test(item, *identifiers):
                    stats = strategy.get_window_stats(item, *identifiers)
                    raise TooManyRequests(response=_too_many(item, stats.reset_time))
        setattr(g, _ADMITTED, True)

    def count(self, response: Response) -> Response:
        """After the answer: count an admitted request against its view's budgets, unless
        it failed on our side (5xx: nothing was done for the caller)."""
        budgets = self._views.get(request.endpoint or "", ())
        if not budgets or response.status_code >= 500:
            return response
        if not g.get(_ADMITTED):
            if 200 <= response.status_code < 300:
                # A view that never asked: count its success all the same, and say so.
                log.error(
                    "%s answered without admit(): its budgets were not checked", request.endpoint
                )
            else:
                return response
        strategy = self._limiter.limiter
        for budget in budgets:
            identifiers = budget.identifiers()
            for item in budget.items:
                strategy.hit(item, *identifiers)
        return response


def admit() -> None:
    """Check the budgets of the current /v1 request (``Budgets.admit``); for the domain
    steps, through ``ChangeTools.admit``."""
    budgets: Budgets = current_app.extensions[BUDGETS_EXTENSION]
    budgets.admit()


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
    budgets = Budgets(limiter)
    app.extensions[BUDGETS_EXTENSION] = budgets
    app.after_request(budgets.count)
    views: dict[str, Any] = app.view_functions
    for endpoint in [name for name in views if name.startswith(f"{api.name}.")]:
        limit = declared_limit(views[endpoint])
        if limit is None:
            raise RuntimeError(f"{endpoint} declares no rate limit (@rate_limit/@no_rate_limit)")
        view = views[endpoint]
        if limit.per_client is not None:
            view = limiter.limit(getattr(settings, limit.per_client), key_func=client_key)(view)
        views[endpoint] = view
        if limit.keyed:
            budgets.add(
                endpoint,
                tuple(
                    Budget(setting, tuple(parse_many(getattr(settings, setting))), key_func)
                    for setting, key_func in limit.keyed
                ),
            )
    return limiter
