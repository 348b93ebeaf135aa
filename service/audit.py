"""The audit trail: one row per security-relevant act, in the act's own transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert
from sqlalchemy.orm import Session

from service.models import AuditEvent


def record_event(
    session: Session,
    *,
    actor: str,
    action: str,
    target: str | None = None,
    detail: dict[str, Any] | None = None,
    now: datetime,
) -> None:
    """Add an audit row to the session; the caller's commit makes it durable with the act.

    ``detail`` must never hold a clear address, code, token or password: mask first.
    """
    session.add(AuditEvent(at=now, actor=actor, action=action, target=target, detail=detail))


_INSERT = insert(AuditEvent)  # built once: the risk check writes it often


def insert_event(
    connection: Connection,
    *,
    actor: str,
    action: str,
    target: str | None = None,
    detail: dict[str, Any] | None = None,
    now: datetime,
) -> None:
    """The same row, on a bare connection (the risk check's hot path); the caller commits."""
    connection.execute(
        _INSERT, {"at": now, "actor": actor, "action": action, "target": target, "detail": detail}
    )
