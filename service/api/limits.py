"""Per-client and per-account rate limits on the risk check and step-up (Flask-Limiter).

Counters live in Redis (``LEAKGUARD_REDIS_URL``), shared by every web process; without
it, in this process's memory. When Redis cannot be reached the request fails closed with
503: an attacker must not be able to switch the limits off by overloading their store.
Limits key on a hash of the bearer key, so they apply before the key is even looked up.
"""

from __future__ import annotations

import hashlib
import math
import time
from typing import Any

from flask import Flask, Response, request
from flask_limiter import Limiter, RequestLimit

from service.api.problems import problem_response
from service.config import Settings

# Endpoint -> the setting that bounds each API client on it.
PER_CLIENT = {
    "api.risk_check": "rate_limit_risk",
    "api.start_challenge": "rate_limit_step_up",
    "api.verify_step_up": "rate_limit_step_up",
    "api.enroll_totp": "rate_limit_step_up",
    "api.confirm_totp": "rate_limit_step_up",
    "api.remove_totp": "rate_limit_step_up",
    "api.new_recovery_codes": "rate_limit_step_up",
}


def client_key() -> str:
    header = request.headers.get("Authorization", "")
    return "client:" + hashlib.sha256(header.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def account_key() -> str:
    """The account a request names in its JSON body (validation rejects a missing one)."""
    body = request.get_json(silent=True)
    account = body.get("account_id") if isinstance(body, dict) else None
    text = account if isinstance(account, str) else ""
    return "account:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


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
    )
    views: dict[str, Any] = app.view_functions
    for endpoint, setting in PER_CLIENT.items():
        views[endpoint] = limiter.limit(getattr(settings, setting), key_func=client_key)(
            views[endpoint]
        )
    views["api.start_challenge"] = limiter.limit(
        settings.rate_limit_email_code, key_func=account_key, scope="email-code"
    )(views["api.start_challenge"])
    return limiter
