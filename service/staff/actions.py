"""The staff site's actions on one account, each one call of an existing domain function.

The faces (the staff views, and the CLI for the same acts) share these rules: nothing here
decides anything the domain function does not. Each action takes the caller's session and
clock, never commits (the view's transaction holds the act and its staff audit row), and
returns an ``ActionOutcome`` saying what changed, for the page to show. The very next risk
check reads the change: same transaction, no cache.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.email_change import assisted
from service.email_change.context import ChangeTools
from service.errors import LeakguardError
from service.leaks.catalogue import find_leak
from service.leaks.lifecycle import end_exposure
from service.models import Account, EmailChangeRequest, Notice, NoticeKind, NoticeState
from service.notices.campaigns import retry_failed
from service.staff.dossier import find_account
from service.stepup import support
from service.stepup.services import StepUp


@dataclass(frozen=True, slots=True)
class ActionOutcome:
    """What an action did: ``changed`` False when there was nothing to do; ``message`` one
    line for the page (addresses masked); ``notice_ids`` mail to send after commit."""

    action: str
    external_id: str
    changed: bool
    message: str
    detail: dict[str, object] = field(default_factory=dict)
    notice_ids: tuple[int, ...] = ()


class NotResendable(LeakguardError):
    """Only a warning that failed for good goes out again: one sent is not sent twice, one
    pending or queued goes out anyway, one cancelled stays so (its reason still holds)."""

    status = 409
    code = "not_resendable"
    title = "This warning cannot be sent again"


def resolve_exposure(
    session: Session, external_id: str, slug: str, *, reason: str, actor: str, now: datetime
) -> ActionOutcome:
    """End the open exposure as resolved (``exposures resolve``)."""
    view = end_exposure(
        session, external_id, slug, action="resolve", reason=reason, actor=actor, now=now
    )
    return ActionOutcome(
        "exposure.resolved",
        external_id,
        True,
        f"exposure to {slug} {view.state.value}",
        {"leak": slug},
    )


def dismiss_exposure(
    session: Session, external_id: str, slug: str, *, reason: str, actor: str, now: datetime
) -> ActionOutcome:
    """End the open exposure as a false match (``exposures dismiss``)."""
    view = end_exposure(
        session, external_id, slug, action="dismiss", reason=reason, actor=actor, now=now
    )
    return ActionOutcome(
        "exposure.dismissed",
        external_id,
        True,
        f"exposure to {slug} {view.state.value}",
        {"leak": slug},
    )


def force_step_up(
    session: Session,
    external_id: str,
    *,
    reason: str | None,
    actor: str,
    now: datetime,
    expires_in: timedelta | None = None,
) -> ActionOutcome:
    """``accounts force-step-up``: the next sign-in steps up (a support hold), until the
    person passes one, support clears the hold, or ``expires_in`` ends it."""
    change = support.force_step_up(
        session, external_id, actor=actor, now=now, reason=reason, expires_in=expires_in
    )
    until = change.hold_until
    return ActionOutcome(
        change.action,
        external_id,
        True,
        f"held: every sign-in steps up until a step-up is passed or the hold is cleared"
        f"{f' (at most until {until:%Y-%m-%d %H:%M} UTC)' if until else ''}; "
        f"trusted devices ({change.devices_revoked}) and earlier step-ups no longer count",
        {
            "devices_revoked": change.devices_revoked,
            "hold_until": until.isoformat() if until else None,
        },
    )


def clear_support_hold(
    session: Session, external_id: str, *, reason: str, actor: str, now: datetime
) -> ActionOutcome:
    """``accounts clear-hold``: end support's hold; sign-ins step up again only where the
    risk policy asks for it."""
    change = support.clear_support_hold(session, external_id, actor=actor, now=now, reason=reason)
    message = "hold cleared" if change.changed else "no hold to clear"
    return ActionOutcome(change.action, external_id, change.changed, message)


def lock_account(
    session: Session,
    step_up: StepUp,
    external_id: str,
    *,
    reason: str | None,
    actor: str,
    now: datetime,
) -> ActionOutcome:
    change = support.lock_step_up(
        session, step_up, external_id, actor=actor, now=now, reason=reason
    )
    message = "step-up blocked until support unlocks" if change.changed else "already blocked"
    return ActionOutcome(change.action, external_id, change.changed, message)


def unlock_account(
    session: Session, step_up: StepUp, external_id: str, *, actor: str, now: datetime
) -> ActionOutcome:
    """``accounts unlock``: every lock and block ends, failures are forgotten."""
    was_locked = step_up.unlock(session, external_id, actor=actor, now=now)
    message = "unlocked" if was_locked else "not locked; its failure count is reset"
    return ActionOutcome("step_up.unlocked", external_id, was_locked, message)


def reset_totp(
    session: Session, external_id: str, *, reason: str | None, actor: str, now: datetime
) -> ActionOutcome:
    change = support.reset_totp(session, external_id, actor=actor, now=now, reason=reason)
    message = "authenticator removed" if change.changed else "no authenticator to remove"
    return ActionOutcome(change.action, external_id, change.changed, message)


def revoke_devices(
    session: Session, external_id: str, *, reason: str | None, actor: str, now: datetime
) -> ActionOutcome:
    change = support.revoke_trusted_devices(
        session, external_id, actor=actor, now=now, reason=reason
    )
    return ActionOutcome(
        change.action,
        external_id,
        change.changed,
        f"{change.devices_revoked} trusted devices revoked",
        {"devices_revoked": change.devices_revoked},
    )


def resend_warning(
    session: Session, external_id: str, slug: str, *, actor: str, now: datetime
) -> ActionOutcome:
    """Put the account's failed warning of the leak back in the outbox (``notices retry
    --ids``); the caller relays after commit. Raises NotResendable for any other state."""
    account = find_account(session, external_id)
    leak = find_leak(session, slug)
    notice = session.execute(
        select(Notice.id, Notice.state).where(
            Notice.account_id == account.id,
            Notice.leak_id == leak.id,
            Notice.kind == NoticeKind.LEAK_WARNING,
        )
    ).first()
    if notice is None:
        raise NotResendable(f"account {external_id!r} has no warning of leak {slug!r}")
    if notice.state is not NoticeState.FAILED:
        raise NotResendable(
            f"the warning of leak {slug!r} is {notice.state.value}: only a failed one is resent"
        )
    outcome = retry_failed(session, slug, ids=[notice.id], actor=actor, now=now)
    return ActionOutcome(
        "campaign.retried",
        external_id,
        bool(outcome.retried),
        f"warning of {slug} is pending again",
        {"leak": slug, "notice": notice.id},
        notice_ids=outcome.retried,
    )


def approve_email_change(
    session: Session,
    tools: ChangeTools,
    request_id: str,
    *,
    by: str,
    reason: str,
    now: datetime,
) -> ActionOutcome:
    """``email-change approve``: four eyes, both messages queued (``notice_ids``)."""
    step = assisted.approve(session, tools, request_id, by=by, reason=reason, now=now)
    return ActionOutcome(
        "email_change.approved",
        _external_id(session, request_id),
        True,
        f"approved: confirmation to {step.view.new_email}, alert to {step.view.old_email}",
        {"request": request_id, "priority": step.view.priority},
        notice_ids=step.notice_ids,
    )


def deny_email_change(
    session: Session, request_id: str, *, by: str, reason: str, now: datetime
) -> ActionOutcome:
    """``email-change deny``: nothing is mailed."""
    view = assisted.deny(session, request_id, by=by, reason=reason, now=now)
    return ActionOutcome(
        "email_change.denied",
        _external_id(session, request_id),
        True,
        f"request {view.request_id} denied",
        {"request": request_id},
    )


def _external_id(session: Session, request_id: str) -> str:
    return session.scalars(
        select(Account.external_id)
        .join(EmailChangeRequest, EmailChangeRequest.account_id == Account.id)
        .where(EmailChangeRequest.id == request_id)
    ).one()
