"""Support's acts on one account, from its page: resolve or dismiss an exposure, force a
step-up (a support hold) or clear that hold, lock or unlock, resend a warning, reset the
authenticator, revoke trusted devices. Each view parses, calls one action of
service/staff/actions.py (itself one domain function), writes the staff audit row in the
same transaction, and goes back to the account page with what changed. The very next risk
check sees it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from flask import abort, current_app, flash, redirect, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy.orm import Session

from jobs.deliver import send_now
from jobs.queues import QueueName
from service.errors import NotFound
from service.leaks.catalogue import find_leak
from service.models import Account, StaffRole
from service.runtime import runtime_of
from service.staff import actions, clock
from service.staff.access import current_staff, requires, requires_reauth
from service.staff.actions import ActionOutcome
from service.staff.audit import record_staff_action
from service.staff.users import staff_actor
from service.staff.views.blueprint import staff
from service.staff.views.page_forms import (
    ButtonForm,
    ForceStepUpForm,
    OptionalReasonForm,
    ReasonForm,
)

Act = Callable[[Session, str, str | None], ActionOutcome]


def _external_id(session: Session, account_id: int) -> str:
    account = session.get(Account, account_id)
    if account is None:
        raise NotFound("no such account")
    return account.external_id


def _act(
    account_id: int,
    act: Act,
    *,
    form: ReasonForm | OptionalReasonForm | ButtonForm,
    leak: str | None = None,
) -> ResponseReturnValue:
    """Run ``act`` with the form's reason in one transaction with its staff audit row;
    then send what it queued, and go back to the account page."""
    if not form.validate_on_submit():
        abort(400, "give a reason (at most 500 characters)")
    reason = getattr(form, "reason", None)
    text = (str(reason.data).strip() or None) if reason is not None and reason.data else None
    rt = runtime_of(current_app)
    with rt.db.transaction() as session:
        external_id = _external_id(session, account_id)
        outcome = act(session, external_id, text)
        detail: dict[str, object] = {"changed": outcome.changed, **outcome.detail}
        if text:
            detail["reason"] = text
        record_staff_action(
            session,
            current_staff(),
            outcome.action,
            account_id=account_id,
            leak_id=find_leak(session, leak).id if leak else None,
            detail=detail,
        )
    if outcome.notice_ids:
        send_now(rt, list(outcome.notice_ids), QueueName.DEFAULT)
    flash(outcome.message)
    return redirect(_account_page(account_id), code=303)


def _account_page(account_id: int) -> str:
    """The account's page, where the act was taken (the look-up page while there is none)."""
    if "staff.account" in current_app.view_functions:
        return url_for("staff.account", account_id=account_id)
    return url_for("staff.leaks")


def _actor() -> str:
    return staff_actor(current_staff())


@staff.post("/accounts/<int:account_id>/exposures/<slug>/resolve")
@requires(StaffRole.AGENT)
def exposure_resolve(account_id: int, slug: str) -> ResponseReturnValue:
    return _act(
        account_id,
        lambda s, ext, reason: actions.resolve_exposure(
            s, ext, slug, reason=reason or "", actor=_actor(), now=clock.now()
        ),
        form=ReasonForm(),
        leak=slug,
    )


@staff.post("/accounts/<int:account_id>/exposures/<slug>/dismiss")
@requires(StaffRole.AGENT)
def exposure_dismiss(account_id: int, slug: str) -> ResponseReturnValue:
    return _act(
        account_id,
        lambda s, ext, reason: actions.dismiss_exposure(
            s, ext, slug, reason=reason or "", actor=_actor(), now=clock.now()
        ),
        form=ReasonForm(),
        leak=slug,
    )


@staff.post("/accounts/<int:account_id>/warnings/<slug>/resend")
@requires(StaffRole.AGENT)
def warning_resend(account_id: int, slug: str) -> ResponseReturnValue:
    return _act(
        account_id,
        lambda s, ext, _: actions.resend_warning(s, ext, slug, actor=_actor(), now=clock.now()),
        form=ButtonForm(),
        leak=slug,
    )


@staff.post("/accounts/<int:account_id>/force-step-up")
@requires(StaffRole.AGENT)
def force_step_up(account_id: int) -> ResponseReturnValue:
    form = ForceStepUpForm()
    if not form.validate_on_submit():
        abort(400, "give at most 500 characters of reason and whole hours (1 or more), or blanks")
    hours = form.hours.data
    return _act(
        account_id,
        lambda s, ext, reason: actions.force_step_up(
            s,
            ext,
            reason=reason,
            actor=_actor(),
            now=clock.now(),
            expires_in=timedelta(hours=hours) if hours else None,
        ),
        form=form,
    )


@staff.post("/accounts/<int:account_id>/clear-hold")
@requires(StaffRole.AGENT)
def clear_hold(account_id: int) -> ResponseReturnValue:
    return _act(
        account_id,
        lambda s, ext, reason: actions.clear_support_hold(
            s, ext, reason=reason or "", actor=_actor(), now=clock.now()
        ),
        form=ReasonForm(),
    )


@staff.post("/accounts/<int:account_id>/lock")
@requires(StaffRole.AGENT)
def lock(account_id: int) -> ResponseReturnValue:
    step_up = runtime_of(current_app).step_up
    return _act(
        account_id,
        lambda s, ext, reason: actions.lock_account(
            s, step_up, ext, reason=reason, actor=_actor(), now=clock.now()
        ),
        form=ReasonForm(),
    )


@staff.post("/accounts/<int:account_id>/unlock")
@requires(StaffRole.AGENT)
@requires_reauth
def unlock(account_id: int) -> ResponseReturnValue:
    step_up = runtime_of(current_app).step_up
    return _act(
        account_id,
        lambda s, ext, _: actions.unlock_account(s, step_up, ext, actor=_actor(), now=clock.now()),
        form=ButtonForm(),
    )


@staff.post("/accounts/<int:account_id>/revoke-devices")
@requires(StaffRole.AGENT)
def revoke_devices(account_id: int) -> ResponseReturnValue:
    return _act(
        account_id,
        lambda s, ext, reason: actions.revoke_devices(
            s, ext, reason=reason, actor=_actor(), now=clock.now()
        ),
        form=OptionalReasonForm(),
    )


@staff.post("/accounts/<int:account_id>/reset-totp")
@requires(StaffRole.ADMIN)
@requires_reauth
def reset_totp(account_id: int) -> ResponseReturnValue:
    return _act(
        account_id,
        lambda s, ext, reason: actions.reset_totp(
            s, ext, reason=reason, actor=_actor(), now=clock.now()
        ),
        form=ReasonForm(),
    )
