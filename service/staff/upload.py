"""A leak file uploaded on the staff site: kept like the instance's other private files,
then ingested by the very run the CLI starts.

With a shared Redis (``LEAKGUARD_REDIS_URL``) the upload is ``leakguard ingest FILE --leak
SLUG --enqueue --no-wait``: the file is cut into parts for the workers and the page follows
their progress (the leak list reads it from the database). On the embedded default there
is no worker to hand parts to, so it is ``leakguard ingest FILE --leak SLUG`` in the
request itself, and the page answers with its summary. Either way the checks are the
CLI's, run before anything is recorded, and a refusal is the CLI's own message, with the
uploaded file's name in place of the stored path and, where it names an option, the
caller's words for it (service/leaks/wording.py: the page names its form fields).

Stored files go to ``<instance>/uploads/<random>/<name>`` (folder 0700, file 0600): workers
read a split file by its path, so they must see the same instance folder.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TypedDict

from jobs.ingest.checks import IngestRefused
from jobs.ingest.lock import IngestBusy
from jobs.ingest.pipeline import ingest_leak
from jobs.ingest.split import ingest_in_parts
from jobs.queues import uses_fake_redis
from jobs.reader.stream import LeakFileError, LeakFormat, expanded_bytes
from service.errors import LeakguardError
from service.leaks.catalogue import LeakFacts, check_slug
from service.leaks.wording import Worded, words_of
from service.private_files import PRIVATE_FILE, private_dir
from service.runtime import Runtime

UPLOAD_DIR = "uploads"
COPY_BLOCK = 1 << 20
MAX_NAME_CHARS = 200
# A file name is at most 255 bytes on Linux filesystems (NAME_MAX), whatever its characters:
# 200 "ü" are 400 bytes. The stored name keeps well under it.
MAX_NAME_BYTES = 200
MAX_SUFFIX_BYTES = 20
# Ingested in the request (the embedded default), a compressed upload may expand to this
# many times the upload limit: a few times an address list's usual ratio (4-5x for gzip),
# and a bound on the request's work whatever the file, as 50 KB of gzip can expand to
# 50 MB of blank lines. Larger leaks go through the CLI, as larger uploads do.
MAX_EXPANSION = 8


class IngestOptions(TypedDict):
    """What the CLI's ``ingest`` passes to either run, as the page's form gives it."""

    slug: str
    name: str | None
    source: str | None
    facts: LeakFacts | None
    fmt: LeakFormat
    accept_invalid: bool
    also_as_new_leak: bool
    operator: str


class UploadRefused(LeakguardError, Worded):
    """The CLI would refuse this file (or this leak): its message says why, in one line,
    in the words of whoever shows it (``words_of``: the form's fields, not the CLI's
    flags)."""

    status = 422
    code = "upload_refused"
    title = "The leak file was not ingested"


@dataclass(frozen=True, slots=True)
class StartedIngest:
    """What the upload started: ``queued`` parts for the workers, or, run in the request,
    ``summary`` (the CLI's own summary line)."""

    leak: str
    file_name: str
    sha256: str
    queued: bool
    parts: int
    already_ingested: bool
    summary: str


def safe_name(name: str) -> str:
    """The uploaded file's basename as stored: printable, no folder, never empty, at most
    MAX_NAME_CHARS characters and MAX_NAME_BYTES bytes of UTF-8 (its extension kept)."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = "".join(c if c.isprintable() and c not in "\0" else "_" for c in base).strip()
    cleaned = _fit(cleaned.lstrip("."))
    return cleaned or "leak-file"


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def _fit(name: str) -> str:
    """``name`` cut to MAX_NAME_CHARS characters and MAX_NAME_BYTES bytes of UTF-8, at a
    character boundary; the stem is cut, not a short extension (``.txt``, ``.csv.gz``: the
    reader's format hint)."""
    if len(name) <= MAX_NAME_CHARS and len(_utf8(name)) <= MAX_NAME_BYTES:
        return name
    stem, dot, rest = name.partition(".")
    suffix = dot + rest
    if len(_utf8(suffix)) > MAX_SUFFIX_BYTES:
        stem, suffix = name, ""
    stem = stem[: MAX_NAME_CHARS - len(suffix)]
    room = MAX_NAME_BYTES - len(_utf8(suffix))
    return _utf8(stem)[:room].decode("utf-8", "ignore").rstrip() + suffix


def store_upload(stream: BinaryIO, name: str, *, instance_dir: Path) -> Path:
    """Copy the upload to a folder of its own under the instance (0700, the file 0600);
    return its path. The copy is streamed: the upload is never held in memory whole."""
    folder = private_dir(private_dir(instance_dir / UPLOAD_DIR) / secrets.token_hex(8))
    path = folder / safe_name(name)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
        with os.fdopen(fd, "wb") as handle:
            shutil.copyfileobj(stream, handle, COPY_BLOCK)
    except BaseException:  # a full disk, a client gone mid-upload: leave no folder behind
        _forget(path)
        raise
    return path


def start_upload_ingest(
    runtime: Runtime,
    stream: BinaryIO,
    file_name: str,
    *,
    slug: str,
    name: str | None = None,
    source: str | None = None,
    facts: LeakFacts | None = None,
    fmt: LeakFormat = LeakFormat.AUTO,
    accept_invalid: bool = False,
    also_as_new_leak: bool = False,
    operator: str,
) -> StartedIngest:
    """Store the upload and start the CLI's ingest of it (see the module docstring).

    Raises UploadRefused with the CLI's message for whatever the CLI refuses (a bad slug, a
    retracted leak, an empty or binary file, a file of mostly non-addresses, one another
    leak has, a file being ingested right now); a refused upload's stored copy is removed.
    """
    check_slug(slug)
    shown = safe_name(file_name)
    path = store_upload(stream, shown, instance_dir=runtime.settings.instance_dir)
    options = IngestOptions(
        slug=slug,
        name=name,
        source=source,
        facts=facts,
        fmt=fmt,
        accept_invalid=accept_invalid,
        also_as_new_leak=also_as_new_leak,
        operator=operator,
    )
    try:
        if uses_fake_redis(runtime.settings):
            _refuse_a_bomb(path, shown, limit=MAX_EXPANSION * runtime.settings.max_request_bytes)
            report = ingest_leak(runtime, path, **options)
            _forget(path)  # read to the end: nothing comes back for it
            return StartedIngest(
                slug,
                shown,
                report.sha256,
                queued=False,
                parts=0,
                already_ingested=report.already_ingested,
                summary=report.summary(),
            )
        split = ingest_in_parts(runtime, path, wait=False, **options)
    except UploadRefused:
        _forget(path)
        raise
    except (IngestRefused, LeakFileError, IngestBusy) as exc:
        _forget(path)
        refused = exc  # ``exc`` is unbound after the except block; ``say`` runs later
        raise UploadRefused.saying(
            lambda words: words_of(refused, words).replace(str(path), shown)
        ) from None
    except BaseException:  # anything else (a bug, the database gone): nothing keeps it
        _forget(path)
        raise
    if split.already_ingested:
        _forget(path)
    return StartedIngest(
        slug,
        shown,
        split.sha256,
        queued=not split.already_ingested,
        parts=split.parts,
        already_ingested=split.already_ingested,
        summary=split.summary(),
    )


def _refuse_a_bomb(path: Path, shown: str, *, limit: int) -> None:
    """Raise UploadRefused if the compressed file at ``path`` expands past ``limit`` bytes.

    Raises LeakFileError for a corrupt stream, as the ingest would.
    """
    size = expanded_bytes(path, limit=limit)
    if size is not None and size > limit:
        raise UploadRefused(
            f"{shown}: decompressed, this file is larger than {limit // (1024 * 1024)} MiB, "
            "more than a page ingests while you wait; ingest it with `leakguard ingest`"
        )


def _forget(path: Path) -> None:
    """Remove a stored upload nothing will read again, and its folder."""
    path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # not empty: not ours to remove
        path.parent.rmdir()
