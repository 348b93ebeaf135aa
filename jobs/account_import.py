"""Import the login service's accounts from a CSV file, in chunks, in flat memory.

Each chunk is one transaction through the one account upsert (``service.accounts.
apply_accounts``, a handful of set-based statements), so a million rows take under half a
minute (bench/import_accounts.py), and a failure leaves every earlier chunk committed and
the failing chunk untouched: the report says how far the import got.

A file that names one account twice contradicts itself. The first row naming it is
applied; every later one is refused as a duplicate, by line number, and nothing of it is
applied (``SeenIds``). The rule is the same within a chunk and across chunks, so the counts
and what is stored never depend on the chunk size; "last row wins" would need the file
read twice, since the first row's chunk may commit before the last row is read.
"""

from __future__ import annotations

import csv
import io
import re
import threading
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from itertools import chain, islice
from pathlib import Path
from typing import Any, Final, cast

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from jobs.account_ids import SeenIds
from jobs.reader.csv_records import CsvShape, cut_records
from jobs.reader.encoding import decode_line, detect_encoding, open_text
from service.accounts import (
    MAX_EMAIL_CHARS,
    MAX_LOCAL_PART_OCTETS,
    AccountColumns,
    AccountInput,
    AddressChangeCause,
    UpsertOutcome,
    ValidAccount,
    apply_account_columns,
    check_external_id,
    external_ids_plain,
    local_part_too_long,
    normalize_locale,
    validate_account,
)
from service.addresses import AddressKeys
from service.addresses.canonical import canonical_text
from service.addresses.mailbox import dressed_positions
from service.db import utcnow
from service.errors import JobError, ValidationFailed
from service.runtime import Runtime

DELIMITERS = ",;\t|"
SNIFF_BYTES = 64 * 1024
_BLOCK_BYTES = 256 * 1024
_UTF16_PROBE_BYTES = 4096  # as open_text: enough of the start to tell UTF-16 by its NULs
MAX_REPORTED_LINES = 100
COLUMN_ALIASES = {
    "external_id": {"external_id", "externalid", "external-id", "external id"},
    "email": {"email", "e-mail", "email_address", "email address", "mail"},
    "locale": {"locale", "language", "lang"},
}

# Excel's first line "sep=;" (Excel writes it for ';' locales; an ingest reads it too,
# jobs/reader/formats.py) names the delimiter and stands above the header.
_SEP_LINE: Final = re.compile(r"\ufeff?sep=([^\r\n\"])[ \t]*", re.IGNORECASE)

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


class ImportInterrupted(JobError):
    """A stop signal ended the import after a chunk; the chunks before are committed."""

    def __init__(self, report: ImportReport) -> None:
        super().__init__(
            f"interrupted: rows through line {report.committed_through_line} are imported "
            f"({report.created} created, {report.updated} updated, {report.unchanged} "
            "unchanged), the rest not yet; run the same command again, which is safe: "
            "imported rows come out unchanged"
        )
        self.report = report


@dataclass(slots=True)
class ImportReport:
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    invalid: int = 0
    duplicates: int = 0  # valid rows naming an account an earlier row named: not applied
    flagged: int = 0  # accounts found in a known leak by the watch list
    invalid_lines: list[int] = field(default_factory=list)
    duplicate_lines: list[int] = field(default_factory=list)
    committed_through_line: int = 0

    def add_read(self, tally: _Tally) -> None:
        """Count what reading found up to a chunk (rows read, invalid and duplicate ones
        by line)."""
        self.rows += tally.rows
        self.invalid += tally.invalid
        self.duplicates += tally.duplicates
        room = MAX_REPORTED_LINES - len(self.invalid_lines)
        self.invalid_lines.extend(tally.invalid_lines[:room])
        room = MAX_REPORTED_LINES - len(self.duplicate_lines)
        self.duplicate_lines.extend(tally.duplicate_lines[:room])

    def to_json(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "invalid": self.invalid,
            "duplicates": self.duplicates,
            "flagged": self.flagged,
            "invalid_lines": self.invalid_lines,
            "duplicate_lines": self.duplicate_lines,
        }

    def summary(self) -> str:
        if not self.rows:
            # "0 rows: 0 created, ..." of a file that holds its header alone read like a
            # reading that failed; say what the file held.
            return "0 rows: the file holds a header and no account rows below it; nothing changed"
        text = (
            f"{self.rows} rows: {self.created} created, {self.updated} updated, "
            f"{self.unchanged} unchanged, {self.invalid} invalid"
        )
        if self.duplicates:
            text += f", {self.duplicates} duplicates"
        if self.flagged:
            text += f"; {self.flagged} flagged: their address is in a known leak"
        if self.invalid_lines:
            shown = ", ".join(str(n) for n in self.invalid_lines[:20])
            more = "" if self.invalid <= 20 else f" (and {self.invalid - 20} more)"
            text += f"\ninvalid rows at lines {shown}{more}"
        if self.duplicate_lines:
            shown = ", ".join(str(n) for n in self.duplicate_lines[:20])
            more = "" if self.duplicates <= 20 else f" (and {self.duplicates - 20} more)"
            text += (
                f"\nduplicate rows (their account is named on an earlier line; not applied) "
                f"at lines {shown}{more}"
            )
        return text


@dataclass(slots=True)
class _Tally:
    """What reading found since the last chunk: rows read, and the invalid ones by line."""

    rows: int = 0
    invalid: int = 0
    invalid_lines: list[int] = field(default_factory=list)
    duplicates: int = 0
    duplicate_lines: list[int] = field(default_factory=list)

    def note_invalid(self, line: int) -> None:
        self.invalid += 1
        if len(self.invalid_lines) < MAX_REPORTED_LINES:
            self.invalid_lines.append(line)

    def note_duplicates(self, lines: list[int]) -> None:
        self.duplicates += len(lines)
        self.duplicate_lines.extend(lines[: MAX_REPORTED_LINES - len(self.duplicate_lines)])

    def take(self) -> _Tally:
        """Return what was counted so far and start counting afresh."""
        taken = _Tally(self.rows, self.invalid, self.invalid_lines)
        self.rows, self.invalid, self.invalid_lines = 0, 0, []
        return taken


@dataclass(frozen=True, slots=True)
class _Chunk:
    accounts: AccountColumns  # empty only for what follows the last chunk (invalid rows)
    lines: list[int]  # the line each account starts on
    first_line: int  # where its first and its last account start
    last_line: int
    read: _Tally


@dataclass(frozen=True, slots=True)
class _Batch:
    """What reading a run of CSV records found, by each record's position in the run."""

    starts: list[int]  # the line each record starts on
    valid: list[int]  # positions of the valid accounts, ascending
    accounts: AccountColumns  # those accounts, in that order
    invalid: list[int]  # positions of the invalid records, ascending
    blank: list[int]  # positions of blank lines (not rows at all), ascending

    def count(self, tally: _Tally, start: int, stop: int) -> None:
        """Count the records at positions ``start`` to ``stop`` (excluded) into ``tally``."""
        blank = bisect_left(self.blank, stop) - bisect_left(self.blank, start)
        tally.rows += stop - start - blank
        for position in self.invalid[
            bisect_left(self.invalid, start) : bisect_left(self.invalid, stop)
        ]:
            tally.note_invalid(self.starts[position])


def import_accounts(
    runtime: Runtime,
    path: Path,
    *,
    chunk_rows: int | None = None,
    on_progress: Callable[[int], object] | None = None,
    stop: threading.Event | None = None,
) -> ImportReport:
    """Upsert every account in the CSV at ``path`` by external_id; commit chunk by chunk.

    Safe to run twice: the second run reports every row unchanged. ``stop``, once set (a
    signal), ends the run after the chunk being committed with ImportInterrupted (its
    report: what is committed). Raises ImportFileError for an unusable file and
    ImportAborted (with the partial report) if a chunk fails.
    """
    size = chunk_rows or runtime.settings.import_chunk_rows
    report = ImportReport()
    seen = SeenIds(expected=_expected_rows(path))
    for item in _read_ahead(_first_of_each(_chunks(runtime, path, size), seen)):
        report.add_read(item.read)
        rows = len(item.accounts.external_ids)
        if not rows:
            continue
        try:
            with runtime.db.transaction() as session:
                _apply_chunk(session, item.accounts, report, now=utcnow())
        except SQLAlchemyError as exc:
            reason = str(getattr(exc, "orig", exc) or exc).splitlines()[0]
            raise ImportAborted(
                f"stopped at line {item.first_line}: the database refused the chunk "
                f"({reason}); rows through line {report.committed_through_line} are imported",
                report,
            ) from exc
        report.committed_through_line = item.last_line
        if on_progress is not None:
            on_progress(rows)
        if stop is not None and stop.is_set():
            raise ImportInterrupted(report)
    return report


# The shortest row that holds an account ("i,a@b.cd" and its line end): a file of N bytes
# has fewer than N / 10 accounts, so SeenIds sized for that many never overfills.
_MIN_ROW_BYTES: Final = 10


def _expected_rows(path: Path) -> int:
    try:
        return path.stat().st_size // _MIN_ROW_BYTES
    except OSError:
        return 0  # the reading says why


def _first_of_each(chunks: Iterator[_Chunk], seen: SeenIds) -> Iterator[_Chunk]:
    """``chunks`` without the accounts an earlier row of the file named (within the chunk
    or in an earlier one), those counted as duplicates by line number."""
    for chunk in chunks:
        repeated = seen.add_new(chunk.accounts.external_ids)
        if not repeated:
            yield chunk
            continue
        chunk.read.note_duplicates([chunk.lines[n] for n in repeated])
        gone = set(repeated)
        keep = [n for n in range(len(chunk.lines)) if n not in gone]
        lines = [chunk.lines[n] for n in keep]
        yield _Chunk(
            chunk.accounts.take(keep),
            lines,
            lines[0] if lines else chunk.first_line,
            lines[-1] if lines else chunk.last_line,
            chunk.read,
        )


def _read_batches(runtime: Runtime, path: Path, size: int) -> Iterator[_Batch]:
    """Read the CSV at ``path`` in runs of ``size`` records, each checked and keyed at once."""
    try:
        with open_text(path) as handle:
            sample = handle.read(SNIFF_BYTES)
        raw = path.open("rb")
    except OSError as exc:
        raise ImportFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    with raw:
        shape = CsvShape.of(_sniff(sample))
        batches = _text_lines(raw, path)
        head = next(batches, [])
        above = 0  # lines above the header: Excel's "sep=" line
        sep_line = None
        if head and _SEP_LINE.fullmatch(head[0].rstrip("\r\n")):
            above = 1
            sep_line = head[0].strip().lstrip("\ufeff")
            head = head[1:] or next(batches, [])
        if not head or not head[0].strip():
            raise ImportFileError(
                _no_header(path, sep_line, blank_line=above + 1 if head else None)
            )
        # The header is its first line, read alone: a stray quote in it cannot swallow rows.
        columns = _header_columns(csv.reader(head[:1], shape.dialect), path)
        checker = _BatchChecker(runtime.keys, columns)
        # Each text is one record (``csv_records``): a stray quote costs its own line only.
        queued: deque[Sequence[int]] = deque()

        def texts() -> Iterator[Sequence[str]]:
            for records, starts in cut_records(
                chain([head[1:]], batches),
                shape,
                columns=shape.columns(head[0]),
                first_line=2 + above,
                with_ends=True,
            ):
                queued.append(starts)
                yield records

        reader = csv.reader(chain.from_iterable(texts()), shape.dialect)
        # The line each record starts on, in step with the reader: a record's starts are
        # queued before its text reaches the reader.
        starts = chain.from_iterable(iter(queued.popleft, None))
        while True:
            records, lines = _read_records(reader, starts, size)
            if not records:
                return
            yield checker.check(records, lines)


def _text_lines(raw: io.BufferedReader, path: Path) -> Iterator[list[str]]:
    """The lines of ``raw`` exactly as ``open_text`` reads them, in lists of a block each.

    ``open_text`` decodes line by line (UTF-8, else Windows-1252), a few Python calls per
    line; a block that is valid UTF-8 as a whole is valid line by line ("\n" and "\r"
    never occur inside a multi-byte sequence), so it is decoded in one call and split by
    ``io.StringIO`` with ``newline=""``, which splits at LF, CRLF and CR as ``open_text``
    does. Other blocks are split the same way and decoded line by line with
    ``decode_line``. UTF-16 and UTF-32 files are left to ``open_text``.
    """
    codec, bom = detect_encoding(raw.peek(_UTF16_PROBE_BYTES)[:_UTF16_PROBE_BYTES])
    if codec != "utf-8":
        # As open_text reads them, on the handle the caller closes.
        text = io.TextIOWrapper(raw, encoding=codec, errors="replace", newline="")
        return iter(partial(text.readlines, _BLOCK_BYTES), [])
    raw.read(bom)
    return _text_blocks(raw, path)


def _text_blocks(raw: io.BufferedReader, path: Path) -> Iterator[list[str]]:
    rest = b""
    while True:
        try:
            data = raw.read(_BLOCK_BYTES)
        except OSError as exc:
            raise ImportFileError(f"cannot read {path}: {exc.strerror or exc}") from None
        if not data:
            block, rest = rest, b""
        else:
            data = rest + data
            # Cut after the last LF, so no CRLF is split; without one, after the last CR
            # that is not the final byte (a CR-only file), else read on.
            cut = data.rfind(b"\n") + 1 or data.rfind(b"\r", 0, len(data) - 1) + 1
            if not cut:
                rest = data
                continue
            block, rest = data[:cut], data[cut:]
        if not block:
            return
        try:
            yield io.StringIO(block.decode("utf-8"), newline="").readlines()
        except UnicodeDecodeError:
            yield [
                decode_line(line.encode("latin-1"))
                for line in io.StringIO(block.decode("latin-1"), newline="")
            ]


# A record csv.reader could not read at all: invalid, and not blank (its line was not).
_BROKEN: list[str] = ["\0"]


def _read_records(
    reader: Any, starts: Iterator[int], count: int
) -> tuple[list[list[str]], list[int]]:
    """Read up to ``count`` records and the line each starts on (the next of ``starts``:
    one a record); fewer only at the end."""
    records: list[list[str]] = []
    lines: list[int] = []
    add_record, add_line = records.append, lines.append
    while True:
        try:
            for record in islice(reader, count - len(records)):
                add_record(record)
                add_line(next(starts))
        except csv.Error:
            add_record(_BROKEN)
            add_line(next(starts))
            if len(records) < count:
                continue
        return records, lines


class _BatchChecker:
    """Check and key a run of records the way ``validate_account`` checks one row.

    The common row (a plain ASCII id, a plain addr-spec, a locale seen before) is checked
    batch-wise: one test of all ids, one regular expression over all addresses, a cached
    answer per distinct locale; then its canonical form and key. Anything else (dressing,
    non-ASCII, a short or broken record, a blank line) takes ``_check_one``, the row-by-row
    path, so every row gets exactly the answer ``validate_account`` gives it.
    """

    def __init__(self, keys: AddressKeys, columns: dict[str, int]) -> None:
        self._keys = keys
        self._columns = columns
        self._id = columns["external_id"]
        self._email = columns["email"]
        self._locale = columns.get("locale")
        self._needed = max(self._id, self._email) + 1
        self._width = max(self._needed, (self._locale or 0) + 1)
        self._padding = [""] * self._width
        self._locales: dict[str, str | None] = {}

    def check(self, records: list[list[str]], starts: list[int]) -> _Batch:
        width = self._width
        if min(map(len, records)) < width:
            # Records too short to index: padded here, each decided by _check_one (a missing
            # locale column alone is no fault there).
            work = [record if len(record) >= width else self._padding for record in records]
            slow = [n for n, record in enumerate(records) if len(record) < width]
        else:
            work = records
            slow = []
        id_at, email_at = self._id, self._email
        external_ids = [record[id_at].strip() for record in work]
        emails = [record[email_at].strip() for record in work]
        if not external_ids_plain(external_ids):
            slow += [n for n, value in enumerate(external_ids) if not _plain_id(value)]
        slow += dressed_positions(emails)
        longest = max(map(len, emails))
        if longest > MAX_EMAIL_CHARS:
            slow += [n for n, value in enumerate(emails) if len(value) > MAX_EMAIL_CHARS]
        if longest > MAX_LOCAL_PART_OCTETS + 2:  # "@" and a domain: a local part may be over
            slow += [n for n, value in enumerate(emails) if local_part_too_long(value)]
        locales = self._read_locales(work)
        if _BAD_LOCALE in locales:
            # Refused as a whole row by _check_one, as the API refuses the account.
            slow += [n for n, value in enumerate(locales) if value is _BAD_LOCALE]
        rules = self._keys.rules
        # The rows left to _check_one get their canonical form there, not twice.
        canonical: list[str | None] = []
        done = 0
        for position in sorted(set(slow)):
            canonical += [canonical_text(value, rules) for value in emails[done:position]]
            canonical.append(None)
            done = position + 1
        canonical += [canonical_text(value, rules) for value in emails[done:]]

        slow_valid: dict[int, ValidAccount] = {}
        blank: list[int] = []
        invalid_slow: list[int] = []
        for position in sorted(set(slow)):
            outcome = self._check_one(records[position])
            if isinstance(outcome, ValidAccount):
                slow_valid[position] = outcome
                external_ids[position] = outcome.external_id
                emails[position] = outcome.email
                locales[position] = outcome.locale
                # Keyed below like the others, then given its own key.
                canonical[position] = ""
                continue
            canonical[position] = None
            (blank if outcome is _BLANK else invalid_slow).append(position)

        if None in canonical:
            valid = [n for n, value in enumerate(canonical) if value is not None]
            gone = set(invalid_slow) | set(blank)
            invalid = sorted(
                [n for n, value in enumerate(canonical) if value is None and n not in gone]
                + invalid_slow
            )
            accounts = AccountColumns(
                [external_ids[n] for n in valid],
                [emails[n] for n in valid],
                list(map(self._keys.hasher.hash, cast(list[str], [canonical[n] for n in valid]))),
                [locales[n] for n in valid],
            )
        else:
            valid = list(range(len(records)))
            invalid = []
            accounts = AccountColumns(
                external_ids,
                emails,
                list(map(self._keys.hasher.hash, cast(list[str], canonical))),
                locales,
            )
        for position, account in slow_valid.items():
            accounts.email_keys[bisect_left(valid, position)] = account.email_key
        return _Batch(starts, valid, accounts, invalid, blank)

    def _read_locales(self, records: list[list[str]]) -> list[str | None]:
        """Each record's locale as stored; ``_BAD_LOCALE`` for one that is no language tag."""
        if self._locale is None:
            return [None] * len(records)
        at, known = self._locale, self._locales
        cells = [record[at] for record in records]
        if not all(map(known.__contains__, cells)):
            missing = set(cells) - known.keys()
            if len(known) + len(missing) > MAX_KNOWN_LOCALES:
                # A file with junk in the locale column: answers stay exact, memory flat.
                known.clear()
                if len(missing) > MAX_KNOWN_LOCALES:
                    return [_checked_locale(cell) for cell in cells]
            for cell in missing:
                known[cell] = _checked_locale(cell)
        return list(map(known.__getitem__, cells))

    def _check_one(self, record: list[str]) -> ValidAccount | _Blank | None:
        """The row-by-row check: an account, _BLANK for a blank line, None for invalid."""
        if record is _BROKEN:
            return None
        if not "".join(record).strip():  # blank line, or only empty cells
            return _BLANK
        if len(record) < self._needed:
            return None
        locale_at = self._locale
        item = AccountInput(
            external_id=record[self._id].strip(),
            email=record[self._email],
            locale=(
                record[locale_at].strip()
                if locale_at is not None and locale_at < len(record)
                else None
            ),
        )
        try:
            return validate_account(item, self._keys)
        except ValidationFailed:
            return None


class _Blank:
    """A blank line: not a row at all."""


_BLANK = _Blank()
MAX_KNOWN_LOCALES = 1000


def _plain_id(external_id: str) -> bool:
    try:
        check_external_id(external_id)
    except ValidationFailed:
        return False
    return True


def _sniff(sample: str) -> type[csv.Dialect] | str:
    lines = sample.splitlines()
    named = _SEP_LINE.fullmatch(lines[0]) if lines else None
    if named is not None:
        return type("_Named", (csv.excel,), {"delimiter": named.group(1)})
    # The first lines are enough, and a truncated last line would only confuse the sniffer.
    head = "\n".join(lines[:20])
    try:
        dialect = csv.Sniffer().sniff(head, DELIMITERS)
    except csv.Error:
        return "excel"
    # The sniffer turns doublequote off unless its sample happens to hold a "" escape, and
    # then a later "Smith, ""J""" splits at the comma and shifts every column after it.
    # Exporters write a quote inside a quoted field as "" (RFC 4180): always read it so.
    dialect.doublequote = True
    return dialect


def _no_header(path: Path, sep_line: str | None, *, blank_line: int | None) -> str:
    """Why a file without a header line holds nothing to import, in words true of it.

    A file of Excel's ``sep=;`` line alone, or of a byte-order mark alone, was called
    "empty", and a blank line where the header belongs was read as a header naming
    nothing ("missing: external_id, email"). ``blank_line``: the number of the blank line
    where the header should be; None when no line follows (``sep_line``, if any).
    """
    wanted = (
        "the header must come first (below a sep= line, if any) and name the columns "
        "external_id and email"
    )
    if blank_line is not None:
        where = "below Excel's sep= line" if sep_line else "the first line"
        return f"{path} holds no header: line {blank_line} ({where}) is blank; {wanted}"
    if sep_line is not None:
        # The line matched _SEP_LINE: "sep=" and one delimiter, never account data.
        return f"{path} holds only Excel's {sep_line!r} line: no header and no accounts"
    if _file_size(path) > 0:
        # Bytes but no line: all the file held was the byte-order mark open_text skips.
        return f"{path} holds only a byte-order mark: no header and no accounts"
    return f"{path} is empty: no header and no accounts"


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _header_columns(reader: Any, path: Path) -> dict[str, int]:
    try:
        header = next(reader)
    except csv.Error:
        raise ImportFileError(f"{path}: the first line is not a CSV header") from None
    names = [cell.strip().strip('"').lower() for cell in header]
    columns: dict[str, int] = {}
    for column, aliases in COLUMN_ALIASES.items():
        found = [index for index, name in enumerate(names) if name in aliases]
        if len(found) > 1:
            # Two columns for one field ("email" and "e-mail": the old and the new address
            # side by side, say): taking either silently could file every account under
            # the wrong address, as the API refuses a member given twice.
            raise ImportFileError(
                f"{path}: the header names {column} more than once (columns "
                f"{', '.join(str(index + 1) for index in found)}); keep one of them"
            )
        if found:
            columns[column] = found[0]
    missing = [name for name in ("external_id", "email") if name not in columns]
    if missing:
        # Never echo the line: without a header it is the first account's data.
        raise ImportFileError(
            f"{path}: the header must name the columns external_id and email "
            f"(missing: {', '.join(missing)})"
        )
    return columns


# A locale that is no language tag. It was once stored as none, silently: the person's
# notices went out in English and nobody learnt of the typo. Now the row is refused and
# reported by line like a bad address, as the API refuses the account, and the operator
# fixes the file.
_BAD_LOCALE: Final = "\0bad locale"


def _checked_locale(cell: str) -> str | None:
    try:
        return normalize_locale(cell.strip())
    except ValidationFailed:
        return _BAD_LOCALE


def _chunks(runtime: Runtime, path: Path, size: int) -> Iterator[_Chunk]:
    """Cut the valid accounts into chunks of exactly ``size`` (the last one: what is left).

    Each chunk's tally counts what was read up to its last account, so a refused chunk's
    report says how far reading got, as row-by-row reading did.
    """
    tally = _Tally()
    pending: list[AccountColumns] = []
    lines: list[int] = []
    pending_rows = 0
    first_line = last_line = 0
    for batch in _read_batches(runtime, path, size):
        start = taken = 0  # records counted, and valid accounts put in chunks
        while pending_rows + len(batch.valid) - taken >= size:
            stop = taken + size - pending_rows
            last = batch.valid[stop - 1]
            batch.count(tally, start, last + 1)
            if not pending:
                first_line = batch.starts[batch.valid[taken]]
            pending.append(batch.accounts.slice(taken, stop))
            lines += [batch.starts[n] for n in batch.valid[taken:stop]]
            yield _Chunk(_joined(pending), lines, first_line, batch.starts[last], tally.take())
            pending, lines, pending_rows = [], [], 0
            start, taken = last + 1, stop
        batch.count(tally, start, len(batch.starts))
        if taken < len(batch.valid):
            if not pending:
                first_line = batch.starts[batch.valid[taken]]
            pending.append(batch.accounts.slice(taken, len(batch.valid)))
            lines += [batch.starts[n] for n in batch.valid[taken:]]
            pending_rows += len(batch.valid) - taken
            last_line = batch.starts[batch.valid[-1]]
    yield _Chunk(_joined(pending), lines, first_line, last_line, tally.take())


def _joined(parts: list[AccountColumns]) -> AccountColumns:
    if len(parts) == 1:
        return parts[0]
    return AccountColumns(
        [value for part in parts for value in part.external_ids],
        [value for part in parts for value in part.emails],
        [value for part in parts for value in part.email_keys],
        [value for part in parts for value in part.locales],
    )


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
    session: Session, chunk: AccountColumns, report: ImportReport, *, now: datetime
) -> None:
    # Distinct external ids: _first_of_each took the repeated ones out.
    applied = apply_account_columns(
        session, chunk, now=now, cause=AddressChangeCause.ACCOUNT_IMPORT
    )
    outcomes = list(applied.outcomes.values())
    report.created += outcomes.count(UpsertOutcome.CREATED)
    report.updated += outcomes.count(UpsertOutcome.UPDATED)
    report.unchanged += outcomes.count(UpsertOutcome.UNCHANGED)
    report.flagged += applied.flagged
