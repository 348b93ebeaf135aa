"""What every Leakguard Flask app holds: its settings' runtime, logging and session config.

Apart from ``service.app`` so that an operator's command (``leakguard ingest``, ``worker``)
starts without importing the HTTP side it never uses (the API's routes and models, the
staff site, OpenAPI): about half of a command's start-up before this split.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from flask import Flask

from service.config import Settings, load_settings
from service.logs import configure_logging
from service.runtime import EXTENSION, Runtime, build_runtime


def package_version() -> str:
    try:
        return version("leakguard")
    except PackageNotFoundError:
        return "0.0.0"


def prepare(
    settings: Settings | None, *, serving: bool, create_instance: bool
) -> tuple[Settings, Runtime]:
    """The settings (default: the environment) and their runtime, with logging set up."""
    settings = settings or load_settings()
    runtime = build_runtime(settings, serving=serving, create_instance=create_instance)
    configure_logging(settings.log_level, settings.resolved_log_format)
    return settings, runtime


def install(app: Flask, settings: Settings, runtime: Runtime) -> None:
    """Give ``app`` the runtime and the configuration every Leakguard app has."""
    app.config.update(app_config(settings))
    app.extensions[EXTENSION] = runtime


def app_config(settings: Settings) -> dict[str, Any]:
    return {
        "SECRET_KEY": settings.secret_key_text(),
        "MAX_CONTENT_LENGTH": settings.max_request_bytes,
        # The link pages' CSRF token lives in the session cookie: never sent over plain
        # HTTP in production, never to another site's request.
        "SESSION_COOKIE_SECURE": settings.public_url.startswith("https://"),
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_HTTPONLY": True,
    }


def create_command_app(settings: Settings | None = None, *, create_instance: bool) -> Flask:
    """The app an operator's command runs in: the runtime without routes (commands use
    only the runtime). Flask's own commands (routes, shell, run) get ``create_app``'s."""
    settings, runtime = prepare(settings, serving=False, create_instance=create_instance)
    app = Flask(__name__)
    install(app, settings, runtime)
    return app
