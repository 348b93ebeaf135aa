"""Audit events of the email change: every step, addresses masked."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from service.addresses import mask_email
from service.audit import record_event
from service.models import EmailChangeRequest


def audit_step(
    session: Session,
    request: EmailChangeRequest,
    external_id: str,
    action: str,
    *,
    actor: str,
    now: datetime,
    **extra: Any,
) -> None:
    """Record ``email_change.<action>`` for the request, in the caller's transaction."""
    record_event(
        session,
        actor=actor,
        action=f"email_change.{action}",
        target=f"account:{external_id}",
        detail={
            "request_id": request.id,
            "from": mask_email(request.old_email),
            "to": mask_email(request.new_email),
            "priority": request.priority.value,
            **extra,
        },
        now=now,
    )
