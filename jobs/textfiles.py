"""Open a text file whatever encoding mark it carries, and never fail on a bad byte."""

from __future__ import annotations

import codecs
import io
from pathlib import Path
from typing import IO

BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def detect_encoding(head: bytes) -> str:
    """Return the codec named by a byte-order mark, UTF-8 without one."""
    for bom, encoding in BOMS:
        if head.startswith(bom):
            return encoding
    return "utf-8"


def open_text(path: Path, *, newline: str | None = None) -> IO[str]:
    """Open ``path`` for reading as text; undecodable bytes become U+FFFD, never an error.

    Raises OSError if the file cannot be opened.
    """
    raw = path.open("rb")
    encoding = detect_encoding(raw.peek(4)[:4] if hasattr(raw, "peek") else b"")
    return io.TextIOWrapper(raw, encoding=encoding, errors="replace", newline=newline)
