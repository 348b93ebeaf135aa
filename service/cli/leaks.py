"""`leakguard ingest` and `leakguard leaks`: the operator's side of a leak."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from tqdm import tqdm

from jobs.ingest.parts import MAX_PARTS, SplitProgress
from jobs.ingest.pipeline import ingest_leak
from jobs.ingest.split import ingest_in_parts
from jobs.reader.stream import LeakFormat
from service.cli.base import cli, emit_json, migrated_runtime
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
    as_json: bool,
) -> None:
    """Flag every account whose address is in the leak file PATH, and queue their warnings.

    Safe to run again: a finished file changes nothing, an interrupted one resumes.
    """
    value = migrated_runtime()
    if enqueue:
        if dry_run:
            raise click.ClickException("--dry-run runs in one process: drop --enqueue")
        with tqdm(total=0, unit=" parts", disable=None, file=sys.stderr, leave=False) as parts_bar:

            def parts_progress(state: SplitProgress) -> None:
                parts_bar.total = state.parts
                parts_bar.update(state.complete - parts_bar.n)
                parts_bar.set_postfix(lines=state.totals.lines, matched=state.totals.matched)

            split = ingest_in_parts(
                value,
                path,
                slug=slug,
                name=name,
                source=source,
                fmt=LeakFormat(fmt),
                parts=parts,
                wait=wait,
                on_progress=parts_progress,
            )
        emit_json(split.to_json()) if as_json else click.echo(split.summary())
        return
    bar = tqdm(unit=" lines", unit_scale=True, disable=None, file=sys.stderr, leave=False)
    matched = 0

    def progress(records: int, newly_matched: int) -> None:
        nonlocal matched
        matched += newly_matched
        bar.set_postfix(matched=matched, refresh=False)
        bar.update(records)

    with bar:
        report = ingest_leak(
            value,
            path,
            slug=slug,
            name=name,
            source=source,
            fmt=LeakFormat(fmt),
            dry_run=dry_run,
            chunk_records=chunk_records,
            on_progress=progress,
        )
    emit_json(report.to_json()) if as_json else click.echo(report.summary())


@cli.group("leaks")
def leaks_group() -> None:
    """Leaks ingested so far."""


@leaks_group.command("list")
@click.option("--json", "as_json", is_flag=True)
def leaks_list(as_json: bool) -> None:
    """List leaks, newest first, with their totals."""
    with migrated_runtime().db.read_session() as session:
        leaks = list_leaks(session)
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
    with migrated_runtime().db.read_session() as session:
        leak = show_leak(session, slug)
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
        took = f"{f.seconds:.1f}s over {f.runs} run(s)" if f.runs else "not finished"
        lines.append(
            f"  file {f.sha256[:12]} {f.format}{'/' + f.compression if f.compression else ''} "
            f"{f.size} bytes, {f.state}, {f.records_done} records done, {took}"
        )
    return "\n".join(lines)


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
