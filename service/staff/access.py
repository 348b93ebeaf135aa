"""Who may open which staff page: roles, re-authentication, and the default-deny check.

Every view of the ``staff`` blueprint declares its access with exactly one of
``@public`` (login, enrolment: reachable without a session) or ``@requires(role)``. A view
that declares neither is refused (403) by ``check_access``, the blueprint's first
``before_request``: a new page cannot go out open by omission. ``@requires_reauth`` on top
of ``@requires`` asks for a fresh TOTP code (``REAUTH_WINDOW``) before the view runs.

``check_access`` also checks the CSRF token (Flask-WTF) of every unsafe request, before
anything else, and loads the session from the cookie (``COOKIE_NAME``, path /staff).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar, cast
from urllib.parse import unquote, urlsplit

from flask import (
    Flask,
    current_app,
    g,
    redirect,
    request,
    url_for,
)
from flask import (
    session as flask_session,
)
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import CSRFProtect
from werkzeug.exceptions import Forbidden, HTTPException
from werkzeug.wrappers import Response

from service.audit import record_event
from service.config import Environment
from service.models import StaffRole, StaffUser
from service.runtime import runtime_of
from service.staff import clock
from service.staff.sessions import REAUTH_WINDOW, ActiveSession, resume_session
from service.staff.throttle import LoginThrottle
from service.staff.users import StaffSecrets, staff_actor

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., ResponseReturnValue])
ACCESS_ATTRIBUTE = "_leakguard_staff_access"
REAUTH_ATTRIBUTE = "_leakguard_staff_reauth"
FRAGMENT_ATTRIBUTE = "_leakguard_staff_fragment_of"
HOME = "/staff/"
COOKIE_NAME = "leakguard_staff"
COOKIE_PATH = "/staff"
PUBLIC = "public"
RANK = {StaffRole.VIEWER: 1, StaffRole.AGENT: 2, StaffRole.ADMIN: 3}
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Endpoints outside the view functions' control: the blueprint's static files.
PUBLIC_ENDPOINTS = frozenset({"staff.static"})

THROTTLE_EXTENSION = "leakguard_staff_login_throttle"
CSRF_FIELD = "csrf_token"  # Flask-WTF's key in the Flask session (WTF_CSRF_FIELD_NAME)
# Where the last look-up's result waits for the page it redirects to: account ids and how
# they were found, in the signed session cookie; never the query (it may be an address).
LOOKUP_KEY = "staff_lookup"

csrf = CSRFProtect()


def requires(role: StaffRole) -> Callable[[F], F]:
    """Let only staff with ``role`` or a higher one run the view (others: 403)."""

    def mark(view: F) -> F:
        setattr(view, ACCESS_ATTRIBUTE, role)
        return view

    return mark


def public(view: F) -> F:
    """Let anyone reach the view, without a session (login, enrolment)."""
    setattr(view, ACCESS_ATTRIBUTE, PUBLIC)
    return view


def fragment_of(page: str) -> Callable[[F], F]:
    """Mark the view as a fragment of the page at endpoint ``page`` (which takes the same
    path arguments or fewer): htmx swaps it into that page, and it is never a place to
    come back to after login or re-authentication (a bare, unstyled piece): that is
    ``page``."""

    def mark(view: F) -> F:
        setattr(view, FRAGMENT_ATTRIBUTE, page)
        return view

    return mark


def fragment_parent(view: Callable[..., object]) -> str | None:
    """The endpoint of the page the view is a fragment of, or None (a page itself)."""
    return getattr(view, FRAGMENT_ATTRIBUTE, None)


def requires_reauth(view: F) -> F:
    """Run the view only if the session gave a TOTP code within ``REAUTH_WINDOW``; else
    redirect to the re-authentication page, which comes back to the page the action was
    taken from (a GET: the page itself)."""

    @functools.wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> ResponseReturnValue:
        if not current_session().reauthenticated_within(REAUTH_WINDOW, clock.now()):
            return _send_to(url_for("staff.reauth", next=_return_path()))
        return view(*args, **kwargs)

    setattr(guarded, REAUTH_ATTRIBUTE, True)
    return cast(F, guarded)


def declared_access(view: Callable[..., object]) -> StaffRole | str | None:
    """The view's declared role, ``PUBLIC``, or None (undeclared: refused)."""
    return getattr(view, ACCESS_ATTRIBUTE, None)


def undeclared_views(app: Flask) -> list[str]:
    """The staff endpoints whose view declares no access (each would be refused)."""
    return sorted(
        endpoint
        for endpoint, view in app.view_functions.items()
        if endpoint.startswith("staff.")
        and endpoint not in PUBLIC_ENDPOINTS
        and declared_access(view) is None
    )


def needs_reauth(view: Callable[..., object]) -> bool:
    return bool(getattr(view, REAUTH_ATTRIBUTE, False))


def current_session() -> ActiveSession:
    """The request's live session (only inside a view that ``@requires`` a role)."""
    active: ActiveSession = g.staff_session
    return active


def current_staff() -> StaffUser:
    """The signed-in staff user (only inside a view that ``@requires`` a role)."""
    return current_session().staff


def login_throttle() -> LoginThrottle:
    throttle: LoginThrottle = current_app.extensions[THROTTLE_EXTENSION]
    return throttle


def staff_secrets() -> StaffSecrets:
    return StaffSecrets(runtime_of(current_app).settings.hash_key_bytes())


def has_role(staff: StaffUser, role: StaffRole) -> bool:
    return RANK[staff.role] >= RANK[role]


def audit_refusal(
    action: str,
    reason: str,
    *,
    staff: StaffUser | None = None,
    target: str | None = None,
    **detail: object,
) -> None:
    """Write the audit row of a refused request (``staff.<action>``), in a transaction of
    its own: the request itself changes nothing, but every security decision is in the
    trail (issue 17, item 5; ASVS 16.3). The row names the route by its endpoint and
    method, never by a path or query a person typed (they may hold an address)."""
    values: dict[str, Any] = {
        "route": request.endpoint or "unknown",
        "method": request.method,
        "reason": reason,
        "ip": request.remote_addr or "unknown",
        **detail,
    }
    with runtime_of(current_app).db.transaction() as session:
        record_event(
            session,
            actor=staff_actor(staff) if staff is not None else "anonymous",
            action=f"staff.{action}",
            target=target,
            detail=values,
            now=clock.now(),
        )


def refuse_forged_request(reason: str) -> None:
    """Audit a request refused as forged (no CSRF token, another site's ``Origin``) when
    it rode on a staff session: that is an attack on a signed-in person. Without one it
    is only logged: anyone can send such requests, and each must not cost a row in the
    trail (an unauthenticated flood would fill it)."""
    active = load_session()
    if active is None:
        logger.warning("staff %s refused without a session: %s", request.endpoint, reason)
        return
    audit_refusal("request_refused", reason, staff=active.staff)


def check_access() -> ResponseReturnValue | None:
    """The staff blueprint's first ``before_request``: refuse undeclared views, check CSRF
    on unsafe methods, load the session (none: to the login page), check the role."""
    endpoint = request.endpoint or ""
    view = current_app.view_functions.get(endpoint)
    access = PUBLIC if endpoint in PUBLIC_ENDPOINTS else declared_access(view or (lambda: None))
    if access is None:
        logger.error("staff view %s declares no access (@requires or @public): refused", endpoint)
        audit_refusal("access_refused", "no_access_rule")
        raise Forbidden("this page declares no access rule")
    if request.method not in SAFE_METHODS:
        _check_origin(allow_null=access == PUBLIC)
        csrf.protect()  # raises CSRFError (400)
    if access == PUBLIC:
        return None
    active = load_session()
    if active is None:
        return _to_login()
    if not has_role(active.staff, cast(StaffRole, access)):
        audit_refusal(
            "access_refused",
            "role",
            staff=active.staff,
            role=active.staff.role.value,
            needs=str(access),
        )
        raise Forbidden(f"your role ({active.staff.role.value}) may not do this: it needs {access}")
    return None


def load_session() -> ActiveSession | None:
    """The live session of the request's cookie, kept in ``g.staff_session`` (pages show
    the nav and the signed-in user from it), or None."""
    if "staff_session" in g:
        active: ActiveSession = g.staff_session
        return active
    with runtime_of(current_app).db.transaction() as session:
        found = resume_session(session, request.cookies.get(COOKIE_NAME), now=clock.now())
    if found is not None:
        g.staff_session = found
    return found


def _check_origin(*, allow_null: bool) -> None:
    """Refuse an unsafe request another site's page sent (403): its ``Origin`` must be this
    site, as the browser reached it or as ``LEAKGUARD_PUBLIC_URL`` names it (behind a proxy).

    A second wall beside the CSRF token: a token fixed on a victim before login (OWASP CSRF
    cheat sheet, "Verifying origin with standard headers"). Browsers send ``Origin`` on
    every cross-site POST (``null`` from sandboxed frames and some redirects: refused too,
    except on the public pages: the enrolment page's ``no-referrer`` policy, which keeps
    its link token out of Referer headers, makes the browser send ``null`` from it, and a
    public page has no session to ride on); a request without the header (a same-site
    form in an older browser, a script) is left to the token.
    """
    origin = request.headers.get("Origin")
    if origin is None or (origin == "null" and allow_null):
        return
    public = urlsplit(runtime_of(current_app).settings.public_url).netloc
    if urlsplit(origin).netloc not in {request.host, public}:
        logger.warning(
            "staff %s %s refused: sent from another origin", request.method, request.path
        )
        refuse_forged_request("cross_origin")
        raise Forbidden("this form was sent from another site")


def _to_login() -> Response:
    return _send_to(url_for("staff.login", next=_return_path()))


def _send_to(target: str) -> Response:
    """Redirect the browser to ``target``; an htmx request is told to load it as a page
    (``HX-Redirect``) rather than swap it into a fragment of the current one."""
    if request.headers.get("HX-Request"):
        response = Response(status=204)
        response.headers["HX-Redirect"] = target
        return response
    return redirect(target, code=303)


def _return_path() -> str:
    """Where to come back to after login or re-authentication: this page for a GET; the
    page a form was sent from (same site, under /staff) for anything else. An htmx
    request (a poll, a swap) comes back to the page the browser shows, as htmx names it
    in ``HX-Current-URL``; failing that, to the page the fragment belongs to."""
    if request.method in SAFE_METHODS:
        here = safe_next(request.full_path.rstrip("?"))
    else:
        here = safe_next(request.referrer)
    if request.headers.get("HX-Request"):
        return safe_next(request.headers.get("HX-Current-URL"), default=here)
    return here


def safe_next(value: str | None, *, default: str = HOME) -> str:
    """``value`` as a path under /staff on this site, else ``default`` (no open
    redirect). A fragment's path (``fragment_of``) gives the page it belongs to."""
    if not value:
        return default
    parts = urlsplit(value)
    if parts.netloc and parts.netloc != request.host:
        return default
    path = parts.path
    if not path.startswith(COOKIE_PATH + "/") and path != COOKIE_PATH:
        return default
    if "//" in path or "\\" in path:
        return default
    # A dot segment, plain or percent-encoded, leaves /staff once the browser resolves it
    # (RFC 3986 5.2.4; WHATWG URL reads %2e as a dot): "/staff/../v1/accounts" is /v1.
    if {".", ".."} & set(unquote(path).split("/")):
        return default
    page = _page_of_fragment(path)
    if page is not None:
        return page
    return path + (f"?{parts.query}" if parts.query else "")


def _page_of_fragment(path: str) -> str | None:
    """The path of the page ``path`` is a fragment of; None if it is no fragment's (a
    page, or nothing routed: that answers its own 404 after login)."""
    try:
        endpoint, arguments = current_app.url_map.bind(request.host).match(path, method="GET")
    except HTTPException:  # not found, another method, a redirect to a canonical path
        return None
    parent = fragment_parent(current_app.view_functions.get(endpoint, lambda: None))
    return None if parent is None else url_for(parent, **arguments)


def set_session_cookie(response: Response, token: str) -> None:
    """Put a new session token in the cookie: HttpOnly, SameSite=Lax, path /staff, Secure
    outside development (and wherever the public URL is https)."""
    settings = runtime_of(current_app).settings
    _new_csrf_secret()
    response.set_cookie(
        COOKIE_NAME,
        token,
        path=COOKIE_PATH,
        secure=settings.env is not Environment.DEVELOPMENT
        or settings.public_url.startswith("https://"),
        httponly=True,
        samesite="Lax",
    )


def _new_csrf_secret() -> None:
    """Drop the CSRF secret when a session starts, turns or ends: a token someone read off
    this browser before the login (a fixed Flask session cookie) then no longer passes."""
    flask_session.pop(CSRF_FIELD, None)
    flask_session.pop(LOOKUP_KEY, None)  # the last look-up's result was the last user's
    g.pop(CSRF_FIELD, None)  # Flask-WTF's per-request copy of the token


def clear_session_cookie(response: Response) -> None:
    _new_csrf_secret()
    response.delete_cookie(COOKIE_NAME, path=COOKIE_PATH, httponly=True, samesite="Lax")
