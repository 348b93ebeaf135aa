"""The notice outbox: rows written in the transaction of what causes them.

A notice row is one message to one person. It is created here, in the same transaction as
the exposure that causes it, so a crash can never leave an exposure without its warning
or a warning without its exposure; the queue only carries rows that exist.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy.orm import Session

from service.db import insert_ignoring_conflicts
from service.models import Notice, NoticeKind, NoticeState


def create_leak_warnings(
    session: Session, account_ids: Iterable[int], *, leak_id: int, now: datetime
) -> int:
    """Add one pending leak warning per account; return how many are new. Does not commit.

    Idempotent: an account already warned about this leak gets no second row.
    """
    rows = [
        {
            "account_id": account_id,
            "leak_id": leak_id,
            "kind": NoticeKind.LEAK_WARNING,
            "state": NoticeState.PENDING,
            "attempts": 0,
            "created_at": now,
        }
        for account_id in account_ids
    ]
    if not rows:
        return 0
    inserted = session.execute(
        insert_ignoring_conflicts(session, Notice).returning(Notice.id), rows
    ).all()
    return len(inserted)
