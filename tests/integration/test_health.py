"""``/readyz`` checks every backing service the process needs: the database (reachable,
migrated) and Redis when one is configured; each failure is a 503 problem+json that names
what is wrong, while ``/healthz`` still answers (issue 16, item 4). ``/metrics`` answers
with a store down, saying which."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask import Flask

from service.clients import Scope
from service.runtime import Runtime
from tests.support.factories import make_api_key
from tests.support.http import assert_problem, bearer


@pytest.mark.redis
def test_readyz_checks_the_configured_redis(make_app: Callable[..., Flask], redis_url: str) -> None:
    ready = make_app(redis_url=redis_url).test_client().get("/readyz")
    assert (ready.status_code, ready.get_json()) == (200, {"status": "ready"})
    client = make_app(redis_url="redis://127.0.0.1:1/0").test_client()
    assert client.get("/healthz").get_json() == {"status": "ok"}
    problem = assert_problem(client.get("/readyz"), 503, "not_ready")
    assert "Redis" in problem["title"]


def test_readyz_without_redis_needs_only_the_database(make_app: Callable[..., Flask]) -> None:
    response = make_app(redis_url=None).test_client().get("/readyz")
    assert response.status_code == 200


def test_metrics_answer_with_redis_down_and_say_so(
    make_app: Callable[..., Flask], runtime: Runtime
) -> None:
    key = make_api_key(runtime, Scope.METRICS_READ)
    client = make_app(redis_url="redis://127.0.0.1:1/0").test_client()
    response = client.get("/metrics", headers=bearer(key))
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    assert 'leakguard_store_up{store="redis"} 0.0' in text
    assert 'leakguard_store_up{store="database"} 1.0' in text
    assert "leakguard_queue_jobs{" not in text
