"""Stream the address occurrences out of a leak file, whatever shape it arrived in.

A leak reaches the operator as a forwarded mass mail, a paste-site CSV, a 40 GB combo list
or a gzip of JSON lines. ``open_leak`` works out the container (gzip, bz2, xz, by magic
bytes), the encoding (UTF-8 with or without BOM, UTF-16/32 with BOM, UTF-16 without one by
its NUL pattern) and the format, from at most the first 64 KiB of text; ``batches()`` then
streams the records in file order as ``RecordBatch``es (the ingest's way: no object per
record), ``records()`` the same records one ``LeakRecord`` each. Nothing is decompressed
to disk, and memory stays bounded whatever the input: no line is held longer than
``MAX_LINE_BYTES``. A longer line is never dropped silently: free text and mail read it in
pieces cut between addresses; a line format counts it as one invalid record (``LONG_LINE``,
``LeakReader.long_lines``), since none of its records is that long.

This module does not canonicalize or validate addresses (``service.emails`` does); it
reports where each candidate was found and never puts file content in an error message.
"""

from __future__ import annotations

import bz2
import codecs
import gzip
import hashlib
import lzma
import os
import re
import stat
import weakref
import zlib
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, replace
from enum import StrEnum
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Final, cast

from jobs.reader.encoding import decode_line, decode_lines, detect_encoding
from jobs.reader.formats import (
    LONG_LINE,
    CsvLayout,
    LeakRecord,
    LinePiece,
    RecordBatch,
    batch_records,
    combo_batches,
    csv_batches,
    eml_records,
    json_layout,
    json_records,
    jsonl_batches,
    lines_batches,
    looks_like_combo,
    looks_like_eml,
    sniff_csv,
    text_records,
)
from service.errors import JobError
from service.leaks.wording import CLI_WORDS

__all__ = [
    "MAX_LINE_BYTES",
    "FileDigests",
    "LeakFileError",
    "LeakFormat",
    "LeakReader",
    "LeakRecord",
    "LeakSource",
    "RecordBatch",
    "TruncatedStream",
    "check_regular_file",
    "expanded_bytes",
    "file_digests",
    "open_leak",
    "shown_path",
]

# One constant for both: a line inside one block can then never exceed the cap, so only the
# line carried across blocks needs cutting, and every line keeps exactly its first 64 KiB.
MAX_LINE_BYTES: Final = 64 * 1024
# The reason of a format the operator chose; a face shows it in its own words
# (service/leaks/wording.py: OptionWords.format_given).
FORMAT_GIVEN: Final = CLI_WORDS.format_given
_BLOCK_BYTES: Final = MAX_LINE_BYTES
SNIFF_BYTES: Final = 64 * 1024

_UNSUPPORTED: Final = (
    (b"PK\x03\x04", "a zip archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7z archive"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed"),
    (b"Rar!\x1a\x07", "a rar archive"),
)
# Files that hold the leak in a form this reader cannot see through: read as text, their
# structure would pass for records (or hide the addresses), so each is refused saying what
# to do instead.
_CONVERT_FIRST: Final = (
    (
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",
        "an Outlook .msg (OLE2) file; save the mail as .eml (or the folder as mbox) and "
        "ingest that",
    ),
    (b"%PDF-", "a PDF document; extract its text first (pdftotext) and ingest that"),
)
# A tar archive, plain or inside gzip, bz2 or xz: its header's magic at byte 257 (POSIX
# ustar, GNU tar). Read as text, its files ran together into one leak, headers and all.
_TAR_MAGIC_AT: Final = 257
_TAR_MAGIC: Final = b"ustar"
# Stream errors of the decompressors: a truncated stream is EOFError, a corrupt one OSError
# (gzip.BadGzipFile, bz2), zlib.error or lzma.LZMAError.
_STREAM_ERRORS: Final = (OSError, EOFError, zlib.error, lzma.LZMAError)


class LeakFormat(StrEnum):
    """The shape of a leak file; AUTO asks ``open_leak`` to detect it (TEXT never is)."""

    AUTO = "auto"
    LINES = "lines"
    CSV = "csv"
    COMBO = "combo"
    JSONL = "jsonl"
    JSON = "json"  # any other JSON layout: read streaming, never split
    EML = "eml"
    TEXT = "text"


class LeakFileError(JobError):
    """The file cannot be read at all (missing, a directory, unreadable, corrupt compression
    stream, CSV without an email column...). Message: one line, never file content."""


class TruncatedStream(LeakFileError):
    """The compressed stream ends before its end marker: the file was cut (an interrupted
    download or copy). ``LeakReader`` ends its records there rather than raising this."""


@dataclass(frozen=True, slots=True)
class LeakSource:
    """What ``open_leak`` found: the concrete format (never AUTO), container and encoding."""

    format: LeakFormat
    compression: str | None
    encoding: str
    size: int
    # Why this format: what detection saw, or that the operator chose it (FORMAT_GIVEN).
    reason: str = FORMAT_GIVEN


@dataclass(frozen=True, slots=True)
class _Identity:
    device: int
    inode: int
    size: int


def open_leak(path: Path, fmt: LeakFormat = LeakFormat.AUTO) -> LeakReader:
    """Open the leak file at ``path`` and work out its container, encoding and format.

    Reads at most the first 64 KiB of decompressed text. Raises LeakFileError when the file
    is missing, not a regular file, unreadable, in an unsupported archive format, or a CSV
    (asked for or detected) has no address column. A stream that breaks later is reported by
    ``records()``, after the records before the break.
    """
    path = Path(path)
    fmt = LeakFormat(fmt)
    identity = _identify(path)
    with ExitStack() as stack:
        read, compression, _ = _open_stream(path, identity, stack)
        try:
            first = _read_block(read, path)
        except LeakFileError:
            first = b""  # records() reports the broken stream, after what came before it
        if first[_TAR_MAGIC_AT : _TAR_MAGIC_AT + len(_TAR_MAGIC)] == _TAR_MAGIC:
            what = "a tar archive" if compression is None else f"a {compression}-compressed tar"
            raise LeakFileError(
                f"{_shown(path)}: {what}; extract it first and ingest each file of it"
            )
        codec, _ = detect_encoding(first)
        sample, complete = _sample(_decoded_blocks(read, path, first))
    lines = _sample_lines(sample, complete=complete)
    layout: CsvLayout | None = None
    reason = FORMAT_GIVEN
    if fmt is LeakFormat.AUTO:
        partial = "" if lines else sample[:4096].decode("utf-8", "ignore")
        fmt, layout = _detect_format(lines, partial)
        reason = detection_reason(fmt, layout)
    elif fmt is LeakFormat.CSV:
        layout = sniff_csv(lines, auto=False)
        if layout is None:
            raise LeakFileError(f"{_shown(path)}: no column of email addresses in the CSV")
    if layout is not None and layout.skip_lines:
        # Where the data starts, in bytes: every worker of a split run sniffs the same head
        # of the file and so knows it, and reads no line above it (see records()).
        layout = replace(layout, data_offset=_line_offset(sample, layout.skip_lines))
    source = LeakSource(fmt, compression, codec, identity.size, reason)
    return LeakReader(path, source, identity=identity, layout=layout)


def detection_reason(fmt: LeakFormat, layout: CsvLayout | None) -> str:
    """Say, in a few words an operator can check, what made auto-detection pick ``fmt``."""
    if layout is not None:
        where = {",": "','", ";": "';'", "\t": "tab", "|": "'|'"}.get(
            layout.delimiter, repr(layout.delimiter)
        )
        above = f", data below {layout.skip_lines} line(s)" if layout.skip_lines else ""
        password = " and a password column" if layout.password_column is not None else ""
        return (
            f"rows separated by {where} with addresses in column {layout.email_column + 1}"
            f"{_more_columns(layout)}{password}{above}"
        )
    return _REASONS[fmt]


def _more_columns(layout: CsvLayout) -> str:
    """Name a CSV's other address columns (``" and 3, 4"``), or nothing."""
    if not layout.more_columns:
        return ""
    return " and " + ", ".join(str(column + 1) for column in layout.more_columns)


_REASONS: Final = {
    LeakFormat.EML: "mail headers at the top (every address in To, Cc and Bcc is read)",
    LeakFormat.JSONL: "one JSON object per line",
    LeakFormat.JSON: "a JSON document (an array or objects spanning lines)",
    LeakFormat.COMBO: "an address, a separator and a password on most lines",
    LeakFormat.LINES: "no mail headers, JSON, CSV columns or passwords: one address per line",
    LeakFormat.CSV: "rows of columns",
    LeakFormat.TEXT: "free text",
    LeakFormat.AUTO: "not detected",
}


class LeakReader:
    """Read one opened leak file; ``records()`` may be called any number of times.

    A context manager: ``close()`` (or leaving the ``with``) ends every iteration still open.
    """

    source: LeakSource

    def __init__(
        self,
        path: Path,
        source: LeakSource,
        *,
        identity: _Identity,
        layout: CsvLayout | None = None,
    ) -> None:
        self.source = source
        self._path = path
        self._identity = identity
        self._layout = layout
        self._closed = False
        # Lines over MAX_LINE_BYTES the latest batches() pass refused (line formats; each
        # one an invalid record, LONG_LINE): the reason some records are invalid.
        self.long_lines = 0
        # Where the latest whole-file pass found the compressed stream cut short, in the
        # file's own bytes (the records end with the last complete line before it); None
        # for a stream read to its end.
        self.truncated_at: int | None = None
        self._raw: BinaryIO | None = None
        self._active: weakref.WeakSet[Iterator[LeakRecord] | Iterator[RecordBatch]] = (
            weakref.WeakSet()
        )

    def __enter__(self) -> LeakReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def read_as(self) -> str:
        """How the records are read out of the bytes: the format, and a CSV's columns.

        Part of a file's identity: the same bytes read another way are other records.
        """
        layout = self._layout
        if layout is None:
            return self.source.format.value
        password = (
            f", password column {layout.password_column + 1}"
            if (layout.password_column is not None)
            else ""
        )
        # A file of one address column keeps the identity it was recorded under before
        # more columns were read; one of several is another reading of its bytes.
        return (
            f"csv {layout.delimiter!r}-separated, address column {layout.email_column + 1}"
            f"{_more_columns(layout)}{password}, from line {layout.skip_lines + 1}"
        )[:100]

    def bytes_read(self) -> int:
        """How far the latest whole-file ``records()`` pass is in the file's own bytes
        (compressed bytes for a compressed file): the measure of progress."""
        raw = self._raw
        if raw is None:
            return 0
        try:
            return raw.tell()
        except (OSError, ValueError):  # closed at the end of the pass
            return self.source.size

    @property
    def splittable(self) -> bool:
        """Whether byte ranges of this file can be read independently (by parallel workers).

        Only plain UTF-8 files of one-record-per-line formats: a compressed stream cannot be
        entered in the middle, and a mail header or UTF-16 text cannot be cut at any newline.
        """
        return (
            self.source.compression is None
            and self.source.encoding.startswith("utf-8")
            and self.source.format in SPLITTABLE_FORMATS
        )

    def byte_ranges(self, parts: int) -> list[tuple[int, int]]:
        """Cut the file into at most ``parts`` byte ranges; one range if not splittable."""
        size = self.source.size
        if not self.splittable or parts <= 1 or size == 0:
            return [(0, size)]
        step = -(-size // parts)
        return [(start, min(size, start + step)) for start in range(0, size, step)]

    def records(
        self, *, skip: int = 0, byte_range: tuple[int, int] | None = None
    ) -> Iterator[LeakRecord]:
        """Yield every record in file order, after passing over the first ``skip`` of them.

        The records of ``batches()`` one by one; it says what is guaranteed.
        """
        iterator = _each_record(self.batches(skip=skip, byte_range=byte_range))
        self._active.add(iterator)
        return iterator

    def batches(
        self, *, skip: int = 0, byte_range: tuple[int, int] | None = None
    ) -> Iterator[RecordBatch]:
        """Yield every record in file order, in batches, after passing over the first
        ``skip`` of them.

        Deterministic: the same file always yields the same sequence, so a caller that
        stored how many records it consumed resumes with ``skip`` exactly where it stopped.
        Skipped records are counted, not built. Raises LeakFileError (from the iteration) if
        the file is gone, was replaced since ``open_leak``, or its compressed stream breaks;
        never anything else, whatever the bytes.
        """
        if self._closed:
            raise ValueError("records() on a closed LeakReader")
        if skip < 0:
            raise ValueError("skip must be >= 0")
        layout = self._layout
        iterator: Iterator[RecordBatch]
        whole = byte_range is None or byte_range == (0, self.source.size)
        if whole and self.source.format is LeakFormat.JSON:
            # Whole blocks, not capped lines: a JSON array may be one line of any length.
            iterator = batch_records(json_records(self._blocks(), skip=skip))
            self._active.add(iterator)
            return iterator
        self.long_lines = 0
        split = partial(
            _line_batches,
            split_long=self.source.format in FREE_TEXT_FORMATS,
            on_long=self._count_long_line,
            cut_short=lambda: self.truncated_at is not None,
        )
        if whole or byte_range is None:
            lines = split(self._blocks())
        else:
            if not self.splittable:
                raise ValueError("byte ranges need a plain UTF-8 file of a line format")
            start, end = byte_range
            origin = self._origin()
            data = origin + (layout.data_offset if layout is not None else 0)
            if layout is not None and end <= data and data > origin:
                lines = iter(())  # only lines above the data start in this range
            elif layout is None or start <= origin:
                # The first range passes over the lines above the data, as the whole file does.
                lines = split(self._range_blocks(start, end))
            else:
                # A later range never sees the header: the lines above the data belong to no
                # record, so a range starting among them begins at the data's first line.
                begin = max(start, data)
                blocks = self._range_blocks(begin, end, at_line_start=begin == data)
                lines = split(blocks)
                layout = replace(layout, skip_lines=0)
        if layout is not None:
            iterator = csv_batches(lines, layout=layout, skip=skip)
        else:
            iterator = _FORMAT_READERS[self.source.format](lines, skip=skip)
        self._active.add(iterator)
        return iterator

    def _count_long_line(self) -> None:
        self.long_lines += 1

    def close(self) -> None:
        """End every open ``records()`` iteration and release its file; safe to repeat."""
        self._closed = True
        for iterator in list(self._active):
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    def _range_blocks(
        self, start: int, end: int, *, at_line_start: bool = False
    ) -> Iterator[bytes]:
        """Yield the bytes of every line that starts in [start, end), whole.

        A line belongs to the range its first byte lies in, so consecutive ranges read every
        line exactly once: this range finishes the line that straddles ``end`` and the next
        one drops it. ``at_line_start``: ``start`` is known to begin a line (the first line
        of a CSV's data), which is read from there.
        """
        with ExitStack() as stack:
            origin = self._origin()
            # Else the range starts with the file's first line, or at a known line start.
            inside = start > origin and not at_line_start
            try:
                raw = stack.enter_context(self._path.open("rb", buffering=0))
                offset = start - 1 if inside else max(start, origin)  # of data[0] in the file
                raw.seek(offset)
            except OSError as exc:
                raise LeakFileError(
                    f"{_shown(self._path)}: cannot read ({exc.strerror or 'error'})"
                ) from None
            data = _read_block(raw.read, self._path)
            while inside:  # data[0] is byte start-1: drop through the next newline
                newline = data.find(b"\n")
                if newline >= 0:
                    data, offset = data[newline + 1 :], offset + newline + 1
                    break
                offset += len(data)
                data = _read_block(raw.read, self._path)
                if not data:
                    return
            finishing = False
            while data:
                if finishing:
                    newline = data.find(b"\n")
                    if newline >= 0:
                        yield data[: newline + 1]
                        return
                else:
                    if offset >= end:
                        return
                    if offset + len(data) >= end:
                        newline = data.find(b"\n", end - 1 - offset)
                        if newline >= 0:
                            yield data[: newline + 1]
                            return
                        finishing = True  # the last line goes on in the next blocks
                yield data
                offset += len(data)
                data = _read_block(raw.read, self._path)

    def _origin(self) -> int:
        """Return the offset of the first line: after a UTF-8 BOM, which belongs to no line."""
        try:
            with self._path.open("rb") as raw:
                return len(codecs.BOM_UTF8) if raw.read(3) == codecs.BOM_UTF8 else 0
        except OSError as exc:
            raise LeakFileError(
                f"{_shown(self._path)}: cannot read ({exc.strerror or 'error'})"
            ) from None

    def _blocks(self) -> Iterator[bytes]:
        self.truncated_at = None
        with ExitStack() as stack:
            read, _, raw = _open_stream(self._path, self._identity, stack)
            self._raw = raw
            try:
                yield from _decoded_blocks(read, self._path, _read_block(read, self._path))
            except TruncatedStream:
                # The addresses before the cut leaked all the same: they are read, the
                # file ends here (and completes), and the caller says the rest is missing.
                self.truncated_at = raw.tell()


# Formats that look for addresses anywhere in the text: a long line is read in pieces.
FREE_TEXT_FORMATS: Final = frozenset({LeakFormat.EML, LeakFormat.TEXT})
SPLITTABLE_FORMATS: Final = frozenset(
    {LeakFormat.LINES, LeakFormat.COMBO, LeakFormat.JSONL, LeakFormat.CSV}
)

_FORMAT_READERS: Final[dict[LeakFormat, Callable[..., Iterator[RecordBatch]]]] = {
    LeakFormat.LINES: lines_batches,
    LeakFormat.COMBO: combo_batches,
    LeakFormat.JSONL: jsonl_batches,
    LeakFormat.EML: lambda lines, *, skip: batch_records(eml_records(lines, skip=skip)),
    LeakFormat.TEXT: lambda lines, *, skip: batch_records(text_records(lines, skip=skip)),
}


def _each_record(batches: Iterator[RecordBatch]) -> Iterator[LeakRecord]:
    """Yield the records of ``batches`` one by one; closing it closes ``batches``."""
    try:
        for batch in batches:
            yield from batch.records()
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()


def _shown(path: Path) -> str:
    # A file name may hold a newline; the message must stay one line.
    return "".join(char if char.isprintable() else "?" for char in str(path))


shown_path = _shown  # for messages about a leak file elsewhere: one line, whatever its name


def _identify(path: Path) -> _Identity:
    try:
        info = path.stat()
    except FileNotFoundError:
        raise LeakFileError(f"{_shown(path)}: no such file") from None
    except OSError as exc:
        raise LeakFileError(f"{_shown(path)}: cannot read ({exc.strerror or 'error'})") from None
    check_regular_file(path, info.st_mode)
    return _Identity(info.st_dev, info.st_ino, info.st_size)


_KINDS: Final = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
)


def check_regular_file(path: Path, mode: int) -> None:
    """Raise LeakFileError naming what ``path`` is, unless a regular file.

    Decided from ``stat``, before any ``open``: opening a FIFO blocks until a writer comes,
    and a device such as /dev/zero never ends. records() also reopens the file for every
    pass, which only a regular file offers.
    """
    if stat.S_ISREG(mode):
        return
    what = next((name for test, name in _KINDS if test(mode)), "not a regular file")
    raise LeakFileError(f"{_shown(path)}: {what}, not a leak file; give a regular file")


def expanded_bytes(path: Path, *, limit: int) -> int | None:
    """The bytes a compressed leak file decompresses to, counted up to just past ``limit``.

    None for a file that is not compressed. Stops reading once the count exceeds
    ``limit``, so a small file that would expand without end (a decompression bomb) costs
    at most ``limit`` bytes of decompression; a stream cut short counts what it gave.
    Raises LeakFileError for a file that cannot be read or a corrupt stream.
    """
    with ExitStack() as stack:
        read, compression, _ = _open_stream(path, _identify(path), stack)
        if compression is None:
            return None
        total = 0
        while total <= limit:
            try:
                block = _read_block(read, path)
            except TruncatedStream:
                break
            if not block:
                break
            total += len(block)
        return total


def _open_stream(
    path: Path, identity: _Identity, stack: ExitStack
) -> tuple[Callable[[int], bytes], str | None, BinaryIO]:
    """Open ``path`` (the same file as at ``open_leak``) and return its decompressed reader."""
    try:
        # Non-blocking: a FIFO put in the file's place since open_leak must not hang here.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        raw = stack.enter_context(open(fd, "rb", buffering=0))  # noqa: SIM115
        info = os.fstat(raw.fileno())
        magic = raw.read(8)
        raw.seek(0)
    except OSError as exc:
        raise LeakFileError(f"{_shown(path)}: cannot read ({exc.strerror or 'error'})") from None
    if _Identity(info.st_dev, info.st_ino, info.st_size) != identity:
        raise LeakFileError(f"{_shown(path)}: the file changed since it was opened")
    for prefix, what in _UNSUPPORTED:
        if magic.startswith(prefix):
            raise LeakFileError(f"{_shown(path)}: {what}; extract or decompress it first")
    for prefix, what in _CONVERT_FIRST:
        if magic.startswith(prefix):
            raise LeakFileError(f"{_shown(path)}: {what}")
    compression = _compression_of(magic)
    if compression is None:
        return raw.read, None, raw
    return _decompressed(compression, raw, stack), compression, raw


def _compression_of(magic: bytes) -> str | None:
    """Name the compression a file's first 8 bytes show (gzip, bz2, xz), or None."""
    if magic.startswith(b"\x1f\x8b"):
        return "gzip"
    # "BZh" and a block size digit: a text file starting "BZh" stays text.
    if magic[:3] == b"BZh" and magic[3:4].isdigit() and magic[3:4] != b"0":
        return "bz2"
    if magic.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    return None


def _decompressed(
    compression: str, raw: BinaryIO | _HashingReader, stack: ExitStack
) -> Callable[[int], bytes]:
    """Return the decompressed stream's ``read1`` over ``raw``, closed with ``stack``.

    read1, one decompressor call a block: read() gathers several, and when the stream is
    cut, the text of the calls before the cut in that read() is lost with the error.
    """
    fileobj = cast("BinaryIO", raw)
    if compression == "gzip":
        return stack.enter_context(gzip.GzipFile(fileobj=fileobj, mode="rb")).read1
    if compression == "bz2":
        return stack.enter_context(bz2.BZ2File(fileobj)).read1
    return stack.enter_context(lzma.LZMAFile(fileobj)).read1


@dataclass(frozen=True, slots=True)
class FileDigests:
    """A leak file's two fingerprints, as hex SHA-256.

    ``bytes_sha256``: of the file's bytes, its identity across runs. ``content_sha256``: of
    its decompressed stream (for a plain file the same as ``bytes_sha256``): a gzip, bz2 or
    xz copy of a file has the content of the file, whatever its compression level or the
    name and time in its header. A stream cut short (or corrupt) has the content it gives
    before the cut, as the reader reads the file only up to there.
    """

    bytes_sha256: str
    content_sha256: str
    # SHA-256 of the content's first PREFIX_BYTES << k bytes, k = 0, 1, ... while the content
    # is that long: a copy cut short (a download or copy interrupted, a compressed stream
    # cut) or extended shares them with the whole file up to its own length.
    content_prefixes: tuple[str, ...] = ()
    # The same two of the content as text (``_TextHash``: decoded to UTF-8, no BOM, every
    # line end "\n"), or None where that text is the content byte for byte (a UTF-8 file
    # with LF line ends and no BOM: most files, hashed once): a copy saved with CRLF, with
    # a BOM added or removed, or re-encoded as UTF-16 has the text of the file.
    text_sha256: str | None = None
    text_prefixes: tuple[str, ...] | None = None

    def text_digest(self) -> str:
        """The SHA-256 of the content as text (the content's own where they are the same)."""
        return self.text_sha256 or self.content_sha256

    def text_prefix_digests(self) -> tuple[str, ...]:
        """The prefixes of the content as text (the content's own where they are the same)."""
        return self.content_prefixes if self.text_prefixes is None else self.text_prefixes


# The shortest content prefix kept: a leak list's first 64 KiB (about 2,000 addresses) are
# that list's; shorter runs of equal text (a header, boilerplate) decide nothing.
PREFIX_BYTES: Final = 64 * 1024


class _ContentHash:
    """SHA-256 of a stream, and of its prefixes of PREFIX_BYTES << k bytes."""

    def __init__(self) -> None:
        self._digest = hashlib.sha256()
        self._length = 0
        self._next = PREFIX_BYTES
        self.prefixes: list[str] = []

    def update(self, data: bytes) -> None:
        view = memoryview(data)
        while self._length + len(view) >= self._next:
            take = self._next - self._length
            self._digest.update(view[:take])
            view = view[take:]
            self._length = self._next
            self.prefixes.append(self._digest.hexdigest())
            self._next <<= 1
        self._digest.update(view)
        self._length += len(view)

    def hexdigest(self) -> str:
        return self._digest.hexdigest()

    def copy(self) -> _ContentHash:
        """Return a hash of the same bytes so far, going on apart from this one."""
        twin = _ContentHash()
        twin._digest = self._digest.copy()
        twin._length, twin._next, twin.prefixes = self._length, self._next, list(self.prefixes)
        return twin


class _TextHash:
    """The content's fingerprints as text: decoded to UTF-8 (``detect_encoding``: a UTF-16
    or UTF-32 copy), without a BOM, every CRLF and lone CR as LF.

    Fed each block before ``content`` takes it. While the text is the content byte for byte
    (UTF-8, no BOM, no CR yet) it hashes nothing of its own: at the first block that differs
    it takes a copy of the content's hash as it stands and goes on from there, so a UTF-8
    LF file costs one scan for "\r" a block and no second hash. A line of 8-bit text stays
    as its bytes (decoding it is the reader's, line by line).
    """

    def __init__(self, content: _ContentHash) -> None:
        self._content = content
        self._text: _ContentHash | None = None
        self._decoder: codecs.IncrementalDecoder | None = None
        self._first = True
        self._after_cr = False

    def update(self, data: bytes) -> None:
        if self._first:
            self._first = False
            codec, bom = detect_encoding(data)
            if codec != "utf-8":
                self._decoder = codecs.getincrementaldecoder(codec)("replace")
            if codec != "utf-8" or bom:
                self._text = _ContentHash()
                data = data[bom:]
        if self._text is None:
            if b"\r" not in data:
                return  # the text is still the content
            self._text = self._content.copy()
        if self._decoder is not None:
            data = self._decoder.decode(data).encode("utf-8", "surrogatepass")
        self._text.update(self._lf(data))

    def _lf(self, data: bytes) -> bytes:
        """``data`` with CRLF and CR as LF; a CR that ends a block and an LF that opens the
        next are one line end."""
        if self._after_cr and data.startswith(b"\n"):
            data = data[1:]
        if not data:
            return data
        self._after_cr = data.endswith(b"\r")
        if b"\r" not in data:
            return data
        return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")

    def digests(self) -> tuple[str | None, tuple[str, ...] | None]:
        """The text's SHA-256 and prefixes; (None, None) if they are the content's."""
        if self._text is None:
            return None, None
        if self._decoder is not None:
            self._text.update(self._lf(self._decoder.decode(b"", final=True).encode("utf-8")))
        return self._text.hexdigest(), tuple(self._text.prefixes)


class _HashingReader:
    """A file read through a decompressor, hashing every byte the decompressor takes: the
    bytes' and the content's fingerprints in one read of the file."""

    def __init__(self, raw: BinaryIO, update: Callable[[bytes], object]) -> None:
        self._raw = raw
        self._update = update

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self._update(data)
        return data

    def readable(self) -> bool:
        return True

    def drain(self, block: int, check: Callable[[], None] | None) -> None:
        """Hash the bytes the decompressor left (after a cut, a corrupt stream's rest)."""
        while self.read(block):
            if check is not None:
                check()


def file_digests(
    path: Path, *, block: int = 1 << 20, check: Callable[[], None] | None = None
) -> FileDigests:
    """Return the SHA-256 of the file's bytes and of its decompressed content (and of the
    content's prefixes, and of both as text where it differs, ``FileDigests``), in one read.

    Refuses anything but a regular file before reading a byte: ``stat`` first, so that a
    FIFO never blocks the open and a device such as /dev/zero is never read. ``check`` is
    called after each block of ``block`` bytes (it may raise to stop the pass). A plain
    file is hashed once: its content is its bytes. Raises LeakFileError for a file that is
    missing or cannot be read; a compressed stream that is cut short or corrupt is not an
    error here (the reader says what it met), its content ends where it breaks.
    """
    raw_digest = hashlib.sha256()
    try:
        check_regular_file(path, os.stat(path).st_mode)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        with ExitStack() as stack:
            raw = stack.enter_context(open(fd, "rb", buffering=0))
            check_regular_file(path, os.fstat(raw.fileno()).st_mode)  # swapped meanwhile
            compression = _compression_of(raw.read(8))
            raw.seek(0)
            content = _ContentHash()
            text = _TextHash(content)
            if compression is None:
                while data := raw.read(block):
                    text.update(data)
                    content.update(data)
                    if check is not None:
                        check()
                whole = content.hexdigest()
                return FileDigests(whole, whole, tuple(content.prefixes), *text.digests())
            tee = _HashingReader(raw, raw_digest.update)
            read = _decompressed(compression, tee, stack)
            while True:
                try:
                    data = read(block)
                except _STREAM_ERRORS as exc:
                    if isinstance(exc, OSError) and exc.errno is not None:
                        raise  # the disk, not the data
                    break  # cut short or corrupt: the content is what came before
                if not data:
                    break
                text.update(data)
                content.update(data)
                if check is not None:
                    check()
            tee.drain(block, check)
            return FileDigests(
                raw_digest.hexdigest(),
                content.hexdigest(),
                tuple(content.prefixes),
                *text.digests(),
            )
    except FileNotFoundError:
        raise LeakFileError(f"{_shown(path)}: no such file") from None
    except OSError as exc:
        raise LeakFileError(f"{_shown(path)}: cannot read ({exc.strerror or 'error'})") from None


def _read_block(read: Callable[[int], bytes], path: Path) -> bytes:
    try:
        return read(_BLOCK_BYTES)
    except _STREAM_ERRORS as exc:
        if isinstance(exc, EOFError):
            raise TruncatedStream(f"{_shown(path)}: the compressed stream is truncated") from None
        if isinstance(exc, OSError) and exc.errno is not None:
            reason = f"cannot read ({exc.strerror})"  # the disk, not the data
        else:
            reason = f"the compressed stream is corrupt ({type(exc).__name__})"
        raise LeakFileError(f"{_shown(path)}: {reason}") from None


def _decoded_blocks(read: Callable[[int], bytes], path: Path, first: bytes) -> Iterator[bytes]:
    """Yield the text as UTF-8 blocks of at most ``_BLOCK_BYTES``, BOM removed.

    ``first`` is the stream's first block, already read. Other encodings are transcoded;
    bytes that do not decode stay for the line decoder (UTF-8) or become U+FFFD (UTF-16/32).
    Raises LeakFileError when the stream breaks.
    """
    block = first
    codec, bom = detect_encoding(block)
    if codec == "utf-8":
        block = block[bom:]
        while block:
            yield block
            block = _read_block(read, path)
        return
    decoder = codecs.getincrementaldecoder(codec)("replace")
    while True:
        # surrogatepass: a lone surrogate cannot come out of a "replace" decoder, but if one
        # did, the UTF-8 line decoder would turn its bytes into U+FFFD rather than raise.
        data = decoder.decode(block, final=not block).encode("utf-8", "surrogatepass")
        for start in range(0, len(data), _BLOCK_BYTES):
            yield data[start : start + _BLOCK_BYTES]
        if not block:
            return
        block = _read_block(read, path)


def _line_batches(
    blocks: Iterator[bytes],
    *,
    split_long: bool = False,
    on_long: Callable[[], object] | None = None,
    cut_short: Callable[[], bool] | None = None,
) -> Iterator[list[str]]:
    """Split UTF-8 blocks into physical lines (LF, CRLF or lone CR), one list per block.

    A line of at most MAX_LINE_BYTES bytes is one string. A longer one is never dropped,
    and never held whole: with ``split_long`` (free text, mail) it comes as pieces of at
    most MAX_LINE_BYTES cut after a separator (``_piece_end``), the first a str, the rest
    ``LinePiece``s (the same line goes on); otherwise it is the one string ``LONG_LINE``
    (a record the line formats count invalid), and ``on_long`` is called. A line that is
    not valid UTF-8 is read as Windows-1252 (``encoding.decode_line``), line by line (or
    piece by piece), as mixed files need. ``cut_short`` says, at the end, whether the
    blocks ended where a compressed stream was cut: its last line, cut too, is no line.
    """
    carry = b""  # the start of the line that goes on in the next block, at most the cap
    long = False  # the line in progress is over the cap: refused, or pieces of it sent
    after_cr = False
    for block in blocks:
        data = block[1:] if after_cr and block.startswith(b"\n") else block
        after_cr = data.endswith(b"\r")
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        last = data.rfind(b"\n")
        if last < 0:
            carry += data
            if len(carry) > MAX_LINE_BYTES:
                if split_long:
                    pieces, carry = _pieces(carry, first=not long)
                    yield pieces
                else:
                    carry = b""
                long = True
            continue
        first = data.find(b"\n")
        head: list[str] = []
        if carry or long:
            line = carry + data[:first]
            if len(line) > MAX_LINE_BYTES or long:
                if split_long:
                    head, rest = _pieces(line, first=not long)
                    if rest or not head:
                        head.append(_piece(rest, first=not (long or head)))
                else:
                    head = [LONG_LINE]
                    if on_long is not None:
                        on_long()
                long = False
            else:
                head = [decode_line(line)]
            carry, data = b"", data[first + 1 :]
            last -= first + 1
        lines = decode_lines(data[:last]) if last >= 0 else []
        carry = data[last + 1 :]
        yield head + lines if head else lines
    if cut_short is not None and cut_short():
        return
    if carry or long:
        if split_long:
            pieces, rest = _pieces(carry, first=not long)
            if rest or not pieces:
                pieces.append(_piece(rest, first=not (long or pieces)))
            yield pieces
        elif long:
            if on_long is not None:
                on_long()
            yield [LONG_LINE]
        else:
            yield [decode_line(carry)]


# Where a long line of free text is cut: after a separator of addresses first, else after
# any character no address holds, else (a run of address characters longer than any
# address) anywhere between two characters.
_SEPARATORS: Final = (b",", b";", b" ", b"\t")
_LAST_NON_ADDRESS: Final = re.compile(rb"(?s:.*)[^\w.+'@%\-\x80-\xff]")


def _piece_end(data: bytes) -> int:
    """Return where to cut the first piece of ``data`` (longer than MAX_LINE_BYTES)."""
    cut = max(data.rfind(separator, 0, MAX_LINE_BYTES) for separator in _SEPARATORS) + 1
    if cut:
        return cut
    match = _LAST_NON_ADDRESS.match(data, 0, MAX_LINE_BYTES)
    if match is not None:
        return match.end()
    cut = MAX_LINE_BYTES
    while cut > MAX_LINE_BYTES - 3 and 0x80 <= data[cut] < 0xC0:
        cut -= 1  # not inside a UTF-8 character
    return cut


def _pieces(data: bytes, *, first: bool) -> tuple[list[str], bytes]:
    """Cut pieces off ``data`` until at most MAX_LINE_BYTES are left; return them and the
    rest. ``first``: the first piece starts the line (else the line went on before)."""
    pieces: list[str] = []
    while len(data) > MAX_LINE_BYTES:
        cut = _piece_end(data)
        pieces.append(_piece(data[:cut], first=first and not pieces))
        data = data[cut:]
    return pieces, data


def _piece(data: bytes, *, first: bool) -> str:
    text = decode_line(data)
    return text if first else LinePiece(text)


def _sample(blocks: Iterator[bytes]) -> tuple[bytes, bool]:
    """Return the first SNIFF_BYTES (or a little more) of decoded text, and whether that is
    the whole text."""
    parts: list[bytes] = []
    size = 0
    try:
        for block in blocks:
            parts.append(block)
            size += len(block)
            if size >= SNIFF_BYTES:
                return b"".join(parts), False
    except LeakFileError:
        pass  # a broken stream ends the sample; records() reports it in its turn
    return b"".join(parts), True


def _sample_lines(sample: bytes, *, complete: bool) -> list[str]:
    lines = decode_lines(sample.replace(b"\r\n", b"\n").replace(b"\r", b"\n"))
    if not complete or not lines[-1]:
        lines.pop()  # cut mid-line by the sample size, or the empty tail after a final newline
    return lines


def _line_offset(sample: bytes, lines: int) -> int:
    """Return the byte offset in ``sample`` after its first ``lines`` line ends (LF, CRLF or
    lone CR, as ``_line_batches`` counts them)."""
    offset = 0
    for count, match in enumerate(re.finditer(rb"\r\n|\r|\n", sample), 1):
        offset = match.end()
        if count == lines:
            break
    return offset


def _detect_format(lines: list[str], partial: str) -> tuple[LeakFormat, CsvLayout | None]:
    """Pick the format of a sample, in the documented order; free text is never guessed.

    ``partial``: the start of the first line when no line is complete in the sample.
    """
    if looks_like_eml(lines):
        return LeakFormat.EML, None
    json = json_layout(lines, partial=partial)
    if json is not None:
        return LeakFormat(json), None
    layout = sniff_csv(lines, auto=True)
    if layout is not None:
        return LeakFormat.CSV, layout
    if looks_like_combo(lines):
        return LeakFormat.COMBO, None
    return LeakFormat.LINES, None
