"""Import the login service's accounts from a CSV file, in chunks, in flat memory.

Each chunk is one transaction with a handful of set-based statements (one read of the
chunk's existing accounts, one executemany insert, one executemany update), so a million
rows take under half a minute (bench/import_accounts.py), and a failure leaves every
earlier chunk committed and the failing chunk untouched: the report says how far the
import got.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import String, any_, bindparam, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from jobs.textfiles import open_text
from service.accounts import check_external_id, email_key_for, normalize_locale
from service.db import utcnow
from service.errors import ValidationFailed
from service.exposures import flag_from_watchlist
from service.models import Account
from service.runtime import Runtime

DELIMITERS = ",;\t|"
SNIFF_BYTES = 64 * 1024
MAX_REPORTED_LINES = 100
SELECT_BATCH = 5000  # stays under SQLite's bound-parameter limit
# The Core table (typed, unlike Account.__table__): a plain executemany INSERT, no ORM work.
ACCOUNT_TABLE = Account.metadata.tables[Account.__tablename__]
COLUMN_ALIASES = {
    "external_id": {"external_id", "externalid", "external-id", "external id"},
    "email": {"email", "e-mail", "email_address", "email address", "mail"},
    "locale": {"locale", "language", "lang"},
}

# A 10 MB field is a broken file, not an account; the csv module's default (128 KiB)
# is far above any real row, so keep it and count the row invalid.
csv.field_size_limit(128 * 1024)


class ImportFileError(Exception):
    """The file cannot be imported at all (unreadable, no usable header)."""


class ImportAborted(Exception):
    """The database refused a chunk; the chunks before it are committed."""

    def __init__(self, message: str, report: ImportReport) -> None:
        super().__init__(message)
        self.report = report


@dataclass(slots=True)
class ImportReport:
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    invalid: int = 0
    flagged: int = 0  # accounts found in a known leak by the watch list
    invalid_lines: list[int] = field(default_factory=list)
    committed_through_line: int = 0

    def note_invalid(self, line: int) -> None:
        self.invalid += 1
        if len(self.invalid_lines) < MAX_REPORTED_LINES:
            self.invalid_lines.append(line)

    def to_json(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "invalid": self.invalid,
            "flagged": self.flagged,
            "invalid_lines": self.invalid_lines,
        }

    def summary(self) -> str:
        text = (
            f"{self.rows} rows: {self.created} created, {self.updated} updated, "
            f"{self.unchanged} unchanged, {self.invalid} invalid"
        )
        if self.flagged:
            text += f"; {self.flagged} flagged: their address is in a known leak"
        if self.invalid_lines:
            shown = ", ".join(str(n) for n in self.invalid_lines[:20])
            more = "" if self.invalid <= 20 else f" (and {self.invalid - 20} more)"
            text += f"\ninvalid rows at lines {shown}{more}"
        return text


@dataclass(frozen=True, slots=True)
class _Row:
    line: int
    external_id: str
    email: str
    email_key: bytes
    locale: str | None


def import_accounts(
    runtime: Runtime,
    path: Path,
    *,
    chunk_rows: int | None = None,
    on_progress: Callable[[int], object] | None = None,
) -> ImportReport:
    """Upsert every account in the CSV at ``path`` by external_id; commit chunk by chunk.

    Safe to run twice: the second run reports every row unchanged. Raises ImportFileError
    for an unusable file and ImportAborted (with the partial report) if a chunk fails.
    """
    size = chunk_rows or runtime.settings.import_chunk_rows
    report = ImportReport()
    for chunk in _chunks(_read_rows(runtime, path, report), size):
        try:
            with runtime.db.transaction() as session:
                _apply_chunk(session, chunk, report, now=utcnow())
        except SQLAlchemyError as exc:
            reason = str(getattr(exc, "orig", exc) or exc).splitlines()[0]
            raise ImportAborted(
                f"stopped at line {chunk[0].line}: the database refused the chunk ({reason}); "
                f"rows through line {report.committed_through_line} are imported",
                report,
            ) from exc
        report.committed_through_line = chunk[-1].line
        if on_progress is not None:
            on_progress(len(chunk))
    return report


def _read_rows(runtime: Runtime, path: Path, report: ImportReport) -> Iterator[_Row]:
    try:
        handle = open_text(path, newline="")
    except OSError as exc:
        raise ImportFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    with handle:
        try:
            sample = handle.read(SNIFF_BYTES)
        except OSError as exc:
            raise ImportFileError(f"cannot read {path}: {exc.strerror or exc}") from None
        handle.seek(0)
        reader = csv.reader(handle, dialect=_sniff(sample))
        columns = _header_columns(reader, path)
        keys = runtime.keys
        needed = max(columns["external_id"], columns["email"]) + 1
        end = reader.line_num
        while True:
            # A quoted field may span lines; a row is reported by the line it starts on,
            # which is where a stray opening quote that swallowed the lines after it sits.
            line = end + 1
            try:
                record = next(reader)
            except StopIteration:
                return
            except csv.Error:
                end = reader.line_num
                report.rows += 1
                report.note_invalid(line)
                continue
            end = reader.line_num
            if not "".join(record).strip():  # blank line, or only empty cells
                continue
            report.rows += 1
            if len(record) < needed:
                report.note_invalid(line)
                continue
            try:
                external_id = check_external_id(record[columns["external_id"]].strip())
                email = record[columns["email"]].strip()
                email_key = email_key_for(keys, email)
            except ValidationFailed:
                report.note_invalid(line)
                continue
            locale = _lenient_locale(record, columns.get("locale"))
            yield _Row(line, external_id, email, email_key, locale)


def _sniff(sample: str) -> type[csv.Dialect] | str:
    # The first lines are enough, and a truncated last line would only confuse the sniffer.
    head = "\n".join(sample.splitlines()[:20])
    try:
        dialect = csv.Sniffer().sniff(head, DELIMITERS)
    except csv.Error:
        return "excel"
    # The sniffer turns doublequote off unless its sample happens to hold a "" escape, and
    # then a later "Smith, ""J""" splits at the comma and shifts every column after it.
    # Exporters write a quote inside a quoted field as "" (RFC 4180): always read it so.
    dialect.doublequote = True
    return dialect


def _header_columns(reader: Any, path: Path) -> dict[str, int]:
    try:
        header = next(reader)
    except StopIteration:
        raise ImportFileError(f"{path} is empty") from None
    except csv.Error:
        raise ImportFileError(f"{path}: the first line is not a CSV header") from None
    names = [cell.strip().strip('"').lower() for cell in header]
    columns: dict[str, int] = {}
    for column, aliases in COLUMN_ALIASES.items():
        for index, name in enumerate(names):
            if name in aliases:
                columns[column] = index
                break
    missing = [name for name in ("external_id", "email") if name not in columns]
    if missing:
        # Never echo the line: without a header it is the first account's data.
        raise ImportFileError(
            f"{path}: the header must name the columns external_id and email "
            f"(missing: {', '.join(missing)})"
        )
    return columns


def _lenient_locale(record: list[str], index: int | None) -> str | None:
    # A typo in a locale must not lose the account: it only falls back to English.
    if index is None or index >= len(record):
        return None
    try:
        return normalize_locale(record[index].strip())
    except ValidationFailed:
        return None


def _chunks(rows: Iterator[_Row], size: int) -> Iterator[list[_Row]]:
    chunk: list[_Row] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


_PG_INSERT_ACCOUNTS = text(
    """
    INSERT INTO account (external_id, email, email_key, locale, created_at, updated_at)
    SELECT t.external_id, t.email, t.email_key, t.locale, :now, :now
    FROM unnest(CAST(:external_ids AS varchar[]), CAST(:emails AS varchar[]),
                CAST(:keys AS bytea[]), CAST(:locales AS varchar[]))
         AS t(external_id, email, email_key, locale)
    RETURNING id
    """
)


def _apply_chunk(
    session: Session, chunk: list[_Row], report: ImportReport, *, now: datetime
) -> None:
    latest: dict[str, _Row] = {}
    for row in chunk:  # a repeated external_id: the last row wins
        latest[row.external_id] = row
    existing: dict[str, tuple[int, str, str | None]] = {}
    ids = list(latest)
    columns = select(Account.id, Account.external_id, Account.email, Account.locale)
    if session.get_bind().dialect.name == "postgresql":
        # One array parameter: rendering and parsing an IN list of thousands of
        # placeholders costs more than the query itself.
        wanted = bindparam("ids", ids, type_=ARRAY(String))
        queries = [columns.where(Account.external_id == any_(wanted))]
    else:
        queries = [
            columns.where(Account.external_id.in_(ids[start : start + SELECT_BATCH]))
            for start in range(0, len(ids), SELECT_BATCH)
        ]
    for query in queries:
        for account_id, external_id, email, locale in session.execute(query):
            existing[external_id] = (account_id, email, locale)
    moved: list[int] = []
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    for external_id, row in latest.items():
        current = existing.get(external_id)
        if current is None:
            inserts.append(
                {
                    "external_id": external_id,
                    "email": row.email,
                    "email_key": row.email_key,
                    "locale": row.locale,
                    "created_at": now,
                    "updated_at": now,
                }
            )
        elif (current[1], current[2]) != (row.email, row.locale):
            if current[1] != row.email:
                moved.append(current[0])
            updates.append(
                {
                    "id": current[0],
                    "email": row.email,
                    "email_key": row.email_key,
                    "locale": row.locale,
                    "updated_at": now,
                }
            )
    changed: list[int] = []
    if moved:  # a new address deserves a new chance at delivery
        session.execute(
            update(Account).where(Account.id.in_(moved)).values(undeliverable_at=None),
            execution_options={"synchronize_session": False},
        )
    if inserts and session.get_bind().dialect.name == "postgresql":
        # One statement per chunk: multi-row VALUES batches with RETURNING tripled the
        # import's time on PostgreSQL (the driver splits every huge statement it is given).
        changed += session.scalars(
            _PG_INSERT_ACCOUNTS,
            {
                "external_ids": [row["external_id"] for row in inserts],
                "emails": [row["email"] for row in inserts],
                "keys": [row["email_key"] for row in inserts],
                "locales": [row["locale"] for row in inserts],
                "now": now,
            },
        )
    elif inserts:
        changed += session.execute(
            ACCOUNT_TABLE.insert().returning(ACCOUNT_TABLE.c.id), inserts
        ).scalars()
    if updates:
        session.execute(update(Account), updates)
        changed += [row["id"] for row in updates]
    # The watch list: an account that arrives with (or moves to) a leaked address is
    # flagged in the same transaction, as if the leak had been ingested after it.
    report.flagged += flag_from_watchlist(session, changed, now=now).flagged
    duplicates = len(chunk) - len(latest)
    report.created += len(inserts)
    report.updated += len(updates)
    report.unchanged += len(latest) - len(inserts) - len(updates) + duplicates
