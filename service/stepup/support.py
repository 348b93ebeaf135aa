"""Support's overrides of an account's step-up, beside ``StepUp.unlock``: lock it, reset
its authenticator, revoke its trusted devices, and force the next sign-in to step up again.

Each is one domain function: it takes the caller's session and clock, changes what the very
next risk check reads (same transaction: no cache to wait out), writes its audit row with
the address masked, and never commits. They serve support, who names the account on
purpose, so an unknown account is a NotFound that names it.

What each does to the risk check (``service.risk``):

- ``lock_step_up``: every method is blocked until support unlocks (``StepUp.unlock``); an
  account a leak names (or a hold) is answered ``deny`` / ``locked``. An account nothing
  names is allowed as before: the lock stops step-up, not sign-in.
- ``reset_totp``: the authenticator is gone (the person lost it), so the risk check no
  longer offers ``totp``; the security epoch rises, voiding assurance tokens issued before.
- ``revoke_trusted_devices``: no device is trusted any more: a sign-in an open exposure
  names steps up again even on a device that passed before.
- ``force_step_up``: both voids at once (trusted devices and assurance tokens), and a
  support hold (``service.stepup.hold``): the next sign-in steps up, reason
  ``support_hold``, even where no leak names the account, until the person passes a
  step-up, support clears the hold (``clear_support_hold``), or the hold's time ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from service.addresses import mask_email
from service.audit import record_event
from service.db import rowcount
from service.errors import NotFound, ValidationFailed
from service.events.emit import record_step_up_locked
from service.models import Account, TotpCredential
from service.readable_text import TextFault, text_fault
from service.stepup import devices, hold, throttle
from service.stepup.services import StepUp


@dataclass(frozen=True, slots=True)
class SupportChange:
    """What a support override changed: ``changed`` False when there was nothing to do
    (still audited: support asked for it)."""

    external_id: str
    action: str  # the audit action, e.g. "step_up.locked_by_support"
    changed: bool
    devices_revoked: int = 0
    epoch_raised: bool = False
    hold_until: datetime | None = None  # force_step_up's hold: when it ends (None: cleared)


def _account(session: Session, external_id: str) -> Account:
    account = session.scalars(
        select(Account).where(Account.external_id == external_id).with_for_update()
    ).first()
    if account is None:
        raise NotFound(f"no account with the id {external_id!r}")
    return account


def _raise_epoch(session: Session, account_id: int) -> None:
    session.execute(
        update(Account)
        .where(Account.id == account_id)
        .values(security_epoch=Account.security_epoch + 1)
        .execution_options(synchronize_session=False)
    )


def support_reason(reason: str | None) -> str | None:
    """Support's reason as stored: each run of whitespace one space (a reason pasted from a
    ticket brings tabs and line breaks); None when blank.

    Raises ValidationFailed for a control or bidirectional formatting character (the audit
    log shows the reason as written), or more than ``hold.MAX_REASON_CHARS`` characters.
    """
    text = " ".join((reason or "").split())
    if not text:
        return None
    match text_fault(text, limit=hold.MAX_REASON_CHARS):
        case (TextFault.CONTROL, char):
            raise ValidationFailed(
                f"the reason may not hold a control or invisible formatting character ({char})"
            )
        case (TextFault.TOO_LONG, length):
            raise ValidationFailed(
                f"the reason is {length} characters long; at most {hold.MAX_REASON_CHARS}"
            )
    return text


def _audit(
    session: Session,
    account: Account,
    action: str,
    *,
    actor: str,
    now: datetime,
    reason: str | None,
    **extra: object,
) -> None:
    detail: dict[str, object] = {"email": mask_email(account.email), **extra}
    if reason:
        detail["reason"] = reason
    record_event(
        session,
        actor=actor,
        action=action,
        target=f"account:{account.external_id}",
        detail=detail,
        now=now,
    )


def lock_step_up(
    session: Session,
    step_up: StepUp,
    external_id: str,
    *,
    actor: str,
    now: datetime,
    reason: str | None = None,
) -> SupportChange:
    """Block every step-up method of the account until support unlocks it; raise the
    security epoch (earlier assurance tokens are void) and tell the login service (the
    account is disabled while the block stands). Raises NotFound. Does not commit."""
    reason = support_reason(reason)
    account = _account(session, external_id)
    changed = throttle.block(session, step_up.subject(external_id), now=now)
    if changed:
        _raise_epoch(session, account.id)
        record_step_up_locked(session, account.id, until=None, now=now)
    action = "step_up.locked_by_support"
    _audit(session, account, action, actor=actor, now=now, reason=reason)
    return SupportChange(external_id, action, changed, epoch_raised=changed)


def reset_totp(
    session: Session, external_id: str, *, actor: str, now: datetime, reason: str | None = None
) -> SupportChange:
    """Remove the account's authenticator (confirmed or pending) for a person who lost it,
    without the assurance token ``StepUp.remove_totp`` asks of the person: support vouches
    instead, and the audit row says who. Raises the security epoch. Raises NotFound. Does
    not commit."""
    reason = support_reason(reason)
    account = _account(session, external_id)
    removed = rowcount(
        session.execute(delete(TotpCredential).where(TotpCredential.account_id == account.id))
    )
    if removed:
        _raise_epoch(session, account.id)
    action = "step_up.totp_reset_by_support"
    _audit(session, account, action, actor=actor, now=now, reason=reason)
    return SupportChange(external_id, action, bool(removed), epoch_raised=bool(removed))


def revoke_trusted_devices(
    session: Session, external_id: str, *, actor: str, now: datetime, reason: str | None = None
) -> SupportChange:
    """End every trusted device of the account. Raises NotFound. Does not commit."""
    reason = support_reason(reason)
    account = _account(session, external_id)
    ended = devices.end_trust(session, [account.id])
    action = "step_up.devices_revoked"
    _audit(session, account, action, actor=actor, now=now, reason=reason, devices=ended)
    return SupportChange(external_id, action, bool(ended), devices_revoked=ended)


def force_step_up(
    session: Session,
    external_id: str,
    *,
    actor: str,
    now: datetime,
    reason: str | None = None,
    expires_in: timedelta | None = None,
) -> SupportChange:
    """Make the account's next sign-in step up: end its trusted devices, void every
    assurance token issued before (the security epoch rises), and hold the account (until
    a passed step-up, support's clear, or ``expires_in``; None: no end of its own). Raises
    NotFound, or ValidationFailed for a hold time out of bounds. Does not commit."""
    reason = support_reason(reason)
    account = _account(session, external_id)
    until = hold.place_hold(
        session, account.id, actor=actor, reason=reason, expires_in=expires_in, now=now
    )
    ended = devices.end_trust(session, [account.id])
    _raise_epoch(session, account.id)
    action = "step_up.forced_by_support"
    _audit(
        session,
        account,
        action,
        actor=actor,
        now=now,
        reason=reason,
        devices=ended,
        hold_until=until.isoformat() if until else None,
    )
    return SupportChange(
        external_id, action, True, devices_revoked=ended, epoch_raised=True, hold_until=until
    )


def clear_support_hold(
    session: Session, external_id: str, *, actor: str, now: datetime, reason: str
) -> SupportChange:
    """Support's end of a hold ``force_step_up`` placed: sign-ins step up again only where
    the risk policy asks for it. ``changed`` False when no hold stood (still audited).
    Raises NotFound, or ValidationFailed without a reason. Does not commit."""
    given = support_reason(reason)
    if given is None:
        raise ValidationFailed(f"say why the hold can end (1-{hold.MAX_REASON_CHARS} characters)")
    reason = given
    account = _account(session, external_id)
    ended = hold.release_hold(session, account.id, by=actor, reason=reason, now=now)
    action = "step_up.hold_cleared" if ended else "step_up.hold_clear_noop"
    _audit(session, account, action, actor=actor, now=now, reason=reason)
    return SupportChange(external_id, action, ended is not None)
