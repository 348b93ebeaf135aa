"""Limits keyed on who calls, not on how the header is spelled (security review, item 3).

Before: after ``Bearer KEY`` got 429, ``bearer KEY``, ``Bearer  KEY``, ``Bearer KEY `` and
``Bearer KEY\\t`` each got 200; 20 distinct bad keys got 20 x 401 and never a 429.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask

from service.app import create_app
from service.runtime import Runtime, runtime_of
from tests.support.factories import make_api_key

pytestmark = pytest.mark.redis

SPELLINGS = [
    "Bearer {key}",
    "bearer {key}",
    "BEARER {key}",
    "Bearer  {key}",
    "Bearer {key} ",
    "Bearer {key}\t",
    "Bearer\t{key}",
    "  Bearer {key}",
]


@pytest.fixture
def small_limits_app(runtime: Runtime, redis_url: str) -> Iterator[Flask]:
    settings = runtime.settings.model_copy(
        update={
            "redis_url": redis_url,
            "rate_limit_risk": "5/minute",
            "rate_limit_auth_failures": "5/minute",
        }
    )
    app = create_app(settings)
    yield app
    runtime_of(app).db.dispose()


def risk_check(app: Flask, header: str, ip: str = "192.0.2.1") -> int:
    answer = app.test_client().post(
        "/v1/risk/check",
        json={"account_id": "someone"},
        headers={"Authorization": header},
        environ_base={"REMOTE_ADDR": ip},
    )
    return answer.status_code


def test_every_spelling_of_one_key_shares_one_budget(
    small_limits_app: Flask, runtime: Runtime
) -> None:
    key = make_api_key(runtime)
    statuses = [risk_check(small_limits_app, spelling.format(key=key)) for spelling in SPELLINGS]
    assert statuses == [200] * 5 + [429] * 3


def test_clients_have_budgets_of_their_own(small_limits_app: Flask, runtime: Runtime) -> None:
    first, second = make_api_key(runtime), make_api_key(runtime)
    assert [risk_check(small_limits_app, f"Bearer {first}") for _ in range(6)][-1] == 429
    assert risk_check(small_limits_app, f"Bearer {second}") == 200


def test_failed_authentications_are_limited_per_ip(
    small_limits_app: Flask, runtime: Runtime
) -> None:
    statuses = [risk_check(small_limits_app, f"Bearer guess-{n}") for n in range(20)]
    assert statuses == [401] * 5 + [429] * 15
    # another address is not held back by this one's guesses
    assert risk_check(small_limits_app, "Bearer guess-x", ip="198.51.100.7") == 401
    # and a valid key from the guessing address still works: it is never counted
    assert risk_check(small_limits_app, f"Bearer {make_api_key(runtime)}") == 200


def test_a_missing_or_malformed_header_counts_as_a_failed_authentication(
    small_limits_app: Flask,
) -> None:
    headers = ["", "Basic dXNlcjpwYXNz", "Bearer", "Token abc", "Bearer  ", "x"]
    statuses = [risk_check(small_limits_app, header) for header in headers]
    assert statuses == [401] * 5 + [429]


def test_the_429_for_guessing_is_problem_json_with_retry_after(small_limits_app: Flask) -> None:
    for n in range(5):
        risk_check(small_limits_app, f"Bearer guess-{n}")
    answer = small_limits_app.test_client().post(
        "/v1/risk/check",
        json={"account_id": "someone"},
        headers={"Authorization": "Bearer guess-last"},
        environ_base={"REMOTE_ADDR": "192.0.2.1"},
    )
    assert answer.status_code == 429
    assert answer.mimetype == "application/problem+json"
    assert int(answer.headers["Retry-After"]) >= 1


def test_behind_a_trusted_proxy_the_forwarded_address_is_the_caller(
    runtime: Runtime, redis_url: str
) -> None:
    settings = runtime.settings.model_copy(
        update={
            "redis_url": redis_url,
            "rate_limit_auth_failures": "2/minute",
            "trusted_proxies": 1,
        }
    )
    app = create_app(settings)
    try:
        client = app.test_client()

        def guess(forwarded_for: str) -> int:
            return client.post(
                "/v1/risk/check",
                json={"account_id": "someone"},
                headers={"Authorization": "Bearer nope", "X-Forwarded-For": forwarded_for},
                environ_base={"REMOTE_ADDR": "10.0.0.1"},  # the load balancer
            ).status_code

        assert [guess("203.0.113.9") for _ in range(3)] == [401, 401, 429]
        assert guess("203.0.113.10") == 401
    finally:
        runtime_of(app).db.dispose()
