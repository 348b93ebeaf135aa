"""Staff-site fixtures: the staff clock, an app as deployed (CSRF on), staff users."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient

from service.models import StaffRole
from service.runtime import Runtime
from service.staff import clock as staff_clock
from tests.support.staff import Clock, StaffLogin, make_staff


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    moved = Clock()
    monkeypatch.setattr(staff_clock, "now", moved.now)
    return moved


@pytest.fixture
def staff_app(make_app: Callable[..., Flask]) -> Flask:
    app = make_app()
    app.config["TESTING"] = False  # as deployed
    return app


@pytest.fixture
def staff_client(staff_app: Flask) -> FlaskClient:
    return staff_app.test_client()


@pytest.fixture
def agent(runtime: Runtime, clock: Clock) -> StaffLogin:
    return make_staff(runtime, "agent@staff.example", StaffRole.AGENT, now=clock.now())


@pytest.fixture
def viewer(runtime: Runtime, clock: Clock) -> StaffLogin:
    return make_staff(runtime, "viewer@staff.example", StaffRole.VIEWER, now=clock.now())
