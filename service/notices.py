"""The notice outbox: rows written in the transaction of what causes them.

A notice row is one message to one person. It is created here, in the same transaction as
the exposure that causes it, so a crash can never leave an exposure without its warning
or a warning without its exposure; the queue only carries rows that exist.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Result, text
from sqlalchemy.orm import Session

from service.models import Notice, NoticeKind, NoticeState


def create_leak_warnings(
    session: Session, account_ids: Iterable[int], *, leak_id: int, now: datetime
) -> int:
    """Add one pending leak warning per account; return how many are new. Does not commit.

    Idempotent: an account already warned about this leak gets no second row.
    """
    ids = list(account_ids)
    if not ids:
        return 0
    if session.get_bind().dialect.name == "postgresql":
        result = session.execute(
            _PG_INSERT_WARNINGS,
            {
                "account_ids": ids,
                "leak_id": leak_id,
                "kind": NoticeKind.LEAK_WARNING.value,
                "state": NoticeState.PENDING.value,
                "now": now,
            },
        )
        return _rowcount(result)
    result = session.execute(
        NOTICE_TABLE.insert().prefix_with("OR IGNORE"),
        [
            {
                "account_id": account_id,
                "leak_id": leak_id,
                "kind": NoticeKind.LEAK_WARNING,
                "state": NoticeState.PENDING,
                "attempts": 0,
                "created_at": now,
            }
            for account_id in ids
        ],
    )
    return _rowcount(result)


NOTICE_TABLE = Notice.metadata.tables[Notice.__tablename__]
# One statement for all rows (see service/exposures.py for why).
_PG_INSERT_WARNINGS = text(
    """
    INSERT INTO notice (account_id, leak_id, kind, state, attempts, created_at)
    SELECT t.account_id, :leak_id, :kind, :state, 0, :now
    FROM unnest(CAST(:account_ids AS bigint[])) AS t(account_id)
    ORDER BY t.account_id
    ON CONFLICT DO NOTHING
    """
)


def _rowcount(result: Result[Any]) -> int:
    return int(getattr(result, "rowcount", 0) or 0)
