"""Cut a CSV's physical lines into records, so that one stray quote cannot swallow the file.

The csv module reads a quoted field across line ends until its closing quote: RFC 4180
section 2.6 allows a line break inside a quoted field, and exporters write notes that way.
But a stray ``"`` (a name typed as ``"Mallory``) then swallows every line after it up to the
next quote, or to the end of the file, and those rows vanish without a count. Both CSV
readers (the leak ingest, ``jobs.reader.formats``, and the accounts import,
``jobs.account_import``) cut their lines into records here first and hand the csv module
one record at a time, so each record is exactly one row (or one csv.Error) at a known line.

The rule: a line that ends inside a quoted field joins the lines after it only while the
quoted field closes within ``MAX_RECORD_LINES`` lines and ``MAX_RECORD_CHARS`` characters
AND the joined record has the expected number of columns (the header's) with every quoted
field closed by a delimiter or the end (RFC 4180, not a quote running on into text); otherwise the
line is a record on its own (the csv module reads its open field to the line's end) and
reading goes on at the next physical line.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final, cast

# A quoted note spanning a few lines is common; a record of more than this is a stray quote.
MAX_RECORD_LINES: Final = 100
MAX_RECORD_CHARS: Final = 64 * 1024
_LINE_END: Final = "(?:\r\n|\r|\n)?"


@dataclass(frozen=True, slots=True)
class CsvShape:
    """How the csv module reads the quotes of a dialect, as one check per line.

    ``closed(text)`` says whether ``text`` (a line, or lines joined) ends outside any quoted
    field, exactly as ``csv.reader`` with the dialect would read it (non-strict mode: after
    a closing quote, the rest of the field is literal; a quote inside an unquoted field is
    literal; ``""`` inside a quoted field is a quote).
    """

    quotechar: str | None
    pattern: re.Pattern[str] | None
    # Lines joined with their ends, each closed on its own: one C pass for a whole batch.
    lines_pattern: re.Pattern[str] | None
    dialect: Any  # the reader's own dialect object (_csv.Dialect), with every option in it

    @classmethod
    def of(cls, dialect: Any = "excel", **options: Any) -> CsvShape:
        """Build the shape of ``dialect`` with ``csv.reader``'s keyword ``options``."""
        probe = csv.reader([], dialect, **options).dialect
        quote = probe.quotechar
        if quote is None or probe.quoting == csv.QUOTE_NONE or probe.escapechar is not None:
            # No quoting, or an escape character: records never span lines in the files
            # this reads (the sniffer never guesses an escape character).
            return cls(None, None, None, probe)
        q, d = re.escape(quote), re.escape(probe.delimiter)
        space = " *+" if probe.skipinitialspace else ""

        def record(within: str) -> str:
            """A record's pattern; ``within``: what a quoted field may hold but quotes."""
            inner = f"(?:[^{q}{within}]|{q}{q})*+" if probe.doublequote else f"[^{q}{within}]*+"
            field = f"{space}(?:{q}{inner}{q}[^{d}\r\n]*+|[^{q}{d}\r\n][^{d}\r\n]*+|)"
            return f"{field}(?:{d}{field})*+"

        pattern = re.compile(f"{record('')}{_LINE_END}")
        line = record("\r\n")
        lines_pattern = re.compile(f"(?:{line}(?:\r\n|\r|\n))*+{line}")
        return cls(quote, pattern, lines_pattern, probe)

    def closed(self, text: str) -> bool:
        """Say whether ``text`` ends outside a quoted field."""
        pattern, quote = self.pattern, self.quotechar
        if pattern is None or quote is None or quote not in text:
            return True
        return pattern.fullmatch(text) is not None

    def columns(self, text: str) -> int:
        """Return how many columns the csv module reads in the record ``text``, -1 if a
        quoted field in it is not closed the RFC 4180 way (by a delimiter or the end)."""
        try:
            # Strict: in '"A,a@x.org ... "B,b@x.org' the second stray quote "closes" the
            # first, but a real quoted field is never followed by more text.
            return len(next(csv.reader([text], self.dialect, strict=True), []))
        except csv.Error:
            return -1


def cut_records(
    batches: Iterable[Sequence[str]],
    shape: CsvShape,
    *,
    columns: int,
    first_line: int = 1,
    with_ends: bool = False,
) -> Iterator[tuple[Sequence[str], Sequence[int]]]:
    """Yield, batch by batch, the CSV records of the physical lines and the line each starts on.

    ``batches``: the lines in file order, numbered from ``first_line``; ``with_ends``: each
    line keeps its line end (else a record's lines are joined with "\\n"). ``columns``: the
    columns of a record (the header's); 0 accepts any number. Every physical line belongs to
    exactly one record, and a batch in which no line ends inside a quoted field is passed on
    as it is (the common case costs one scan for the quote character).
    """
    join = "".join if with_ends else "\n".join
    line = first_line  # the number of the next line to come
    pending: list[str] = []  # the lines of a record still open at the end of a batch
    for batch in batches:
        if pending:
            work: Sequence[str] = [*pending, *batch]
            start = line - len(pending)
        else:
            work, start = batch, line
        line += len(batch)
        texts, starts, pending = _cut(work, start, shape, columns, join, final=False)
        if texts:
            yield texts, starts
    if pending:  # the file ended inside the record
        texts, starts, _ = _cut(pending, line - len(pending), shape, columns, join, final=True)
        yield texts, starts


def _cut(
    work: Sequence[str],
    start: int,
    shape: CsvShape,
    columns: int,
    join: Callable[[Iterable[str]], str],
    *,
    final: bool,
) -> tuple[Sequence[str], Sequence[int], list[str]]:
    """Cut ``work`` (lines numbered from ``start``) into records; return them, the lines
    they start on, and the lines of a record left open at the end (unless ``final``)."""
    quote, closed = shape.quotechar, shape.closed
    if quote is None or shape.lines_pattern is None:
        return work, range(start, start + len(work)), []
    text = join(work)
    if quote not in text or shape.lines_pattern.fullmatch(text) is not None:
        return work, range(start, start + len(work)), []
    opened = [index for index, text in enumerate(work) if quote in text and not closed(text)]
    if not opened:
        return work, range(start, start + len(work)), []
    texts: list[str] = []
    starts: list[int] = []
    position = 0
    for index in opened:
        if index < position:
            continue  # inside a record already joined
        texts.extend(work[position:index])
        starts.extend(range(start + position, start + index))
        end = _closing_line(work, index, shape, final=final)
        if end is None:  # the lines ran out while the record may still close
            return texts, starts, list(work[index:])
        position = index + 1
        if end > index:
            record = join(work[index : end + 1])
            if not columns or shape.columns(record) == columns:
                texts.append(record)
                starts.append(start + index)
                position = end + 1
                continue
        # A stray quote: the line is a record on its own, its open field read to the line's
        # end (closed here, so that the csv module does not read on into the next record),
        # and the next line is read afresh.
        texts.append(work[index].rstrip("\r\n") + quote)
        starts.append(start + index)
    texts.extend(work[position:])
    starts.extend(range(start + position, start + len(work)))
    return texts, starts, []


def _closing_line(work: Sequence[str], index: int, shape: CsvShape, *, final: bool) -> int | None:
    """Return the line that closes the quoted field open at the end of ``work[index]``;
    ``index`` itself if none does within the bounds, None if ``work`` ends first."""
    quote = cast(str, shape.quotechar)
    chars = len(work[index])
    last = min(len(work), index + MAX_RECORD_LINES)
    for end in range(index + 1, last):
        text = work[end]
        chars += len(text) + 1
        if chars > MAX_RECORD_CHARS:
            return index
        # Inside a quoted field at the start of a line reads as a quote opening a field
        # there: the record closes on this line if the line, after a quote, ends closed.
        if quote in text and shape.closed(quote + text):
            return end
    if last == len(work) and not final and last - index < MAX_RECORD_LINES:
        return None
    return index
