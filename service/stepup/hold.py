"""Support's hold: "this account steps up at its next sign-in", whatever the leaks say.

Voiding trusted devices and assurance tokens (``support.force_step_up``) changes nothing
for an account no leak names: the risk check allows it anyway. The hold is the stored
demand that closes that gap. While it stands the risk check answers ``step_up`` with
reason ``support_hold`` on every sign-in, a trusted device included (the device may be
what support distrusts). It ends when the person passes a step-up (``StepUp.verify``, in
the same transaction as the pass), when support clears it, or at ``expires_at``.

One row per account: placing a hold again replaces the row (the audit trail keeps who
placed each one and why). Free of Flask; never commits.

No security event goes with it: none in the catalogue (service/events/types.py) says "ask
for a step-up at the next sign-in". ``risk-level-change`` carries the level the open
exposures give (a hold would make it say two things), ``session-revoked`` ends sessions now
(more than support asked), ``account-disabled`` holds sign-ins the person cannot pass (the
hold is passed by a step-up). The login service learns of the hold where it acts on it: the
risk check.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import BindParameter, ColumnElement, Exists, exists, or_
from sqlalchemy.orm import Session

from service.db import bulk
from service.errors import ValidationFailed
from service.models import SupportHold

MAX_REASON_CHARS = 500
# A hold with an end lasts this long at least and at most; longer is "until cleared".
MIN_HOLD = timedelta(hours=1)
MAX_HOLD = timedelta(days=365)


def on_hold(
    account_id: ColumnElement[int] | int, now: BindParameter[datetime] | datetime
) -> Exists:
    """True where a support hold on the account stands at ``now`` (a subquery)."""
    return exists().where(
        SupportHold.account_id == account_id,
        SupportHold.cleared_at.is_(None),
        or_(SupportHold.expires_at.is_(None), SupportHold.expires_at > now),
    )


@dataclass(frozen=True, slots=True)
class HoldView:
    """A hold as the staff page and the CLI show it."""

    reason: str | None
    placed_by: str
    placed_at: datetime
    expires_at: datetime | None
    cleared_at: datetime | None
    cleared_by: str | None
    clear_reason: str | None

    def standing(self, now: datetime) -> bool:
        return self.cleared_at is None and (self.expires_at is None or self.expires_at > now)


def read_hold(session: Session, account_id: int) -> HoldView | None:
    """The account's latest hold, standing or ended; None if it never had one."""
    row = session.get(SupportHold, account_id)
    if row is None:
        return None
    return HoldView(
        row.reason,
        row.placed_by,
        row.placed_at,
        row.expires_at,
        row.cleared_at,
        row.cleared_by,
        row.clear_reason,
    )


def place_hold(
    session: Session,
    account_id: int,
    *,
    actor: str,
    reason: str | None,
    expires_in: timedelta | None,
    now: datetime,
) -> datetime | None:
    """Put (or renew) the hold; return when it ends (None: until cleared). Raises
    ValidationFailed for a reason over ``MAX_REASON_CHARS`` or an end not in the future
    from ``MIN_HOLD`` to ``MAX_HOLD``. Does not commit; the caller audits."""
    if reason is not None and len(reason) > MAX_REASON_CHARS:
        raise ValidationFailed(f"the reason is at most {MAX_REASON_CHARS} characters")
    if expires_in is not None and not MIN_HOLD <= expires_in <= MAX_HOLD:
        raise ValidationFailed(
            f"a hold lasts from 1 hour to {MAX_HOLD.days} days, or until cleared"
        )
    expires_at = now + expires_in if expires_in is not None else None
    values = {
        "reason": reason,
        "placed_by": actor,
        "placed_at": now,
        "expires_at": expires_at,
        "cleared_at": None,
        "cleared_by": None,
        "clear_reason": None,
    }
    existing = session.get(SupportHold, account_id, with_for_update=bulk.is_postgres(session))
    if existing is None:
        session.add(SupportHold(account_id=account_id, **values))
    else:
        for name, value in values.items():
            setattr(existing, name, value)
    session.flush()  # the very next risk check, on this transaction's connection, reads it
    return expires_at


def release_hold(
    session: Session, account_id: int, *, by: str, reason: str, now: datetime
) -> HoldView | None:
    """End the account's standing hold; return it as it stood (None: no hold stood, and
    nothing changes). Does not commit; the caller audits."""
    row = session.get(SupportHold, account_id, with_for_update=bulk.is_postgres(session))
    before = read_hold(session, account_id)
    if row is None or before is None or not before.standing(now):
        return None
    row.cleared_at = now
    row.cleared_by = by
    row.clear_reason = reason
    session.flush()
    return before
