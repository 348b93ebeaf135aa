"""The application factory: the HTTP app (API, link pages, staff site, health, metrics)."""

from __future__ import annotations

from flask_openapi3 import Info, OpenAPI, SecurityScheme
from werkzeug.middleware.proxy_fix import ProxyFix

from service.api import api, register_routes
from service.api.events import register_well_known
from service.api.json_body import StrictJsonRequest
from service.api.limits import install_rate_limits
from service.api.problems import Problem, register_problem_handlers, render_validation_error
from service.app_base import install, package_version, prepare
from service.config import Settings
from service.ops.health import register_health
from service.ops.metrics import register_metrics
from service.ops.requests import register_head_limits, register_request_ids
from service.staff.views import register_staff
from service.web.email_change import pages
from service.web.routing import keep_slashes_in_ids, register_converters

API_DESCRIPTION = """\
Leakguard flags the accounts whose email address appeared in a third-party leak and tells
the login service how to treat them. Every request carries `Authorization: Bearer <key>`
(create one with `leakguard api-clients create NAME --scope ...`); every error is
`application/problem+json` (RFC 9457) with a stable `code`.
"""


def create_app(
    settings: Settings | None = None, *, serving: bool = True, create_instance: bool = True
) -> OpenAPI:
    """Build the Flask app from ``settings`` (default: the environment). Connects to nothing.

    ``serving``: the app answers HTTP requests, so its database statements are bounded
    (``db_request_timeout_seconds``); the CLI builds its app with False.
    ``create_instance`` False: raise InstanceNotFound (``service.runtime``) instead of
    creating the instance folder, keys or SQLite database where none is.
    """
    settings, runtime = prepare(settings, serving=serving, create_instance=create_instance)
    app = OpenAPI(
        __name__,
        info=Info(title="Leakguard", version=package_version(), description=API_DESCRIPTION),
        security_schemes={"bearer": SecurityScheme(type="http", scheme="bearer")},
        validation_error_status=422,
        validation_error_model=Problem,
        validation_error_callback=render_validation_error,
        doc_prefix="/openapi",
    )
    app.request_class = StrictJsonRequest
    install(app, settings, runtime)
    register_converters(app)
    register_problem_handlers(app)
    register_routes()
    app.register_api(api)
    keep_slashes_in_ids(app)
    app.register_blueprint(pages)
    register_staff(app)
    install_rate_limits(app, settings)
    if settings.trusted_proxies:
        # Only the hops the deployment names may say who the client is: the per-IP limits
        # would otherwise count every caller as the load balancer, or trust forged headers.
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app,
            x_for=settings.trusted_proxies,
            x_proto=settings.trusted_proxies,
        )
    register_health(app, runtime)
    register_metrics(app, runtime)
    register_request_ids(app)
    register_head_limits(app)
    register_well_known(app)
    return app
