"""The email change's messages, as outbox rows linked to their request.

Each is a one-recipient notice (service/notices/outbox.py): the recipient and the link are
read from the request when the message is sent, so no job argument and no row carries an
address or a token. A row whose message stopped being true before it went is cancelled
when a worker claims it (``_SENDABLE_IN`` there) or at once here.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import insert, update
from sqlalchemy.orm import Session

from service.models import Notice, NoticeKind, NoticeState
from service.notices.outbox import UNSENT


def queue_mail(
    session: Session,
    request_id: str,
    account_id: int,
    kinds: Sequence[NoticeKind],
    *,
    now: datetime,
) -> tuple[int, ...]:
    """Add one pending notice per kind for the request; return their ids. Does not commit."""
    ids = []
    for kind in kinds:
        notice_id = session.execute(
            insert(Notice)
            .values(
                account_id=account_id,
                kind=kind,
                state=NoticeState.PENDING,
                attempts=0,
                email_change_id=request_id,
                created_at=now,
            )
            .returning(Notice.id)
        ).scalar_one()
        ids.append(notice_id)
    return tuple(ids)


def cancel_unsent(session: Session, request_id: str, kinds: Sequence[NoticeKind]) -> None:
    """Cancel the request's messages of ``kinds`` not sent yet. Does not commit."""
    session.execute(
        update(Notice)
        .where(
            Notice.email_change_id == request_id,
            Notice.kind.in_(list(kinds)),
            Notice.state.in_(UNSENT),
        )
        .values(state=NoticeState.CANCELLED)
    )
