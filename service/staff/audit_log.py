"""The audit log as staff read it: every row of ``audit_event`` (staff actions and every
security decision the service records), filtered, newest first, a page at a time (keyset
on the id: page 1,000 costs what page 1 costs), or all of it for a CSV export.

No Flask. Rows are shown with every address-shaped text masked: a target such as
``account:<external id>`` can be an address where the login service uses them as ids.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, String, cast, or_, select
from sqlalchemy.orm import Session

from service.addresses import mask_addresses
from service.errors import ValidationFailed
from service.models import AuditEvent, StaffUser
from service.staff.users import normalize_staff_email

PAGE_ROWS = 50
EXPORT_BATCH_ROWS = 1000
CSV_COLUMNS = ("id", "at", "actor", "action", "target", "detail")
MAX_FILTER_CHARS = 300
FORMULA_STARTS = frozenset("=+-@\t\r")


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """What the audit page narrows to; every field optional, all of them together (AND).

    ``actor``: exact (``staff:3``, ``cli:ops``), or a staff user's email (their rows,
    under either name the trail gives them);
    ``account``: an external id; ``leak``: a slug (rows on the leak, and rows on an
    account naming the leak in their detail); ``action``: exact, or a prefix ending in
    ``.`` (``staff.``); ``since``/``until``: UTC, ``until`` excluded.
    """

    actor: str | None = None
    account: str | None = None
    leak: str | None = None
    action: str | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True, slots=True)
class AuditRow:
    id: int
    at: datetime
    actor: str
    action: str
    target: str | None  # masked
    detail: str | None  # JSON text, masked

    def csv_row(self) -> list[str]:
        cells = [self.actor, self.action, self.target or "", self.detail or ""]
        return [str(self.id), self.at.isoformat(), *map(_inert_cell, cells)]


@dataclass(frozen=True, slots=True)
class AuditPage:
    rows: tuple[AuditRow, ...]
    next_before: int | None  # the id to pass as ``before`` for the next (older) page


def read_audit_page(
    session: Session, where: AuditFilter, *, before: int | None = None, rows: int = PAGE_ROWS
) -> AuditPage:
    """One page of rows, newest first, older than the row ``before`` (None: the newest)."""
    query = _filtered(session, where)
    if before is not None:
        query = query.where(AuditEvent.id < before)
    found = list(session.scalars(query.order_by(AuditEvent.id.desc()).limit(rows + 1)))
    shown = tuple(_row(event) for event in found[:rows])
    return AuditPage(shown, shown[-1].id if len(found) > rows else None)


def iter_audit_rows(session: Session, where: AuditFilter) -> Iterator[AuditRow]:
    """Every matching row, newest first, read in batches (memory stays flat)."""
    before: int | None = None
    while True:
        page = read_audit_page(session, where, before=before, rows=EXPORT_BATCH_ROWS)
        yield from page.rows
        if page.next_before is None:
            return
        before = page.next_before


def iter_audit_csv(session: Session, where: AuditFilter) -> Iterator[str]:
    """The CSV export, a chunk of lines at a time: a header, then ``iter_audit_rows``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for count, row in enumerate(iter_audit_rows(session, where), start=1):
        writer.writerow(row.csv_row())
        if count % EXPORT_BATCH_ROWS == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def staff_names(session: Session, rows: tuple[AuditRow, ...]) -> dict[str, str]:
    """The email of each ``staff:<id>`` actor among ``rows``, for the page to name them."""
    ids = {int(row.actor[6:]) for row in rows if re.fullmatch(r"staff:\d+", row.actor)}
    if not ids:
        return {}
    found = session.execute(select(StaffUser.id, StaffUser.email).where(StaffUser.id.in_(ids)))
    return {f"staff:{staff_id}": email for staff_id, email in found}


def _filtered(session: Session, where: AuditFilter) -> Select[AuditEvent]:
    query = select(AuditEvent)
    if where.actor:
        actor = where.actor.strip()
        names = [actor]
        if "@" in actor and not actor.startswith("staff:"):
            # Read as the login reads it: any spelling that signs in names the person.
            try:
                email = normalize_staff_email(actor)
            except ValidationFailed:
                email = actor.lower()
            staff_id = session.scalar(select(StaffUser.id).where(StaffUser.email == email))
            if staff_id is not None:
                # Their acts (``staff:<id>``) and their email-change reviews, which name
                # the person (``staff:<email>``, see ``users.staff_person``).
                names = [f"staff:{staff_id}", f"staff:{email}"]
        query = query.where(AuditEvent.actor.in_(names))
    if where.account:
        query = query.where(AuditEvent.target == f"account:{where.account.strip()}")
    if where.leak:
        slug = where.leak.strip()
        query = query.where(
            or_(
                AuditEvent.target == slug,
                cast(AuditEvent.detail, String).like(f"%{_json_string(slug)}%", escape="\\"),
            )
        )
    if where.action:
        action = where.action.strip()
        if action.endswith("."):
            query = query.where(AuditEvent.action.startswith(action, autoescape=True))
        else:
            query = query.where(AuditEvent.action == action)
    if where.since is not None:
        query = query.where(AuditEvent.at >= where.since)
    if where.until is not None:
        query = query.where(AuditEvent.at < where.until)
    return query


def _inert_cell(text: str) -> str:
    """``text`` such that a spreadsheet opening the CSV shows it rather than runs it: a
    leading ``= + - @`` (or tab, CR) would start a formula (OWASP: CSV injection)."""
    return "'" + text if text[:1] in FORMULA_STARTS else text


def _json_string(value: str) -> str:
    """``value`` as it appears inside a stored JSON document, LIKE-escaped."""
    text = json.dumps(value)
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _row(event: AuditEvent) -> AuditRow:
    detail: Any = event.detail
    return AuditRow(
        id=event.id,
        at=event.at,
        actor=mask_addresses(event.actor),
        action=event.action,
        target=mask_addresses(event.target) if event.target else None,
        # Text as written ("bücher.de", not "b\\u00fccher.de"): read by people, on the page
        # and in the CSV; an escaped address would also slip past the masking pattern.
        detail=mask_addresses(json.dumps(detail, sort_keys=True, ensure_ascii=False))
        if detail
        else None,
    )
