"""Login, logout, enrolment through the one-time link, re-authentication, the home page."""

from __future__ import annotations

import base64
import logging
import math

from flask import current_app, redirect, render_template, request
from flask.typing import ResponseReturnValue
from flask_wtf import FlaskForm
from sqlalchemy import select

from service.addresses import mask_email
from service.audit import record_event
from service.errors import ValidationFailed
from service.models import StaffRole, StaffUser
from service.runtime import runtime_of
from service.staff import clock
from service.staff.access import (
    COOKIE_NAME,
    audit_refusal,
    clear_session_cookie,
    current_session,
    current_staff,
    login_throttle,
    public,
    requires,
    safe_next,
    set_session_cookie,
    staff_secrets,
)
from service.staff.passwords import PasswordRefused
from service.staff.sessions import end_session, rotate_session, start_session
from service.staff.throttle import LoginGate
from service.staff.users import (
    CodeRefused,
    LoginFailure,
    check_code,
    complete_enrolment,
    log_in,
    normalize_staff_email,
    open_enrolment,
    staff_actor,
)
from service.staff.views.blueprint import staff
from service.staff.views.forms import EnrolForm, LoginForm, ReauthForm

logger = logging.getLogger(__name__)

LOGIN_REFUSED = "The email, password or code is not right."
TOO_MANY = "Too many refused attempts."
UNAVAILABLE = "Signing in is not possible right now."


def _ip() -> str:
    return request.remote_addr or "unknown"


def _limit_reason(gate: LoginGate) -> str:
    return "limits_unavailable" if gate.unavailable else "too_many_attempts"


def _limited(gate: LoginGate, template: str, form: FlaskForm) -> ResponseReturnValue:
    """The page of a refused attempt (429, or 503 when the counters cannot be read), with
    ``Retry-After`` in seconds (RFC 9110 section 10.2.3) and the same wait in words."""
    error, status = (UNAVAILABLE, 503) if gate.unavailable else (TOO_MANY, 429)
    headers = {}
    if gate.retry_after is not None:
        headers["Retry-After"] = str(gate.retry_after)
        error = f"{error} {_wait(gate.retry_after)}"
    return render_template(template, form=form, error=error), status, headers


def _wait(seconds: int) -> str:
    if seconds < 90:
        return f"Try again in {seconds} second{'' if seconds == 1 else 's'}."
    return f"Try again in {math.ceil(seconds / 60)} minutes."


def _staff_target(email: str) -> str | None:
    """``staff:<id>`` of the staff user the typed email names, if any (the trail's target
    of an attempt on their account; the typed address itself is kept only masked)."""
    try:
        address = normalize_staff_email(email)
    except ValidationFailed:
        return None
    with runtime_of(current_app).db.read_session() as session:
        staff_id = session.scalar(select(StaffUser.id).where(StaffUser.email == address))
    return None if staff_id is None else f"staff:{staff_id}"


@staff.route("/login", methods=["GET", "POST"])
@public
def login() -> ResponseReturnValue:
    form = LoginForm()
    if request.method == "GET":
        form.next.data = request.args.get("next", "")
        return render_template("staff/login.html", form=form, error=None)
    if not form.validate_on_submit():
        return render_template("staff/login.html", form=form, error=LOGIN_REFUSED), 401
    email, ip = str(form.email.data), _ip()
    gate = login_throttle().check(email=email, ip=ip)
    if not gate.open:
        audit_refusal(
            "login_limited",
            _limit_reason(gate),
            target=_staff_target(email),
            email=mask_email(email),
        )
        return _limited(gate, "staff/login.html", form)
    rt = runtime_of(current_app)
    now = clock.now()
    with rt.db.transaction() as session:
        result = log_in(
            session,
            staff_secrets(),
            email=email,
            password=str(form.password.data),
            code=str(form.code.data),
            ip=ip,
            now=now,
        )
        if result.staff is not None:
            end_session(session, request.cookies.get(COOKIE_NAME), now=now)
            token = start_session(session, result.staff.id, now=now)
    if result.staff is None:
        login_throttle().count_refusal(email=email, ip=ip)
        form.password.data = ""
        form.code.data = ""
        return render_template("staff/login.html", form=form, error=LOGIN_REFUSED), 401
    response = redirect(safe_next(form.next.data), code=303)
    set_session_cookie(response, token)
    return response


@staff.post("/logout")
@requires(StaffRole.VIEWER)
def logout() -> ResponseReturnValue:
    rt = runtime_of(current_app)
    now = clock.now()
    with rt.db.transaction() as session:
        end_session(session, request.cookies.get(COOKIE_NAME), now=now)
        record_event(
            session,
            actor=staff_actor(current_staff()),
            action="staff.logout",
            target=staff_actor(current_staff()),
            now=now,
        )
    response = redirect("/staff/login", code=303)
    clear_session_cookie(response)
    return response


@staff.route("/enrol/<token>", methods=["GET", "POST"])
@public
def enrol(token: str) -> ResponseReturnValue:
    form = EnrolForm()
    rt = runtime_of(current_app)
    error = None
    if request.method == "POST" and form.validate_on_submit():
        if form.password.data != form.password_again.data:
            error = "The two passwords differ."
        else:
            now = clock.now()
            try:
                with rt.db.transaction() as session:
                    enrolled = complete_enrolment(
                        session,
                        staff_secrets(),
                        token,
                        password=str(form.password.data),
                        code=str(form.code.data),
                        now=now,
                    )
                    new_token = start_session(session, enrolled.id, now=now)
            except (PasswordRefused, CodeRefused) as exc:
                error = exc.detail or exc.title
            else:
                response = redirect("/staff/", code=303)
                set_session_cookie(response, new_token)
                return response
    elif request.method == "POST":
        error = "Fill in every field."
    with rt.db.read_session() as session:  # showing the page writes nothing
        page = open_enrolment(
            session, staff_secrets(), token, issuer=rt.settings.totp_issuer, now=clock.now()
        )
    qr = "data:image/png;base64," + base64.b64encode(page.enrollment.qr_png).decode()
    secret = " ".join(
        page.enrollment.secret[i : i + 4] for i in range(0, len(page.enrollment.secret), 4)
    )
    form.password.data = form.password_again.data = form.code.data = ""
    status = 422 if error else 200
    page_html = render_template(
        "staff/enrol.html", form=form, email=page.email, qr=qr, secret=secret, error=error
    )
    return page_html, status, {"Referrer-Policy": "no-referrer"}


@staff.route("/reauth", methods=["GET", "POST"])
@requires(StaffRole.VIEWER)
def reauth() -> ResponseReturnValue:
    """Give a TOTP code again before a sensitive action; the session id rotates."""
    form = ReauthForm()
    if request.method == "GET":
        form.next.data = safe_next(request.args.get("next"))
        return render_template("staff/reauth.html", form=form, error=None)
    staff_user = current_staff()
    ip = _ip()
    gate = login_throttle().check(email=staff_user.email, ip=ip)
    if not gate.open:
        audit_refusal(
            "reauth_limited",
            _limit_reason(gate),
            staff=staff_user,
            target=staff_actor(staff_user),
        )
        return _limited(gate, "staff/reauth.html", form)
    rt = runtime_of(current_app)
    now = clock.now()
    token = None
    with rt.db.transaction() as session:
        locked = session.get(StaffUser, staff_user.id, with_for_update=True)
        failure: LoginFailure | None = LoginFailure.WRONG_CODE
        if locked is not None and form.validate_on_submit():
            failure = check_code(staff_secrets(), locked, str(form.code.data), now)
        detail = {"ip": ip}
        if failure is not None:
            detail["cause"] = failure.value
            logger.warning(
                "staff re-authentication refused for staff user %s from %s: %s",
                staff_user.id,
                ip,
                failure.value,
            )
        record_event(
            session,
            actor=staff_actor(staff_user),
            action="staff.reauth_refused" if failure else "staff.reauthenticated",
            target=staff_actor(staff_user),
            detail=detail,
            now=now,
        )
        if failure is None:
            token = rotate_session(session, current_session(), now=now)
    if token is None:
        login_throttle().count_refusal(email=staff_user.email, ip=ip)
        form.code.data = ""
        return render_template("staff/reauth.html", form=form, error="That code is not right."), 401
    response = redirect(safe_next(form.next.data), code=303)
    set_session_cookie(response, token)
    return response


@staff.get("/")
@requires(StaffRole.VIEWER)
def home() -> ResponseReturnValue:
    return render_template("staff/home.html", staff_user=current_staff())
