"""The ``staff`` blueprint itself, its default-deny check, headers and error pages."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, current_app, g, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from service.errors import LeakguardError
from service.staff.access import SAFE_METHODS, audit_refusal, check_access

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


@staff.after_request
def _headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def error_page(status: int, title: str, message: str) -> tuple[str, int]:
    return render_template("staff/error.html", title=title, message=message), status


@staff.errorhandler(CSRFError)
def _csrf_refused(exc: CSRFError) -> tuple[str, int]:
    # Checked before the session is read (access.check_access): the actor is unknown.
    audit_refusal("request_refused", "csrf")
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


staff.before_request(check_access)


@staff.context_processor
def _nav() -> dict[str, object]:
    views = current_app.view_functions
    return {"staff_nav": [(label, end) for label, end in NAV if end in views]}
