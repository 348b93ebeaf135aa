"""The ``staff`` blueprint itself, its default-deny check, headers and error pages."""

from __future__ import annotations

import contextlib
import logging
import re
from pathlib import Path

from flask import Blueprint, Response, current_app, g, render_template, request
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import BadRequest, HTTPException, NotFound

from service.errors import LeakguardError
from service.staff.access import (
    SAFE_METHODS,
    audit_refusal,
    check_access,
    load_session,
    refuse_forged_request,
)

log = logging.getLogger(__name__)

staff = Blueprint(
    "staff",
    __name__,
    url_prefix="/staff",
    root_path=str(Path(__file__).resolve().parent.parent),
    template_folder="templates",
    static_folder="static",
)

# The nav of every page: (label, endpoint); an entry whose page is not built yet is left out.
NAV = (
    ("Leaks", "staff.leaks"),
    ("Accounts", "staff.accounts"),
    ("Queues", "staff.queues"),
    ("Audit log", "staff.audit_log"),
)

SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    # Same-site requests name their page: re-authentication returns to where an action was
    # taken. The enrolment page (its token is in the path) sends none at all.
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
}


def staff_headers(response: Response) -> Response:
    """Every answer under /staff gets ``SECURITY_HEADERS`` (a view's own value wins).

    Registered on the app (``register_staff``), not the blueprint: an unrouted path's 404
    or 405 page belongs to no blueprint, so a blueprint's ``after_request`` never saw it,
    and that page (with the signed-in user's email in its nav) went out framable, without
    the CSP and cacheable."""
    if under_staff(request.path):
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
    return response


def error_page(status: int, title: str, message: str) -> tuple[str, int]:
    # The nav is passed here, not left to the blueprint's context processor: an unrouted
    # path's page is rendered outside the blueprint.
    page = render_template("staff/error.html", title=title, message=message, **_nav())
    return page, status


@staff.errorhandler(CSRFError)
def _csrf_refused(exc: CSRFError) -> tuple[str, int]:
    # Checked before the session is read (access.check_access): this reads it, for the
    # audit row's actor and the page's nav.
    refuse_forged_request("csrf")
    return error_page(
        400,
        "Form expired",
        "This form could not be checked (it expired, or did not come from this site). "
        "Go back, reload the page and try again.",
    )


@staff.errorhandler(LeakguardError)
def _domain_error(exc: LeakguardError) -> tuple[str, int]:
    if request.method not in SAFE_METHODS and "staff_session" in g:
        # An act the domain refused (four eyes, a slug not typed back, a count that
        # changed...): a security decision, so it is in the trail with its code.
        audit_refusal("action_refused", exc.code, staff=g.staff_session.staff)
    return error_page(exc.status, exc.title, exc.detail or exc.title)


@staff.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> tuple[str, int]:
    return error_page(exc.code or 500, exc.name, exc.description or exc.name)


@staff.errorhandler(Exception)
def _unexpected(exc: Exception) -> tuple[str, int]:
    """A bug or an unforeseen failure on a staff page: logged with its trace, and the
    site's own page (the app-wide handler would answer the API's problem+json)."""
    log.error("unhandled error on %s %s", request.method, request.path, exc_info=exc)
    return error_page(
        500,
        "Something went wrong",
        "The page could not be completed. The error is logged: "
        "try again, or tell the administrator if it happens again.",
    )


NUL = "\x00"
FIELD_NAME = re.compile(r"[A-Za-z0-9_-]{1,40}")


def refuse_unstorable_text() -> None:
    """Refuse a path, query or form value holding NUL (U+0000): no text anywhere here
    holds one, and PostgreSQL refuses it in any text column or query, so each such value
    was a 500 page (a look-up, an audit filter, a reason, a leak slug or request id in a
    path), or, on SQLite, stored. A path with one names nothing (404); a field with one
    is the 400 page naming the field."""
    if any(isinstance(v, str) and NUL in v for v in (request.view_args or {}).values()):
        raise NotFound("There is no such page: its address holds a NUL character (%00).")
    for fields in (request.args, request.form):
        for name, values in fields.lists():
            if NUL in name or any(NUL in value for value in values):
                shown = f'"{name}"' if FIELD_NAME.fullmatch(name) else "A field"
                raise BadRequest(
                    f"{shown} holds a NUL character (U+0000), which no text here may "
                    "hold: remove it and send the form again."
                )


staff.before_request(check_access)
staff.before_request(refuse_unstorable_text)  # after the session check: none, to log in


def under_staff(path: str) -> bool:
    return path == staff.url_prefix or path.startswith(f"{staff.url_prefix}/")


def unrouted_page(exc: HTTPException) -> ResponseReturnValue | None:
    """The staff site's page for a 404, 405, 414 or 431 under /staff: the staff layout with
    its nav (for a signed-in user), not the API's problem+json. None for any other path.

    Registered on the app (``register_staff``): an unrouted path belongs to no blueprint,
    so the blueprint's own handlers never see it (Flask docs, "Blueprint Error Handlers").
    """
    if not under_staff(request.path):
        return None
    if not request.path.startswith(f"{staff.url_prefix}/static/"):
        # Without the database the page is shown without the nav: not this page's to tell.
        with contextlib.suppress(SQLAlchemyError):
            load_session()
    page, status = error_page(exc.code or 404, exc.name, exc.description or exc.name)
    allow = exc.get_headers()
    return page, status, [(name, value) for name, value in allow if name.lower() == "allow"]


@staff.context_processor
def _nav() -> dict[str, object]:
    views = current_app.view_functions
    return {"staff_nav": [(label, end) for label, end in NAV if end in views]}
