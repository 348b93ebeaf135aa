"""A pending change that another change of the address overtook (issue 14, fault 5).

The login service may move an account itself (``PUT /v1/accounts/{id}``, the batch
endpoint, ``leakguard accounts import``) while a change waits for the new mailbox. The
request then speaks of an address the account no longer has: the alert went to a mailbox
that is not the account's any more, and a confirmation would apply a change asked of
another state. So every address change to another mailbox closes the account's request
that awaits confirmation as ``superseded``: its links answer 409 ``request_closed``, its
unsent messages are cancelled, a resend finds nothing pending. A request awaiting
support's review stays: its messages go out on approval, to the address the account has
then (``assisted.approve``). A respelling of the same mailbox closes nothing.

Imported by ``service.accounts`` (``change_addresses``): this module must not import it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.db import bulk
from service.email_change.audit import audit_step
from service.email_change.mail import cancel_unsent
from service.models import Account, ChangeState, EmailChangeRequest, NoticeKind

# Every message of a request: none of them says something true any more.
_ITS_MESSAGES = (
    NoticeKind.EMAIL_CHANGE_CONFIRM,
    NoticeKind.EMAIL_CHANGE_ALERT,
    NoticeKind.EMAIL_CHANGED,
)


def supersede_pending(
    session: Session, account_ids: Sequence[int], *, actor: str, now: datetime
) -> int:
    """Close as ``superseded`` the requests of ``account_ids`` awaiting confirmation (their
    address just changed another way); return how many. Audited
    (``email_change.superseded``). Does not commit."""
    closed = 0
    for condition in bulk.in_batches(session, EmailChangeRequest.account_id, list(account_ids)):
        rows = session.execute(
            select(EmailChangeRequest, Account.external_id)
            .join(Account, Account.id == EmailChangeRequest.account_id)
            .where(condition, EmailChangeRequest.state == ChangeState.AWAITING_CONFIRMATION)
        ).all()
        for request, external_id in rows:
            request.state = ChangeState.SUPERSEDED
            request.closed_at = now
            session.flush()
            cancel_unsent(session, request.id, _ITS_MESSAGES)
            audit_step(session, request, external_id, "superseded", actor=actor, now=now)
            closed += 1
    return closed
