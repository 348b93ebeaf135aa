"""What an ingest refuses before it records anything: junk, and a file another leak has.

Checked before the leak, the file's fingerprint or any counter is written, so a refused
file leaves no trace to list, resume or undo: an empty file, a file that is not a regular
file (decided by ``stat`` before any ``open``, see ``jobs.reader.stream``), a file without a
valid address, a file whose first records are mostly not addresses in the format chosen or
detected (a wrong ``--format``, a binary, a CSV without an address column), and a file
already ingested under another slug.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Final

from sqlalchemy.orm import Session

from jobs.reader.stream import (
    FORMAT_GIVEN,
    PREFIX_BYTES,
    FileDigests,
    LeakFileError,
    LeakFormat,
    LeakReader,
    LeakSource,
    open_leak,
    shown_path,
)
from service.addresses import InvalidAddress, canonicalize_email
from service.addresses.canonical import CanonicalRules
from service.errors import JobError
from service.leaks.progress import FileElsewhere, file_elsewhere
from service.leaks.wording import OptionWords, Say, Worded

SAMPLE_RECORDS: Final = 10_000  # records read to judge a file, from its start
# Below this share of valid addresses in the sample, the file is refused (unless
# --accept-invalid). Measured (README, "Ingesting a leak"): real leak files read in their
# format give 56-100 %, the same files in a wrong format and binaries 0-2 %.
MIN_VALID_SHARE: Final = 0.10
BINARY_SNIFF_BYTES: Final = 8 * 1024
_SUGGEST_RECORDS: Final = 2_000  # records read per other format, to suggest one
_STOP_EVERY: Final = 1024  # records between looks at the stop signal


class IngestRefused(JobError, Worded):
    """The file is not ingested, and nothing of it is recorded. Raised ``saying`` its
    message in any face's words (service/leaks/wording.py): the staff upload form shows
    its own field names where the CLI names flags."""


class IngestInterrupted(JobError):
    """A stop signal ended the run at a chunk boundary; everything before it is committed."""

    def __init__(self, records: int, *, dry_run: bool = False) -> None:
        self.records = records
        self.dry_run = dry_run
        if dry_run:
            message = f"dry run interrupted after record {records}; nothing was written"
        else:
            message = f"interrupted after record {records}; run the same command again to resume"
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class SampleQuality:
    records: int
    valid: int
    whole_file: bool  # the sample is every record of the file

    @property
    def share(self) -> float:
        return self.valid / self.records if self.records else 0.0


def measure_sample(
    reader: LeakReader,
    rules: CanonicalRules,
    *,
    limit: int = SAMPLE_RECORDS,
    stop: threading.Event | None = None,
) -> SampleQuality:
    """Count the valid addresses among the first ``limit`` records of the file."""
    records = valid = 0
    for record in islice(reader.records(), limit + 1):
        if records == limit:
            return SampleQuality(records, valid, whole_file=False)
        records += 1
        if stop is not None and not records % _STOP_EVERY and stop.is_set():
            raise IngestInterrupted(0)
        candidate = record.candidate
        if candidate is None:
            continue
        if not isinstance(canonicalize_email(candidate, rules), InvalidAddress):
            valid += 1
    return SampleQuality(records, valid, whole_file=True)


def check_leak_file(
    path: Path,
    reader: LeakReader,
    rules: CanonicalRules,
    *,
    accept_invalid: bool = False,
    stop: threading.Event | None = None,
) -> None:
    """Raise IngestRefused, in one line naming what was found, for a file not to ingest.

    ``accept_invalid`` (implied by the text format, prose with a few addresses) lets a file
    with a low share of valid addresses through, never one with none at all.
    """
    source = reader.source
    name = shown_path(path)
    if source.size == 0:
        raise IngestRefused(f"{name}: the file is empty; nothing recorded")
    quality = measure_sample(reader, rules, stop=stop)
    if quality.records == 0 and reader.truncated_at is not None:
        raise IngestRefused(
            f"{name}: the compressed stream is truncated after {reader.truncated_at:,} bytes, "
            "before its first complete record; nothing recorded; get a complete copy of the file"
        )
    binary = _looks_binary(path, source)

    def how(words: OptionWords) -> str:
        reason = words.format_given if source.reason == FORMAT_GIVEN else source.reason
        text = f"read as {source.format.value} ({reason})"
        if binary:
            # Free text finds a few strings like addresses in any program: never suggested.
            text = (
                f"{text}, a binary file (NUL bytes in its first {BINARY_SNIFF_BYTES // 1024} KiB)"
            )
        return text

    if quality.records == 0:
        suggest = _suggest(path, source, rules)  # reads the file again: only to refuse
        raise IngestRefused.saying(
            lambda w: f"{name}: no records {how(w)}; nothing recorded; {suggest(w)}"
        )
    if quality.valid == 0 and quality.whole_file:
        suggest = _suggest(path, source, rules)
        raise IngestRefused.saying(
            lambda w: (
                f"{name}: no valid address in its {quality.records:,} records {how(w)}; "
                f"nothing recorded; {suggest(w)}"
            )
        )
    lenient = accept_invalid or source.format is LeakFormat.TEXT
    if quality.share < MIN_VALID_SHARE and not lenient:
        first = "its" if quality.whole_file else "the first"
        suggest = _suggest(path, source, rules)
        raise IngestRefused.saying(
            lambda w: (
                f"{name}: only {quality.valid:,} of {first} {quality.records:,} records "
                f"({quality.share:.0%}) hold a valid address {how(w)}; nothing recorded; "
                f"{suggest(w)}, or {w.accept_invalid}"
            )
        )


def leak_elsewhere(session: Session, *, slug: str, digests: FileDigests) -> FileElsewhere | None:
    """The first other leak that recorded this file by any of its fingerprints: its bytes,
    its decompressed content, its text, or a prefix of either (``file_elsewhere``)."""
    return file_elsewhere(
        session,
        slug=slug,
        sha256=digests.bytes_sha256,
        content_sha256=digests.content_sha256,
        content_prefixes=digests.content_prefixes,
        prefix_bytes=PREFIX_BYTES,
        text_sha256=digests.text_sha256,
        text_prefixes=digests.text_prefixes,
    )


def refuse_if_elsewhere(path: Path, elsewhere: FileElsewhere | None, *, slug: str) -> None:
    """Refuse a file another leak has recorded: the same file under a typo'd slug would warn
    everyone in it a second time. The same bytes, the same content in another
    compression (``gzip -c leak.txt > leak.txt.gz`` of an ingested ``leak.txt``), or the
    same text in other line ends, BOM or encoding (``unix2dos``, UTF-16)."""
    if elsewhere is None:
        return
    when = f"{elsewhere.started_at:%Y-%m-%d}"
    shown = f" (as {shown_path(Path(elsewhere.name))})" if elsewhere.name else ""
    if elsewhere.same_bytes:
        what = f"this file was already ingested as leak {elsewhere.slug!r} on {when}"
    elif elsewhere.same_prefix_bytes is not None:
        # A download or copy cut short, a compressed stream cut, or a longer version: the
        # people of the shared part would be warned again.
        what = (
            f"this file's content starts with the same {_size(elsewhere.same_prefix_bytes)} "
            f"as a file ingested as leak {elsewhere.slug!r} on {when}{shown}: one of them "
            "is a copy of the other cut short, or extended"
        )
    elif elsewhere.same_text:
        # CRLF for LF, a BOM added or removed, UTF-16 for UTF-8: the same people again.
        what = (
            f"this file's text was already ingested as leak {elsewhere.slug!r} on {when}"
            f"{shown}, with other line ends, byte-order mark or encoding"
        )
    else:
        what = (
            f"this file's content was already ingested as leak {elsewhere.slug!r} on {when}"
            f"{shown}, in another compression"
        )
    raise IngestRefused.saying(
        lambda w: (
            f"{shown_path(path)}: {what}; nothing recorded; to record it as leak {slug!r} "
            f"as well, {w.also_as_new_leak}"
        )
    )


def _size(count: int) -> str:
    """A power of two of bytes, 64 KiB and up, in its unit: "64 KiB", "2 MiB", "1 GiB"."""
    for unit, shift in (("GiB", 30), ("MiB", 20)):
        if count >= 1 << shift:
            return f"{count / (1 << shift):g} {unit}"
    return f"{count / 1024:g} KiB"


def _looks_binary(path: Path, source: LeakSource) -> bool:
    """A plain file with NUL bytes near its start and no UTF-16/32 text: a program, an image."""
    if source.compression is not None or not source.encoding.startswith("utf-8"):
        return False
    try:
        with path.open("rb") as handle:
            return b"\0" in handle.read(BINARY_SNIFF_BYTES)
    except OSError:
        return False


def _suggest(path: Path, source: LeakSource, rules: CanonicalRules) -> Say:
    """Name the format that reads the most valid addresses from the file's start (in the
    words of the face that shows it)."""
    current = source.format
    if current is LeakFormat.EML and source.reason != FORMAT_GIVEN:
        # A mail, detected by its header: any other format would read its sender's and its
        # relays' addresses (From, Received) as leaked ones. A mass mail sent as Bcc shows
        # no recipient, and then no one's address leaked.
        return lambda w: (
            "its To, Cc and Bcc name no one (a mail to undisclosed recipients leaks no "
            "address; the sender's is never read), so no other format is suggested"
        )
    skip = {LeakFormat.AUTO, current}
    if _looks_binary(path, source):
        skip.add(LeakFormat.TEXT)
    best: tuple[float, LeakFormat] | None = None
    # Free text last, and only if no format of records fits: it counts only the strings
    # that look like addresses, so it reads nearly any text "well".
    for fmt in [*(f for f in LeakFormat if f is not LeakFormat.TEXT), LeakFormat.TEXT]:
        if fmt in skip or (fmt is LeakFormat.TEXT and best is not None):
            continue
        try:
            with open_leak(path, fmt) as reader:
                quality = measure_sample(reader, rules, limit=_SUGGEST_RECORDS)
        except LeakFileError:
            continue  # e.g. a CSV without an address column
        good = quality.valid and quality.share >= MIN_VALID_SHARE
        if good and (best is None or quality.share > best[0]):
            best = (quality.share, fmt)
    if best is None:
        others = "|".join(f.value for f in LeakFormat if f not in (LeakFormat.AUTO, current))
        return lambda w: f"no other format reads addresses from it either ({w.choice(others)})"
    share, fmt = best
    return lambda w: f"{w.choice(fmt.value)} reads {share:.0%} of its first records as addresses"
