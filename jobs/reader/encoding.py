"""Byte-order marks and the encodings they name; text files that never fail on a bad byte.

One table for every reader: leak files (``jobs.reader.stream``) and account CSVs
(``jobs.account_import``) recognise the same marks, and read legacy 8-bit text the same
way: a line that is not valid UTF-8 is Windows-1252, the de facto encoding of such files
(the WHATWG Encoding Standard reads "latin1" and "iso-8859-1" labels as windows-1252 too).
"""

from __future__ import annotations

import codecs
import io
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Final, Protocol

_BOMS: Final = (
    (codecs.BOM_UTF8, "utf-8", 3),
    (codecs.BOM_UTF32_LE, "utf-32", 0),  # before UTF-16 LE, whose BOM is its prefix
    (codecs.BOM_UTF32_BE, "utf-32", 0),
    (codecs.BOM_UTF16_LE, "utf-16", 0),
    (codecs.BOM_UTF16_BE, "utf-16", 0),
)
_UTF16_PROBE_BYTES: Final = 4096
# The WHATWG windows-1252 decoder maps the five bytes Python's cp1252 leaves undefined (0x81,
# 0x8D, 0x8F, 0x90, 0x9D) to the C1 controls of the same value: no byte ever fails, and a
# control character makes an address invalid instead of silently changing it.
_C1_HANDLER: Final = "leakguard-windows-1252-c1"
# For a UTF-8 decoder: a byte run that is not UTF-8 is read as Windows-1252.
FALLBACK_HANDLER: Final = "leakguard-utf8-else-windows-1252"


def _c1(exc: UnicodeError) -> tuple[str, int]:
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    return "".join(map(chr, exc.object[exc.start : exc.end])), exc.end


def _windows_1252_run(exc: UnicodeError) -> tuple[str, int]:
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    return exc.object[exc.start : exc.end].decode("cp1252", _C1_HANDLER), exc.end


codecs.register_error(_C1_HANDLER, _c1)
codecs.register_error(FALLBACK_HANDLER, _windows_1252_run)


def decode_line(data: bytes, *, cut_at: int = 0) -> str:
    """Decode one line of a file without a BOM: UTF-8 if it is valid UTF-8, else Windows-1252.

    Decided per line, because leak files are concatenations of other files and mix both.
    A Windows-1252 line is hardly ever valid UTF-8 by chance (that needs a lead byte
    followed by exactly the right continuation bytes, "Ã©" for "é"). A line of ``cut_at``
    bytes was cut by a length cap: an incomplete character at its end does not make it 8-bit.
    """
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if len(data) == cut_at and exc.end == cut_at and exc.reason == "unexpected end of data":
            # A UTF-8 line cut inside its last character (by a line length cap): still UTF-8.
            try:
                return data[: exc.start].decode("utf-8") + "\ufffd"
            except UnicodeDecodeError:
                pass
        return data.decode("cp1252", _C1_HANDLER)


def decode_lines(chunk: bytes, *, cut_at: int = 0) -> list[str]:
    """Split ``chunk`` at LF and decode each line by ``decode_line``."""
    try:
        # The common case, one call: "\n" never occurs inside a multi-byte sequence, so a
        # chunk that is valid UTF-8 as a whole is valid line by line.
        return chunk.decode("utf-8").split("\n")
    except UnicodeDecodeError:
        return [decode_line(line, cut_at=cut_at) for line in chunk.split(b"\n")]


def detect_encoding(head: bytes) -> tuple[str, int]:
    """Return the codec of the text that starts with ``head`` and the bytes of BOM to skip.

    A BOM names UTF-8, UTF-16 or UTF-32 (Unicode 15, section 23.8; UTF-16 and UTF-32 codecs
    consume their own mark, so only UTF-8's is skipped here); without one, ASCII text in
    UTF-16 shows by its NULs; anything else is read as UTF-8.
    """
    for bom, codec, length in _BOMS:
        if head.startswith(bom):
            return codec, length
    probe = head[: _UTF16_PROBE_BYTES & ~1]
    pairs = len(probe) // 2
    if pairs >= 4:
        # ASCII text in UTF-16 without a BOM: a NUL in (nearly) every pair, always on one side.
        even, odd = probe[0::2].count(0), probe[1::2].count(0)
        if odd >= 0.4 * pairs and even <= 0.05 * pairs:
            return "utf-16-le", 0
        if even >= 0.4 * pairs and odd <= 0.05 * pairs:
            return "utf-16-be", 0
    return "utf-8", 0


class TextFile(Protocol):
    """What ``open_text`` returns: lines by iteration, a sample by ``read``, ``seek(0)``."""

    def read(self, size: int = -1, /) -> str: ...
    def seek(self, offset: int, whence: int = 0, /) -> int: ...
    def __iter__(self) -> Iterator[str]: ...
    def __enter__(self) -> TextFile: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
        /,
    ) -> None: ...


def open_text(path: Path) -> TextFile:
    """Open ``path`` for reading as text (line ends kept, as ``newline=""``); never fails on
    a bad byte.

    UTF-16/32 (by BOM or NUL pattern): undecodable bytes become U+FFFD. Otherwise each line
    is UTF-8 or, if it is not valid UTF-8, Windows-1252 (``decode_line``): decided per line,
    like the leak reader. Raises OSError if the file cannot be opened.
    """
    raw = path.open("rb")
    codec, bom = detect_encoding(raw.peek(_UTF16_PROBE_BYTES)[:_UTF16_PROBE_BYTES])
    if codec != "utf-8":
        return io.TextIOWrapper(raw, encoding=codec, errors="replace", newline="")
    return _PerLineText(raw, bom)


class _PerLineText:
    """Text lines of a BOM-less or UTF-8-BOM file, each decoded by ``decode_line``.

    Lines are split the way ``newline=""`` splits them (LF, CRLF, lone CR, ends kept) by a
    latin-1 wrapper, which maps every byte to one code point and back without loss; each
    line's bytes are then decoded on their own.
    """

    def __init__(self, raw: io.BufferedReader, bom: int) -> None:
        self._bom = bom
        self._lines = io.TextIOWrapper(raw, encoding="latin-1", newline="")
        self._skip_bom()

    def _skip_bom(self) -> None:
        if self._bom:
            self._lines.read(self._bom)

    def __enter__(self) -> _PerLineText:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
        /,
    ) -> None:
        self._lines.close()

    def seek(self, offset: int, whence: int = io.SEEK_SET, /) -> int:
        if (offset, whence) != (0, io.SEEK_SET):
            raise io.UnsupportedOperation("only seek(0) back to the start")
        self._lines.seek(0)
        self._skip_bom()
        return 0

    def readline(self) -> str:
        return decode_line(self._lines.readline().encode("latin-1"))

    def __next__(self) -> str:
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def __iter__(self) -> Iterator[str]:
        return self

    def read(self, size: int = -1, /) -> str:
        """Read whole lines until at least ``size`` characters (all with a negative size)."""
        parts: list[str] = []
        total = 0
        while size < 0 or total < size:
            line = self.readline()
            if not line:
                break
            parts.append(line)
            total += len(line)
        return "".join(parts)
