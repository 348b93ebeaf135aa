"""Rate limits are default-deny: every /v1 view declares its limit (``@rate_limit``) or why
it has none (``@no_rate_limit``), and an app with an undeclared /v1 view refuses to start.

The undeclared views live on blueprints made here, never on the service's own ``api``
blueprint, which every other test's app registers.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask_openapi3 import APIBlueprint, OpenAPI

import service.app
from service.api import api
from service.api.limits import declared_limit, install_rate_limits, no_rate_limit, rate_limit
from service.app import create_app
from service.config import Settings
from service.runtime import runtime_of
from tests.support.settings import make_settings


@pytest.fixture
def settings_here(tmp_path: Path) -> Settings:
    """Settings on a database nobody connects to: the app factory connects to nothing."""
    return make_settings(f"sqlite:///{tmp_path / 'unused.sqlite3'}", tmp_path / "instance")


@pytest.fixture
def service_app(settings_here: Settings) -> Iterator[Flask]:
    value = create_app(settings_here)
    yield value
    runtime_of(value).db.dispose()


def v1_blueprint(*, undeclared: bool) -> APIBlueprint:
    """A blueprint mounted like ``api``: a limited view, an unlimited one, and maybe one
    that declares nothing."""
    blueprint = APIBlueprint(api.name, __name__, url_prefix=api.url_prefix)

    @blueprint.get("/limited")
    @rate_limit("rate_limit_risk")
    def limited() -> dict[str, str]:
        return {"view": "limited"}

    @blueprint.get("/unlimited")
    @no_rate_limit("a test view, called a bounded number of times")
    def unlimited() -> dict[str, str]:
        return {"view": "unlimited"}

    if undeclared:

        @blueprint.get("/undeclared")
        def forgotten() -> dict[str, str]:
            return {"view": "undeclared"}

    return blueprint


def app_with(blueprint: APIBlueprint) -> OpenAPI:
    value = OpenAPI(__name__)
    value.register_api(blueprint)
    return value


def test_every_v1_route_of_the_service_declares_its_rate_limit(service_app: Flask) -> None:
    v1_rules = [rule for rule in service_app.url_map.iter_rules() if rule.rule.startswith("/v1")]
    assert len(v1_rules) >= 10  # the walk sees the API at all
    undeclared = [
        rule.rule
        for rule in v1_rules
        if declared_limit(service_app.view_functions[rule.endpoint]) is None
    ]
    assert undeclared == []
    for rule in v1_rules:
        limit = declared_limit(service_app.view_functions[rule.endpoint])
        assert limit is not None
        # A limit names a setting that exists; no limit says why.
        if limit.per_client is None:
            assert limit.reason, rule.rule
        assert limit.per_client is None or limit.per_client in Settings.model_fields, rule.rule


def test_install_refuses_a_v1_view_that_declares_no_limit(settings_here: Settings) -> None:
    value = app_with(v1_blueprint(undeclared=True))
    with pytest.raises(RuntimeError, match=r"api\.forgotten declares no rate limit"):
        install_rate_limits(value, settings_here)


def test_declared_views_are_installed_limited_or_not(settings_here: Settings) -> None:
    value = app_with(v1_blueprint(undeclared=False))
    install_rate_limits(value, settings_here.model_copy(update={"rate_limit_risk": "2/minute"}))
    client = value.test_client()
    assert [client.get("/v1/limited").status_code for _ in range(3)] == [200, 200, 429]
    assert [client.get("/v1/unlimited").status_code for _ in range(5)] == [200] * 5


def test_the_app_refuses_to_start_with_an_undeclared_v1_view(
    settings_here: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The factory registers this blueprint instead of the service's own ``api``.
    monkeypatch.setattr(service.app, "api", v1_blueprint(undeclared=True))
    with pytest.raises(RuntimeError, match=r"api\.forgotten declares no rate limit"):
        create_app(settings_here)


def test_a_view_outside_v1_needs_no_declaration(service_app: Flask) -> None:
    assert declared_limit(service_app.view_functions["healthz"]) is None
    assert service_app.test_client().get("/healthz").status_code == 200
