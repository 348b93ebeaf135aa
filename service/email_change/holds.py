"""What a reverted change leaves on its account (issue 14, part 2, item 5).

A revert says someone else changed the address, so the account is held: no new change
during the cooling-off (``LEAKGUARD_EMAIL_CHANGE_COOLDOWN_HOURS``; 409 ``cooling_off``
with Retry-After), and the risk check answers ``step_up`` with reason
``email_change_reverted`` on every sign-in, trusted device or not, until support has
looked at it and clears the hold (``leakguard email-change clear-hold``, audited).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Exists, exists, select
from sqlalchemy.orm import Session

from service.addresses import mask_email
from service.audit import record_event
from service.db import bulk
from service.email_change.errors import CoolingOff
from service.errors import NotFound, ValidationFailed
from service.models import Account, EmailChangeHold
from service.readable_text import check_readable_text

MAX_REASON_CHARS = 500
MAX_ACTOR_CHARS = 200  # EmailChangeHold.cleared_by


def held(account_id: ColumnElement[int] | int) -> Exists:
    """True where a revert's hold on the account waits for support (a subquery)."""
    return exists().where(
        EmailChangeHold.account_id == account_id, EmailChangeHold.cleared_at.is_(None)
    )


def check_cooling_off(session: Session, account_id: int, *, now: datetime) -> None:
    """Raise CoolingOff while a revert's cooling-off lasts (cleared by support or not)."""
    until = session.scalar(
        select(EmailChangeHold.cooling_until).where(EmailChangeHold.account_id == account_id)
    )
    if until is not None and until > now:
        raise CoolingOff(until, now)


def hold_account(
    session: Session, account_id: int, request_id: str, *, cooling_until: datetime, now: datetime
) -> None:
    """Put (or renew) the hold of a revert on the account. Does not commit."""
    values = {
        "account_id": account_id,
        "request_id": request_id,
        "reverted_at": now,
        "cooling_until": cooling_until,
        "cleared_at": None,
        "cleared_by": None,
        "clear_reason": None,
    }
    existing = session.get(EmailChangeHold, account_id, with_for_update=bulk.is_postgres(session))
    if existing is None:
        session.add(EmailChangeHold(**values))
        session.flush()
        return
    for name, value in values.items():
        setattr(existing, name, value)


@dataclass(frozen=True, slots=True)
class ClearedHold:
    external_id: str
    was_held: bool
    cooling_until: datetime | None


def clear_hold(
    session: Session, external_id: str, *, actor: str, reason: str, now: datetime
) -> ClearedHold:
    """Support's verdict after a revert: sign-ins need no extra step-up for it any more.

    The cooling-off keeps running: it bounds how soon a new change can be made, whoever
    looked at the account. Raises NotFound for an unknown account. Does not commit.
    """
    reason = reason.strip()
    if not reason or len(reason) > MAX_REASON_CHARS or not actor.strip():
        raise ValidationFailed(f"name who clears the hold, and why (1-{MAX_REASON_CHARS} chars)")
    # ``actor`` is the operator's --by: a name, stored in cleared_by (String(200)).
    actor = check_readable_text(actor, what="who clears the hold", limit=MAX_ACTOR_CHARS)
    account = session.scalars(select(Account).where(Account.external_id == external_id)).first()
    if account is None:
        raise NotFound(f"no account with the id {external_id!r}")
    hold = session.get(EmailChangeHold, account.id)
    was_held = hold is not None and hold.cleared_at is None
    if hold is not None and was_held:
        hold.cleared_at = now
        hold.cleared_by = actor
        hold.clear_reason = reason
    record_event(
        session,
        actor=actor,
        action="email_change.hold_cleared" if was_held else "email_change.hold_clear_noop",
        target=f"account:{external_id}",
        detail={"email": mask_email(account.email), "reason": reason},
        now=now,
    )
    return ClearedHold(external_id, was_held, hold.cooling_until if hold else None)
