"""Import the login service's accounts from a CSV file, in chunks, in flat memory.

Each chunk is one transaction through the one account upsert (``service.accounts.
apply_accounts``, a handful of set-based statements), so a million rows take under half a
minute (bench/import_accounts.py), and a failure leaves every earlier chunk committed and
the failing chunk untouched: the report says how far the import got.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from jobs.reader.encoding import open_text
from service.accounts import (
    AccountInput,
    AddressChangeCause,
    UpsertOutcome,
    ValidAccount,
    apply_accounts,
    normalize_locale,
    validate_account,
)
from service.db import utcnow
from service.errors import JobError, ValidationFailed
from service.runtime import Runtime

DELIMITERS = ",;\t|"
SNIFF_BYTES = 64 * 1024
MAX_REPORTED_LINES = 100
COLUMN_ALIASES = {
    "external_id": {"external_id", "externalid", "external-id", "external id"},
    "email": {"email", "e-mail", "email_address", "email address", "mail"},
    "locale": {"locale", "language", "lang"},
}

# A 10 MB field is a broken file, not an account; the csv module's default (128 KiB)
# is far above any real row, so keep it and count the row invalid.
csv.field_size_limit(128 * 1024)


class ImportFileError(JobError):
    """The file cannot be imported at all (unreadable, no usable header)."""


class ImportAborted(JobError):
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

    def add_read(self, tally: _Tally) -> None:
        """Count what reading found up to a chunk (rows read, invalid ones by line)."""
        self.rows += tally.rows
        self.invalid += tally.invalid
        room = MAX_REPORTED_LINES - len(self.invalid_lines)
        self.invalid_lines.extend(tally.invalid_lines[:room])

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
    account: ValidAccount


@dataclass(slots=True)
class _Tally:
    """What reading found since the last chunk: rows read, and the invalid ones by line."""

    rows: int = 0
    invalid: int = 0
    invalid_lines: list[int] = field(default_factory=list)

    def note_invalid(self, line: int) -> None:
        self.invalid += 1
        if len(self.invalid_lines) < MAX_REPORTED_LINES:
            self.invalid_lines.append(line)

    def take(self) -> _Tally:
        """Return what was counted so far and start counting afresh."""
        taken = _Tally(self.rows, self.invalid, self.invalid_lines)
        self.rows, self.invalid, self.invalid_lines = 0, 0, []
        return taken


@dataclass(frozen=True, slots=True)
class _Chunk:
    rows: list[_Row]  # empty only for what follows the last chunk (invalid rows at the end)
    read: _Tally


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
    for item in _read_ahead(_chunks(runtime, path, size)):
        report.add_read(item.read)
        chunk = item.rows
        if not chunk:
            continue
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


def _read_rows(runtime: Runtime, path: Path, tally: _Tally) -> Iterator[_Row]:
    try:
        handle = open_text(path)
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
                tally.rows += 1
                tally.note_invalid(line)
                continue
            end = reader.line_num
            if not "".join(record).strip():  # blank line, or only empty cells
                continue
            tally.rows += 1
            if len(record) < needed:
                tally.note_invalid(line)
                continue
            item = AccountInput(
                external_id=record[columns["external_id"]].strip(),
                email=record[columns["email"]],
                locale=_lenient_locale(record, columns.get("locale")),
            )
            try:
                account = validate_account(item, keys)
            except ValidationFailed:
                tally.note_invalid(line)
                continue
            yield _Row(line, account)


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


def _chunks(runtime: Runtime, path: Path, size: int) -> Iterator[_Chunk]:
    tally = _Tally()
    chunk: list[_Row] = []
    for row in _read_rows(runtime, path, tally):
        chunk.append(row)
        if len(chunk) >= size:
            yield _Chunk(chunk, tally.take())
            chunk = []
    yield _Chunk(chunk, tally.take())


def _read_ahead(chunks: Iterator[_Chunk]) -> Iterator[_Chunk]:
    """Yield ``chunks``, reading the next one in a thread while the caller applies this one.

    Reading and keying a chunk is Python work; applying it is mostly waiting for the
    database, which releases the GIL: the two overlap, on two cores. An error in reading
    is raised here, in the caller's thread, in its place in the sequence.
    """
    with ThreadPoolExecutor(1, thread_name_prefix="import-reader") as reader:
        pending = reader.submit(next, chunks, None)
        while (chunk := pending.result()) is not None:
            pending = reader.submit(next, chunks, None)
            yield chunk


def _apply_chunk(
    session: Session, chunk: list[_Row], report: ImportReport, *, now: datetime
) -> None:
    latest: dict[str, ValidAccount] = {}
    for row in chunk:  # a repeated external_id: the last row wins
        latest[row.account.external_id] = row.account
    applied = apply_accounts(
        session, list(latest.values()), now=now, cause=AddressChangeCause.ACCOUNT_IMPORT
    )
    outcomes = list(applied.outcomes.values())
    report.created += outcomes.count(UpsertOutcome.CREATED)
    report.updated += outcomes.count(UpsertOutcome.UPDATED)
    report.unchanged += outcomes.count(UpsertOutcome.UNCHANGED) + len(chunk) - len(latest)
    report.flagged += applied.flagged
