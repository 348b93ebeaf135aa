"""An account's dossier for support: everything the staff page shows of one account.

Its exposures with their state, its notices with their delivery outcome, its step-up
history (the audit trail of its verifications, locks and overrides), its trusted devices,
its email-change requests, its authenticator and recovery codes, and whether its step-up is
locked or held. Addresses are masked everywhere here: revealing one is an audited act of
its own. A handful of indexed reads of one account; free of Flask.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from service.addresses import mask_addresses, mask_email
from service.email_change.views import ChangeView
from service.errors import NotFound
from service.leaks.lifecycle import ExposureView, list_exposures
from service.models import (
    Account,
    AuditEvent,
    EmailChangeHold,
    EmailChangeRequest,
    Leak,
    Notice,
    TrustedDevice,
)
from service.security_state import security_state
from service.stepup.hold import HoldView, read_hold
from service.stepup.services import StepUp
from service.stepup.throttle import state as throttle_state

HISTORY_LIMIT = 50  # step-up audit rows shown, newest first
# The audit actions of an account's step-up: verifications, locks, factors, overrides.
STEP_UP_ACTIONS = ("step_up.", "risk.")


@dataclass(frozen=True, slots=True)
class NoticeLine:
    id: int
    kind: str
    leak: str | None
    state: str  # pending, queued, sending, sent, failed, cancelled
    attempts: int
    created_at: datetime
    sent_at: datetime | None
    failed_at: datetime | None
    reply_code: int | None
    reason: str | None  # the last error, addresses masked


@dataclass(frozen=True, slots=True)
class HistoryLine:
    at: datetime
    actor: str
    action: str
    detail: dict[str, Any]


@dataclass(frozen=True, slots=True)
class DeviceLine:
    label: str  # the first hex digits of the stored digest: the login service's id is unknown
    trusted_at: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class LockState:
    blocked: bool  # every method blocked until support unlocks
    locked: dict[str, datetime]  # method -> when its lock ends

    @property
    def any(self) -> bool:
        return self.blocked or bool(self.locked)


@dataclass(frozen=True, slots=True)
class Hold:
    """A reverted email change's hold (service/email_change/holds.py)."""

    reverted_at: datetime
    cooling_until: datetime
    cleared_at: datetime | None
    cleared_by: str | None


@dataclass(frozen=True, slots=True)
class Dossier:
    account_id: int
    external_id: str
    email: str  # masked
    locale: str | None
    created_at: datetime
    undeliverable_since: datetime | None
    totp_enrolled: bool
    recovery_codes_left: int
    exposures: tuple[ExposureView, ...]
    notices: tuple[NoticeLine, ...]
    history: tuple[HistoryLine, ...]
    devices: tuple[DeviceLine, ...]
    email_changes: tuple[ChangeView, ...]
    lock: LockState
    hold: Hold | None
    support_hold: HoldView | None  # support's forced step-up, standing or ended
    support_hold_standing: bool  # whether it asks for a step-up now

    @property
    def open_exposures(self) -> tuple[ExposureView, ...]:
        return tuple(e for e in self.exposures if e.state.value == "open")


def find_account(session: Session, external_id: str) -> Account:
    account = session.scalars(select(Account).where(Account.external_id == external_id)).first()
    if account is None:
        raise NotFound(f"no account with the id {external_id!r}")
    return account


def account_dossier(
    session: Session, step_up: StepUp, external_id: str, *, now: datetime
) -> Dossier:
    """Read the account's dossier as it is at ``now``; raise NotFound."""
    account = find_account(session, external_id)
    security = security_state(session, external_id)
    notices = tuple(
        NoticeLine(
            id=notice.id,
            kind=notice.kind.value,
            leak=slug,
            state=notice.state.value,
            attempts=notice.attempts,
            created_at=notice.created_at,
            sent_at=notice.sent_at,
            failed_at=notice.failed_at,
            reply_code=notice.reply_code,
            reason=mask_addresses(notice.last_error) if notice.last_error else None,
        )
        for notice, slug in session.execute(
            select(Notice, Leak.slug)
            .outerjoin(Leak, Leak.id == Notice.leak_id)
            .where(Notice.account_id == account.id)
            .order_by(Notice.created_at.desc(), Notice.id.desc())
        )
    )
    target = f"account:{external_id}"
    history = tuple(
        HistoryLine(event.at, event.actor, event.action, _masked(event.detail or {}))
        for event in session.scalars(
            select(AuditEvent)
            .where(AuditEvent.target == target)
            .where(or_(*(AuditEvent.action.startswith(p) for p in STEP_UP_ACTIONS)))
            .order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
            .limit(HISTORY_LIMIT)
        )
    )
    devices = tuple(
        DeviceLine(device.device_key.hex()[:8], device.trusted_at, device.expires_at)
        for device in session.scalars(
            select(TrustedDevice)
            .where(TrustedDevice.account_id == account.id, TrustedDevice.expires_at > now)
            .order_by(TrustedDevice.trusted_at.desc())
        )
    )
    changes = tuple(
        ChangeView.of(session, request)
        for request in session.scalars(
            select(EmailChangeRequest)
            .where(EmailChangeRequest.account_id == account.id)
            .order_by(EmailChangeRequest.created_at.desc())
        )
    )
    locks = throttle_state(session, step_up.subject(external_id), now=now, since=account.created_at)
    hold_row = session.get(EmailChangeHold, account.id)
    support_hold = read_hold(session, account.id)
    return Dossier(
        account_id=account.id,
        external_id=external_id,
        email=mask_email(account.email),
        locale=account.locale,
        created_at=account.created_at,
        undeliverable_since=security.undeliverable.since if security.undeliverable else None,
        totp_enrolled=security.totp_enrolled,
        recovery_codes_left=security.recovery_codes_left,
        exposures=tuple(list_exposures(session, external_id)),
        notices=notices,
        history=history,
        devices=devices,
        email_changes=changes,
        lock=LockState(locks.blocked, dict(locks.locked)),
        hold=(
            Hold(
                hold_row.reverted_at,
                hold_row.cooling_until,
                hold_row.cleared_at,
                hold_row.cleared_by,
            )
            if hold_row is not None
            else None
        ),
        support_hold=support_hold,
        support_hold_standing=support_hold is not None and support_hold.standing(now),
    )


def _masked(detail: dict[str, Any]) -> dict[str, Any]:
    """An audit detail with any address in its text masked (they are stored masked; this
    guards rows written before that rule)."""
    return {
        key: mask_addresses(value) if isinstance(value, str) else value
        for key, value in detail.items()
    }
