"""Byte-order marks and the encodings they name; text files that never fail on a bad byte.

One table for every reader: leak files (``jobs.reader.stream``) and account CSVs
(``jobs.account_import``) recognise the same marks.
"""

from __future__ import annotations

import codecs
import io
from pathlib import Path
from typing import IO, Final

_BOMS: Final = (
    (codecs.BOM_UTF8, "utf-8", 3),
    (codecs.BOM_UTF32_LE, "utf-32", 0),  # before UTF-16 LE, whose BOM is its prefix
    (codecs.BOM_UTF32_BE, "utf-32", 0),
    (codecs.BOM_UTF16_LE, "utf-16", 0),
    (codecs.BOM_UTF16_BE, "utf-16", 0),
)
_UTF16_PROBE_BYTES: Final = 4096


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


def open_text(path: Path, *, newline: str | None = None) -> IO[str]:
    """Open ``path`` for reading as text; undecodable bytes become U+FFFD, never an error.

    Raises OSError if the file cannot be opened.
    """
    raw = path.open("rb")
    codec, _ = detect_encoding(raw.peek(_UTF16_PROBE_BYTES)[:_UTF16_PROBE_BYTES])
    # utf-8-sig drops a UTF-8 BOM, also after a seek(0) back to the start.
    encoding = "utf-8-sig" if codec == "utf-8" else codec
    return io.TextIOWrapper(raw, encoding=encoding, errors="replace", newline=newline)
