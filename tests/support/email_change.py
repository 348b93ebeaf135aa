"""The email change as the tests drive it: assurance tokens, link tokens, rows to read."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select

from service.db import utcnow
from service.email_change.context import ChangeTools
from service.email_change.tokens import LinkPurpose
from service.models import Account, AuditEvent, EmailChangeRequest, Notice
from service.runtime import Runtime


def assurance_token(
    runtime: Runtime, external_id: str, *, method: str = "totp", now: datetime | None = None
) -> str:
    """A token exactly as ``POST /v1/step-up/verify`` issues it after a passed step-up,
    for the account as it is now (its row id and security epoch)."""
    with runtime.db.read_session() as session:
        account = session.scalars(select(Account).where(Account.external_id == external_id)).one()
    return runtime.step_up.signer.issue(
        external_id=external_id,
        account_id=account.id,
        method=method,
        epoch=account.security_epoch,
        now=now or utcnow(),
    )


def link_token(runtime: Runtime, request_id: str, purpose: LinkPurpose) -> str:
    """The token the worker puts in the message's link (the current generation)."""
    with runtime.db.read_session() as session:
        request = session.get_one(EmailChangeRequest, request_id)
    generation = request.link_generation if purpose is LinkPurpose.CONFIRM else 0
    return ChangeTools.of(runtime).tokens.token(request_id, purpose, generation)


def requests_of(runtime: Runtime) -> list[EmailChangeRequest]:
    with runtime.db.read_session() as session:
        return list(
            session.scalars(select(EmailChangeRequest).order_by(EmailChangeRequest.created_at))
        )


def change_notices(runtime: Runtime) -> list[Notice]:
    with runtime.db.read_session() as session:
        return list(
            session.scalars(
                select(Notice).where(Notice.email_change_id.is_not(None)).order_by(Notice.id)
            )
        )


def account_row(runtime: Runtime, external_id: str) -> Account:
    with runtime.db.read_session() as session:
        return session.scalars(select(Account).where(Account.external_id == external_id)).one()


def audit_actions(runtime: Runtime, prefix: str = "email_change.") -> list[dict[str, Any]]:
    with runtime.db.read_session() as session:
        rows = session.scalars(
            select(AuditEvent).where(AuditEvent.action.startswith(prefix)).order_by(AuditEvent.id)
        )
        return [{"action": row.action, "detail": row.detail, "actor": row.actor} for row in rows]
