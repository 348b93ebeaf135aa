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
- ``force_step_up``: both voids at once (trusted devices and assurance tokens): whatever the
  person passed before, the next sign-in the risk policy asks a step-up for asks it again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from service.addresses import mask_email
from service.audit import record_event
from service.db import rowcount
from service.errors import NotFound
from service.events.emit import record_step_up_locked
from service.models import Account, TotpCredential
from service.stepup import devices, throttle
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
    account = _account(session, external_id)
    ended = devices.end_trust(session, [account.id])
    action = "step_up.devices_revoked"
    _audit(session, account, action, actor=actor, now=now, reason=reason, devices=ended)
    return SupportChange(external_id, action, bool(ended), devices_revoked=ended)


def force_step_up(
    session: Session, external_id: str, *, actor: str, now: datetime, reason: str | None = None
) -> SupportChange:
    """Void what vouches for the account's next sign-in: its trusted devices and every
    assurance token issued before (the security epoch rises). Raises NotFound. Does not
    commit."""
    account = _account(session, external_id)
    ended = devices.end_trust(session, [account.id])
    _raise_epoch(session, account.id)
    action = "step_up.forced_by_support"
    _audit(session, account, action, actor=actor, now=now, reason=reason, devices=ended)
    return SupportChange(external_id, action, True, devices_revoked=ended, epoch_raised=True)
