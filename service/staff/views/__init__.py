"""The ``staff`` blueprint, mounted at /staff: login and enrolment, the home page, the
audit log, the account look-up. Every view declares its access (service/staff/access.py);
``register_staff`` mounts it with CSRF and its default-deny check."""

from __future__ import annotations

from flask import Flask
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

from service.api.problems import render_http_error
from service.runtime import runtime_of
from service.staff.access import THROTTLE_EXTENSION, csrf, undeclared_views
from service.staff.throttle import LoginThrottle
from service.staff.views import (  # noqa: F401  (registers views)
    account_actions,
    accounts,
    audit_log,
    auth,
    leaks,
    queues,
    roles,
)
from service.staff.views.blueprint import staff, staff_headers, unrouted_page

__all__ = ["register_staff", "staff"]


def register_staff(app: Flask) -> None:
    """Mount the staff site: its views, CSRF (checked for /staff only, by ``check_access``:
    the /v1 API authenticates with bearer keys, not cookies), headers and nav."""
    app.config.setdefault("WTF_CSRF_CHECK_DEFAULT", False)
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", 12 * 3600)  # a page open all shift long
    csrf.init_app(app)
    settings = runtime_of(app).settings
    app.extensions[THROTTLE_EXTENSION] = LoginThrottle(
        settings.redis_url or "memory://",
        per_account=settings.rate_limit_staff_login_account,
        per_ip=settings.rate_limit_staff_login_ip,
    )
    app.register_blueprint(staff)
    app.after_request(staff_headers)
    # 414 and 431: a request head past the limits (service.ops.head), refused before
    # routing decides whose page it is.
    for code in (404, 405, 414, 431):
        app.register_error_handler(code, _unrouted)
    undeclared = undeclared_views(app)
    if undeclared:  # check_access would refuse them; say so at start, not at first use
        raise RuntimeError(f"staff views declare no access (@requires/@public): {undeclared}")


def _unrouted(exc: HTTPException) -> ResponseReturnValue:
    """404, 405, 414 and 431 for the whole app: a staff page under /staff, else
    problem+json (these code handlers are found before the app's HTTPException one, so
    they answer both)."""
    page = unrouted_page(exc)
    if page is not None:
        return page
    if exc.response is not None:
        return exc.response
    return render_http_error(exc)
