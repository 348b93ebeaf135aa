"""`leakguard ingest` and `leakguard leaks`: the operator's side of a leak."""

from __future__ import annotations

import getpass
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any

import click

from jobs.ingest.checks import IngestInterrupted
from jobs.ingest.lock import file_is_held
from jobs.ingest.parts import MAX_PARTS
from jobs.ingest.pipeline import ingest_leak
from jobs.ingest.split import ingest_in_parts
from jobs.reader.stream import LeakFormat
from service.cli.base import cli, emit_json, migrated_runtime
from service.cli.progress import LINE_SECONDS, ProgressDisplay, ProgressMode
from service.leaks.catalogue import LeakView, list_leaks, show_leak


@cli.command("ingest")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--leak", "slug", required=True, help="Short name of the leak, e.g. exchange-2019.")
@click.option("--name", help="Human name of the leak (default: the slug).")
@click.option("--source", help="Where the list came from (a URL, a ticket).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice([f.value for f in LeakFormat]),
    default=LeakFormat.AUTO.value,
    show_default=True,
    help="auto detects all but text.",
)
@click.option("--dry-run", is_flag=True, help="Report what would be flagged; write nothing.")
@click.option(
    "--chunk-records",
    type=click.IntRange(min=1),
    help="Records per transaction: memory and resume granularity "
    "(default: LEAKGUARD_INGEST_CHUNK_RECORDS, 100000).",
)
@click.option(
    "--enqueue",
    is_flag=True,
    help="Cut the file into byte-range parts, one rq job each, for `leakguard worker`s.",
)
@click.option(
    "--parts",
    type=click.IntRange(min=1, max=MAX_PARTS),
    help="With --enqueue: how many parts (default: one per 64 MiB, at least 4).",
)
@click.option(
    "--wait/--no-wait",
    default=True,
    show_default=True,
    help="With --enqueue: wait for the workers and print the totals.",
)
@click.option(
    "--accept-invalid",
    is_flag=True,
    help="Ingest even if most of the first records hold no valid address (prose, notes). "
    "--format text implies it.",
)
@click.option(
    "--also-as-new-leak",
    is_flag=True,
    help="Ingest a file another leak has already recorded, as this leak as well.",
)
@click.option("--by", "operator", help="Who runs this ingest (default: your login name).")
@click.option(
    "--progress",
    "progress_mode",
    type=click.Choice([m.value for m in ProgressMode]),
    default=ProgressMode.AUTO.value,
    show_default=True,
    help="On stderr: a bar on a terminal, else a line every 10 s; json: JSON lines.",
)
@click.option("--progress-every", type=click.FloatRange(min=0), default=LINE_SECONDS, hidden=True)
@click.option("--quiet", is_flag=True, help="No progress on stderr.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
def ingest_command(
    path: Path,
    slug: str,
    name: str | None,
    source: str | None,
    fmt: str,
    dry_run: bool,
    chunk_records: int | None,
    enqueue: bool,
    parts: int | None,
    wait: bool,
    accept_invalid: bool,
    also_as_new_leak: bool,
    operator: str | None,
    progress_mode: str,
    progress_every: float,
    quiet: bool,
    as_json: bool,
) -> None:
    """Flag every account whose address is in the leak file PATH, and queue their warnings.

    Safe to run again: a finished file changes nothing, an interrupted one resumes. Refused,
    with nothing recorded: an empty file, anything but a regular file, a file without a
    valid address or whose first records are mostly not addresses in its format, a file
    another leak has. Ctrl-C (or SIGTERM) stops at the next chunk; run again to resume.
    """
    value = migrated_runtime()
    if enqueue and dry_run:
        raise click.ClickException("--dry-run runs in one process: drop --enqueue")
    options: dict[str, Any] = {
        "slug": slug,
        "name": name,
        "source": source,
        "fmt": LeakFormat(fmt),
        "accept_invalid": accept_invalid,
        "also_as_new_leak": also_as_new_leak,
        "operator": operator or login_name(),
    }
    display = ProgressDisplay(ProgressMode(progress_mode), quiet=quiet, every=progress_every)
    try:
        with display, stop_on_signals() as stop:
            if enqueue:
                split = ingest_in_parts(
                    value,
                    path,
                    parts=parts,
                    wait=wait,
                    on_progress=display.parts,
                    stop=stop,
                    **options,
                )
            else:
                report = ingest_leak(
                    value,
                    path,
                    dry_run=dry_run,
                    chunk_records=chunk_records,
                    on_progress=display.ingest,
                    stop=stop,
                    **options,
                )
    except IngestInterrupted as exc:
        click.echo(str(exc), err=True)
        raise click.exceptions.Exit(INTERRUPTED_EXIT) from None
    if enqueue:
        emit_json(split.to_json()) if as_json else click.echo(split.summary())
        if stop.is_set() and not split.complete:
            raise click.exceptions.Exit(INTERRUPTED_EXIT)
        return
    emit_json(report.to_json()) if as_json else click.echo(report.summary())


INTERRUPTED_EXIT = 130  # 128 + SIGINT, as shells report a Ctrl-C


@contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """Turn the first SIGINT or SIGTERM into a stop request the ingest sees at its next
    chunk boundary; a second one interrupts at once."""
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    previous: dict[int, Any] = {}
    try:
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, request_stop)
    except ValueError:  # not the main thread (an embedding caller): no handlers
        pass
    try:
        yield stop
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def login_name() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return None


@cli.group("leaks")
def leaks_group() -> None:
    """Leaks ingested so far."""


@leaks_group.command("list")
@click.option("--json", "as_json", is_flag=True)
def leaks_list(as_json: bool) -> None:
    """List leaks, newest first, with their totals."""
    value = migrated_runtime()
    with value.db.read_session() as session:
        leaks = list_leaks(session, held=partial(file_is_held, value))
    if as_json:
        emit_json([leak.to_json() for leak in leaks])
        return
    if not leaks:
        click.echo("no leaks yet: `leakguard ingest FILE --leak SLUG` adds one")
        return
    click.echo(f"{'slug':<24} {'state':<11} {'lines':>12} {'valid':>12} {'flagged':>9}  name")
    for leak in leaks:
        c = leak.counters
        click.echo(
            f"{leak.slug:<24} {leak.state:<11} {c['lines']:>12} {c['valid']:>12} "
            f"{c['matched']:>9}  {leak.name}"
        )


@leaks_group.command("show")
@click.argument("slug")
@click.option("--json", "as_json", is_flag=True)
def leaks_show(slug: str, as_json: bool) -> None:
    """Show one leak: counts, state, files and formats, timings, exposures, notices."""
    value = migrated_runtime()
    with value.db.read_session() as session:
        leak = show_leak(session, slug, held=partial(file_is_held, value))
    if as_json:
        emit_json(leak.to_json())
        return
    click.echo(_describe(leak))


def _describe(leak: LeakView) -> str:
    c = leak.counters
    lines = [
        f"{leak.slug}: {leak.name} ({leak.state})",
        f"  source: {leak.source or '-'}",
        f"  created {leak.created_at:%Y-%m-%d %H:%M} UTC, updated {leak.updated_at:%Y-%m-%d %H:%M}",
        f"  {c['lines']} records: {c['valid']} valid, {c['invalid']} invalid, "
        f"{c['duplicates']} duplicates",
        f"  {c['matched']} accounts flagged, {c['notices']} warnings queued",
        "  exposures: " + (_counts(leak.exposures) or "none"),
        "  notices: " + (_counts(leak.notices) or "none"),
    ]
    for f in leak.files:
        lines.append(
            f"  file {f.name or '-'}: {f.size:,} bytes, {f.format}"
            f"{'/' + f.compression if f.compression else ''}, sha256 {f.sha256}, "
            f"ran by {f.ran_by or 'unknown'}"
        )
        per_run = ", ".join(f"{s:.1f}s" for s in f.run_seconds)
        took = f"{f.seconds:.1f}s in {f.runs} run(s)" + (f" ({per_run})" if per_run else "")
        hint = "; run the same ingest again to resume" if f.state == "interrupted" else ""
        lines.append(
            f"    {f.state}, {f.records_done:,} records done, {took}; read as {f.read_as}{hint}"
        )
    return "\n".join(lines)


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
