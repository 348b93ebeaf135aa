"""Queue pages: assisted email changes to review, warnings that failed for good, and a
bulk verdict on a filtered set of exposures that always shows its dry-run count first."""

from __future__ import annotations

from collections.abc import Callable

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import select
from sqlalchemy.orm import Session

from jobs.deliver import relay_notices, send_now
from jobs.queues import QueueName, redis_connection, uses_fake_redis
from service.email_change.context import ChangeTools
from service.errors import LeakguardError
from service.leaks.catalogue import find_leak
from service.models import Account, ExposureKind, StaffRole
from service.notices.campaigns import cancel_warnings, retry_failed
from service.runtime import runtime_of
from service.staff import actions, clock
from service.staff.access import current_staff, requires, requires_reauth
from service.staff.audit import record_staff_action
from service.staff.queues import (
    CountChanged,
    ExposureFilter,
    bulk_end_exposures,
    count_failed_notices,
    email_change_queue,
    failed_notices,
)
from service.staff.users import staff_actor, staff_person
from service.staff.views.blueprint import staff
from service.staff.views.page_forms import (
    BulkForm,
    ButtonForm,
    RetryForm,
    ReviewForm,
    whole_number,
)


@staff.get("/queues")
@requires(StaffRole.VIEWER)
def queues() -> ResponseReturnValue:
    with runtime_of(current_app).db.read_session() as session:
        waiting = len(email_change_queue(session))
        failed = count_failed_notices(session)
    return render_template("staff/queues.html", waiting=waiting, failed=failed)


# Assisted email changes ------------------------------------------------------------------


@staff.get("/queues/email-change")
@requires(StaffRole.VIEWER)
def email_change_review() -> ResponseReturnValue:
    with runtime_of(current_app).db.read_session() as session:
        waiting = email_change_queue(session)
    return render_template("staff/queue_email_change.html", waiting=waiting, form=ReviewForm())


def _account_id(session: Session, external_id: str) -> int:
    return session.scalars(select(Account.id).where(Account.external_id == external_id)).one()


def _review(decide: Callable[[Session, str, str], actions.ActionOutcome]) -> ResponseReturnValue:
    """Approve or deny a request under review: ``decide(session, by, reason)`` is the
    domain verdict; it is audited as the staff user's act in the same transaction, and any
    mail it queued is handed to the workers (the high queue for an exposed account)."""
    form = ReviewForm()
    if not form.validate_on_submit():
        abort(400, "give a reason (at most 500 characters)")
    reason = str(form.reason.data)
    rt = runtime_of(current_app)
    with rt.db.transaction() as session:
        outcome = decide(session, staff_person(current_staff()), reason)
        record_staff_action(
            session,
            current_staff(),
            outcome.action,
            account_id=_account_id(session, outcome.external_id),
            detail={**outcome.detail, "reason": reason},
        )
    if outcome.notice_ids:
        queue = QueueName.HIGH if outcome.detail.get("priority") == "high" else QueueName.DEFAULT
        send_now(rt, list(outcome.notice_ids), queue)
    flash(outcome.message)
    return redirect(url_for("staff.email_change_review"), code=303)


@staff.post("/queues/email-change/<request_id>/approve")
@requires(StaffRole.AGENT)
@requires_reauth
def email_change_approve(request_id: str) -> ResponseReturnValue:
    tools = ChangeTools.of(runtime_of(current_app))
    return _review(
        lambda session, by, reason: actions.approve_email_change(
            session, tools, request_id, by=by, reason=reason, now=clock.now()
        )
    )


@staff.post("/queues/email-change/<request_id>/deny")
@requires(StaffRole.AGENT)
def email_change_deny(request_id: str) -> ResponseReturnValue:
    return _review(
        lambda session, by, reason: actions.deny_email_change(
            session, request_id, by=by, reason=reason, now=clock.now()
        )
    )


# Failed warnings -------------------------------------------------------------------------


@staff.get("/queues/failed-notices", endpoint="failed_notices")
@requires(StaffRole.VIEWER)
def failed_notices_page() -> ResponseReturnValue:
    slug = request.args.get("leak") or None
    with runtime_of(current_app).db.read_session() as session:
        groups = failed_notices(session, slug=slug)
    return render_template(
        "staff/queue_failed.html", groups=groups, slug=slug, retry=RetryForm(), button=ButtonForm()
    )


def _ids(text: str | None) -> list[int] | None:
    """``notices retry --ids``'s parsing: ids split by commas or spaces; empty: all."""
    if not text or not text.strip():
        return None
    parts = text.replace(",", " ").split()
    return [whole_number(part, what="notice ids (like 12,15,40)") for part in parts]


@staff.post("/queues/failed-notices/<slug>/retry")
@requires(StaffRole.AGENT)
def failed_notices_retry(slug: str) -> ResponseReturnValue:
    form = RetryForm()
    if not form.validate_on_submit():
        abort(400)
    wanted = _ids(form.ids.data)
    rt = runtime_of(current_app)
    with rt.db.transaction() as session:
        outcome = retry_failed(
            session, slug, ids=wanted, actor=staff_actor(current_staff()), now=clock.now()
        )
        record_staff_action(
            session,
            current_staff(),
            "campaign.retried",
            leak_id=find_leak(session, slug).id,
            detail={"retried": len(outcome.retried), "not_failed": list(outcome.not_failed)},
        )
    line = f"{len(outcome.retried)} failed warnings of {slug} are pending again"
    if outcome.not_failed:
        line += "; not a failed warning of this leak: " + ", ".join(map(str, outcome.not_failed))
    if outcome.retried and not uses_fake_redis(rt.settings):
        relay_notices(rt, redis_connection(rt.settings))
    flash(line + ".")
    return redirect(url_for("staff.failed_notices", leak=slug), code=303)


@staff.post("/queues/failed-notices/<slug>/cancel")
@requires(StaffRole.AGENT)
def failed_notices_cancel(slug: str) -> ResponseReturnValue:
    if not ButtonForm().validate_on_submit():
        abort(400)
    rt = runtime_of(current_app)
    with rt.db.transaction() as session:
        outcome = cancel_warnings(
            session, slug, actor=staff_actor(current_staff()), now=clock.now()
        )
        record_staff_action(
            session,
            current_staff(),
            "campaign.cancelled",
            leak_id=find_leak(session, slug).id,
            detail={"cancelled": outcome.cancelled},
        )
    line = f"Cancelled {outcome.cancelled} unsent warnings of {slug}"
    if outcome.sending:
        line += f"; {outcome.sending} are being sent right now and may still go out"
    flash(line + ".")
    return redirect(url_for("staff.failed_notices", leak=slug), code=303)


# Bulk verdicts -----------------------------------------------------------------------------


@staff.route("/queues/bulk-dismiss", methods=["GET", "POST"])
@requires(StaffRole.AGENT)
def bulk_dismiss() -> ResponseReturnValue:
    """First post: the dry-run count, and a confirmation carrying it. Second post (with
    the count): dismiss exactly that set, or say it changed and show the new count."""
    form = BulkForm()
    if request.method == "GET":
        form.leak.data = request.args.get("leak", "")
        return render_template("staff/queue_bulk.html", form=form, outcome=None, error=None)
    if not form.validate_on_submit():
        return render_template(
            "staff/queue_bulk.html", form=form, outcome=None, error="Name a leak and a reason."
        ), 400
    wanted = ExposureFilter(
        str(form.leak.data).strip(), ExposureKind(form.kind.data) if form.kind.data else None
    )
    confirmed = _count(form.confirmed_count.data)
    rt = runtime_of(current_app)
    error, status = None, 200
    try:
        with rt.db.transaction() as session:
            if confirmed is not None:
                outcome = bulk_end_exposures(
                    session,
                    wanted,
                    action="dismiss",
                    reason=str(form.reason.data),
                    actor=staff_actor(current_staff()),
                    now=clock.now(),
                    dry_run=False,
                    confirmed_count=confirmed,
                )
                record_staff_action(
                    session,
                    current_staff(),
                    "exposures.bulk_dismissed",
                    leak_id=find_leak(session, wanted.leak).id,
                    detail={
                        "kind": form.kind.data or "any",
                        "dismissed": outcome.ended,
                        "reason": str(form.reason.data),
                    },
                )
                line = f"Dismissed {outcome.ended} open exposures of {wanted.leak}"
                if outcome.left:
                    # Over MAX_BULK a press ends only the first batch: said so, or the
                    # page reads as if the whole counted set ("Dismiss these 6000") was.
                    line += f"; {outcome.left} still open: count again to dismiss the rest"
                flash(line + ".")
                return redirect(url_for("staff.leak", slug=wanted.leak), code=303)
            outcome = bulk_end_exposures(
                session,
                wanted,
                action="dismiss",
                reason=str(form.reason.data),
                actor=staff_actor(current_staff()),
                now=clock.now(),
            )
    except LeakguardError as exc:
        error, status = exc.detail or exc.title, exc.status
        with rt.db.read_session() as session:
            try:
                outcome = bulk_end_exposures(
                    session,
                    wanted,
                    action="dismiss",
                    reason=str(form.reason.data),
                    actor="-",
                    now=clock.now(),
                )
            except LeakguardError:
                outcome = None
        if isinstance(exc, CountChanged) and outcome is not None:
            error = _count_changed(wanted.leak, outcome.matched, confirmed)
    if outcome is not None:
        form.confirmed_count.data = str(outcome.matched)
    page = render_template("staff/queue_bulk.html", form=form, outcome=outcome, error=error)
    return page, status


def _count_changed(leak: str, matched: int, confirmed: int | None) -> str:
    """What a confirmation that no longer fits says: a second click, or a colleague who
    got there first, is no error of the person's."""
    if matched == 0:
        return (
            f"Nothing left to dismiss: no open exposure of {leak} matches now. They were "
            "dismissed or resolved already (this confirmation sent twice, or by a colleague)."
        )
    counted = f", not {confirmed}" if confirmed is not None and confirmed != matched else ""
    return (
        f"The set changed since you counted: {matched} open exposures match now{counted}. "
        "Check the count below and confirm again."
    )


def _count(text: str | None) -> int | None:
    """The count a confirmation carries (None: a first post, the dry run)."""
    if not text:
        return None
    return whole_number(text, what="the confirmed count (count again)")
