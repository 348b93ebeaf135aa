"""The audit trail: one row per security-relevant act, in the act's own transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert
from sqlalchemy.orm import Session

from service.models import AuditEvent

_INSERT = insert(AuditEvent)  # built once: the risk check writes it on every step_up


def record_event(
    executor: Session | Connection,
    *,
    actor: str,
    action: str,
    target: str | None = None,
    detail: dict[str, Any] | None = None,
    now: datetime,
) -> None:
    """Write an audit row in the caller's transaction (an ORM session, or a bare connection
    on the risk check's hot path); the caller's commit makes it durable with the act.

    ``detail`` must never hold a code, token or password. Every address in it, in any
    string however nested, is masked on write by the column's type (``MaskedJSON``): free
    text a caller or operator typed (a user agent, a support reason) cannot slip through.
    """
    executor.execute(
        _INSERT, {"at": now, "actor": actor, "action": action, "target": target, "detail": detail}
    )


@dataclass(frozen=True, slots=True)
class AuditRow:
    """One audit row of a bulk act: what ``record_event`` takes, but the actor and time."""

    action: str
    target: str | None = None
    detail: dict[str, Any] | None = None


def record_events(
    executor: Session | Connection, rows: Sequence[AuditRow], *, actor: str, now: datetime
) -> None:
    """Write ``rows`` as ``record_event`` writes each, in their order, in one executemany.

    A bulk act of thousands (support's bulk verdict) wrote its rows one statement each,
    a round trip apiece inside one request. Same masking, same guarantees; does not commit.
    """
    if rows:
        executor.execute(
            _INSERT,
            [
                {
                    "at": now,
                    "actor": actor,
                    "action": row.action,
                    "target": row.target,
                    "detail": row.detail,
                }
                for row in rows
            ],
        )
