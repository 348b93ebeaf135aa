"""`leakguard ingest` and `leakguard leaks`: the operator's side of a leak."""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import click
from tqdm import tqdm

from jobs.ingest.parts import MAX_PARTS, SplitProgress
from jobs.ingest.pipeline import ingest_leak
from jobs.ingest.split import ingest_in_parts
from jobs.reader.stream import LeakFormat
from service.cli.base import cli, cli_actor, emit_json, migrated_runtime
from service.db import utcnow
from service.leaks.catalogue import (
    LeakFacts,
    LeakView,
    check_observed_at,
    edit_leak,
    list_leaks,
    show_leak,
)
from service.leaks.retract import retract_leak
from service.notices.render import LANGUAGES

# The notices' languages past the first: each gets its own --name-<language>.
TRANSLATED = LANGUAGES[1:]


def leak_fact_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--name, --name-<language> for every other language, --observed-at."""
    for language in reversed(TRANSLATED):
        command = click.option(
            f"--name-{language}",
            f"name_{language}",
            help=f"The leak's name in notices in {language!r} (default: --name).",
        )(command)
    command = click.option(
        "--observed-at",
        help="The leak's own date (when it appeared), e.g. 2019-11-01: notices say "
        "'first seen on'. Not in the future.",
    )(command)
    return click.option(
        "--name",
        help="The leak's name in notices (default: neutral wording, never the slug).",
    )(command)


def leak_facts(observed_at: str | None, names: dict[str, str | None]) -> LeakFacts:
    """The facts given on the command line; one line and exit 1 for a bad date."""
    day = None
    if observed_at is not None:
        try:
            day = date.fromisoformat(observed_at.strip())
        except ValueError:
            raise click.ClickException(
                f"--observed-at takes a date like 2019-11-01, not {observed_at!r}"
            ) from None
        check_observed_at(day, now=utcnow())
    given = {
        language: " ".join(text.split())
        for language in TRANSLATED
        if (text := names.get(f"name_{language}"))
    }
    return LeakFacts(names=given, observed_at=day)


@cli.command("ingest")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--leak", "slug", required=True, help="Short name of the leak, e.g. exchange-2019.")
@leak_fact_options
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
    observed_at: str | None,
    **names: str | None,
) -> None:
    """Flag every account whose address is in the leak file PATH, and queue their warnings.

    Safe to run again: a finished file changes nothing, an interrupted one resumes.
    A leak ingested by mistake is undone with `leakguard leaks retract`.
    """
    facts = leak_facts(observed_at, names)
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
                facts=facts,
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
            facts=facts,
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
            f"{c['matched']:>9}  {leak.name or '-'}"
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
    names = "".join(f", {language}: {name}" for language, name in sorted(leak.names.items()))
    lines = [
        f"{leak.slug}: {leak.name or '(no name: notices use neutral wording)'}{names} "
        f"({leak.state})",
        f"  source: {leak.source or '-'}",
        f"  first seen: {leak.observed_at.isoformat() if leak.observed_at else '-'}",
        f"  created {leak.created_at:%Y-%m-%d %H:%M} UTC, updated {leak.updated_at:%Y-%m-%d %H:%M}",
        f"  {c['lines']} records: {c['valid']} valid, {c['invalid']} invalid, "
        f"{c['duplicates']} duplicates",
        f"  {c['matched']} accounts flagged, {c['notices']} warnings queued",
        "  exposures: " + (_counts(leak.exposures) or "none"),
        "  notices: " + (_counts(leak.notices) or "none"),
    ]
    if leak.retracted is not None:
        lines.insert(
            1,
            f"  retracted {leak.retracted.at:%Y-%m-%d %H:%M} UTC by {leak.retracted.by or '-'}: "
            f"{leak.retracted.reason or '-'}",
        )
    for f in leak.files:
        took = f"{f.seconds:.1f}s over {f.runs} run(s)" if f.runs else "not finished"
        lines.append(
            f"  file {f.sha256[:12]} {f.format}{'/' + f.compression if f.compression else ''} "
            f"{f.size} bytes, {f.state}, {f.records_done} records done, {took}"
        )
    return "\n".join(lines)


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))


@leaks_group.command("retract")
@click.argument("slug")
@click.option("--reason", required=True, help="Why, for the audit log: e.g. 'typo in slug'.")
@click.option("--dry-run", is_flag=True, help="Print what would change; change nothing.")
@click.option("--json", "as_json", is_flag=True)
def leaks_retract(slug: str, reason: str, dry_run: bool, as_json: bool) -> None:
    """Undo a leak ingested by mistake: end its exposures, cancel its unsent warnings,
    remove its watch list. Warnings already sent cannot be unsent. Safe to run again."""
    value = migrated_runtime()
    report = retract_leak(
        value.db, slug, reason=reason, actor=cli_actor(), now=utcnow(), dry_run=dry_run
    )
    emit_json(report.to_json()) if as_json else click.echo(report.summary())


@leaks_group.command("edit")
@click.argument("slug")
@leak_fact_options
@click.option("--source", help="Where the list came from (a URL, a ticket).")
def leaks_edit(
    slug: str, name: str | None, observed_at: str | None, source: str | None, **names: str | None
) -> None:
    """Change what the notices say of a leak; warnings not yet sent use the new facts."""
    facts = leak_facts(observed_at, names)
    with migrated_runtime().db.transaction() as session:
        changed = edit_leak(
            session, slug, name=name, source=source, facts=facts, actor=cli_actor(), now=utcnow()
        )
    click.echo(f"leak {slug} updated" if changed else f"leak {slug}: nothing to change")
