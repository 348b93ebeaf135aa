"""Staff actions in the audit trail: one row per state-changing staff call, written in
that call's transaction through ``service.audit.record_event``."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.audit import record_event
from service.errors import NotFound
from service.models import Account, Leak, StaffUser
from service.staff import clock
from service.staff.users import staff_actor

ACTION_PREFIX = "staff."


def record_staff_action(
    session: Session,
    staff: StaffUser,
    action: str,
    *,
    account_id: int | None = None,
    leak_id: int | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Write the audit row of ``staff`` doing ``action`` (stored as ``staff.<action>``) in
    the caller's transaction; the caller's commit makes it durable with the act.

    The target is the account (``account:<external id>``, as every other account row) or,
    without one, the leak's slug; with both, the slug goes into ``detail["leak"]``, where
    the audit page's leak filter finds it. ``detail`` must hold no clear address, code,
    token or password. Raises NotFound for an unknown account or leak id.
    """
    values = dict(detail or {})
    target = None
    if leak_id is not None:
        slug = session.scalar(select(Leak.slug).where(Leak.id == leak_id))
        if slug is None:
            raise NotFound("no such leak")
        values["leak"] = slug
        target = slug
    if account_id is not None:
        external_id = session.scalar(select(Account.external_id).where(Account.id == account_id))
        if external_id is None:
            raise NotFound("no such account")
        target = f"account:{external_id}"
    name = action if action.startswith(ACTION_PREFIX) else ACTION_PREFIX + action
    record_event(
        session,
        actor=staff_actor(staff),
        action=name,
        target=target,
        detail=values or None,
        now=clock.now(),
    )
