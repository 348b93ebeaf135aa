"""`leakguard ingest` and `leakguard leaks`: the operator's side of a leak."""

from __future__ import annotations

import getpass
import os
from collections.abc import Callable
from datetime import date
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from jobs.ingest import MAX_PARTS
from jobs.ingest.checks import IngestInterrupted
from jobs.ingest.lock import file_is_held
from jobs.ingest.pipeline import IngestProgress, ingest_leak
from jobs.reader.stream import MAX_LINE_BYTES, LeakFormat
from service.cli.base import cli, cli_actor, emit_json, migrated_runtime
from service.cli.progress import LINE_SECONDS, ProgressDisplay, ProgressMode
from service.cli.stopping import INTERRUPTED_EXIT, stop_on_signals
from service.db import utcnow
from service.leaks.catalogue import (
    LeakFacts,
    LeakFileView,
    LeakView,
    check_leak_name,
    check_leak_source,
    check_observed_at,
    check_operator,
    edit_leak,
    facts_kept_note,
    list_leaks,
    show_leak,
)
from service.leaks.retract import retract_leak
from service.notices.render import LANGUAGES
from service.runtime import Runtime

if TYPE_CHECKING:
    from jobs.ingest.split import SplitReport

# Imported where used, not here: the queue's side (jobs.deliver, jobs.queues, the split
# ingest: redis, rq, fakeredis, the mail and events modules, their cryptography) is about
# 15 MiB of a one-process ingest's peak RSS, which without LEAKGUARD_REDIS_URL or --enqueue
# never uses it (tests/integration/test_cli.py holds the ingest to that).

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
    """The facts given on the command line: a value that is no date is a usage error (exit
    2); a date in the future or a bad name, one line and exit 1."""
    day = None
    if observed_at is not None:
        try:
            day = date.fromisoformat(observed_at.strip())
        except ValueError:
            raise click.UsageError(
                f"--observed-at takes a date like 2019-11-01, not {observed_at!r}"
            ) from None
        check_observed_at(day, now=utcnow())
    given = {
        language: check_leak_name(text, what=f"--name-{language}")
        for language in TRANSLATED
        if (text := names.get(f"name_{language}")) is not None
    }
    return LeakFacts(names=given, observed_at=day)


def checked_option(value: str | None, check: Callable[..., str], option: str) -> str | None:
    """``value`` as the domain stores it (None: not given), checked before any work starts:
    the domain checks again, but only after an ingest has read the whole file for its
    fingerprint."""
    return None if value is None else check(value, what=option)


def no_standard_input(_ctx: click.Context, _param: click.Parameter, path: Path) -> Path:
    """Refuse ``-`` as a usage error, unless a file of that name is there.

    ``zcat leak.gz | leakguard ingest -`` is the habit of many tools; the ingest reads its
    file more than once (format detection, fingerprint, resume after a stop), which a pipe
    cannot give, and "-: no such file" did not say so.
    """
    if str(path) == "-" and not path.exists():
        raise click.BadParameter(
            "standard input ('-') cannot be ingested: the file is read more than once "
            "(format, fingerprint, resume); save the leak to a file and give its path"
        )
    return path


@cli.command("ingest")
@click.argument("path", type=click.Path(path_type=Path), callback=no_standard_input)
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
    observed_at: str | None,
    **names: str | None,
) -> None:
    """Flag every account whose address is in the leak file PATH, and queue their warnings.

    Safe to run again: a finished file changes nothing, an interrupted one resumes. Refused,
    with nothing recorded: an empty file, anything but a regular file, a file without a
    valid address or whose first records are mostly not addresses in its format, a file
    another leak has. Ctrl-C (or SIGTERM) stops at the next chunk; run again to resume. A
    leak ingested by mistake is undone with `leakguard leaks retract`.
    """
    facts = leak_facts(observed_at, names)
    name = checked_option(name, check_leak_name, "--name")
    source = checked_option(source, check_leak_source, "--source")
    operator = checked_option(operator, check_operator, "--by")
    value = migrated_runtime(record_key=not dry_run)
    if enqueue and dry_run:
        raise click.ClickException("--dry-run runs in one process: drop --enqueue")
    options: dict[str, Any] = {
        "slug": slug,
        "name": name,
        "source": source,
        "facts": facts,
        "fmt": LeakFormat(fmt),
        "accept_invalid": accept_invalid,
        "also_as_new_leak": also_as_new_leak,
        "operator": operator or login_name(),
    }
    display = ProgressDisplay(ProgressMode(progress_mode), quiet=quiet, every=progress_every)
    relay = WarningRelay(value, active=not dry_run)
    split: SplitReport | None = None
    try:
        with display, stop_on_signals() as stop:
            if enqueue:
                from jobs.ingest.split import ingest_in_parts

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
                    on_progress=relay.after_chunk(display.ingest),
                    stop=stop,
                    **options,
                )
    except IngestInterrupted as exc:
        click.echo(str(exc), err=True)
        raise click.exceptions.Exit(INTERRUPTED_EXIT) from None
    kept = split.facts_not_applied if split is not None else report.facts_not_applied
    if kept:
        click.echo(facts_kept_note(slug, kept), err=True)
    if split is not None:
        emit_json(split.to_json()) if as_json else click.echo(split.summary())
        if split.file_unreadable:
            raise click.exceptions.Exit(1)
        if stop.is_set() and not split.complete:
            raise click.exceptions.Exit(INTERRUPTED_EXIT)
        return
    emit_json(report.to_json()) if as_json else click.echo(report.summary())
    if report.run.notices:
        relay.finish(quiet=quiet)


class WarningRelay:
    """Hand an ingest's warnings to the workers as its chunks commit (LEAKGUARD_REDIS_URL).

    A running worker relays due notices every few seconds anyway; doing it after each
    chunk that flagged accounts lets the first warnings go out while the rest of the file
    is still read, and saves the wait for the worker's relay. Redis unreachable is no
    error: the ingest is committed and the workers relay the warnings when they can.
    """

    def __init__(self, value: Runtime, *, active: bool) -> None:
        self.value = value
        # The embedded default (LEAKGUARD_REDIS_URL unset: jobs.queues.uses_fake_redis) has
        # no shared queue: `leakguard worker --burst` sends them.
        self.active = active and value.settings.redis_url is not None
        self.relayed = 0
        self.flagged = 0  # accounts flagged by the chunks committed so far
        self.unavailable: str | None = None

    def after_chunk(
        self, show: Callable[[IngestProgress], None]
    ) -> Callable[[IngestProgress], None]:
        """The ingest's progress callback: ``show`` it, then relay what the chunk flagged."""

        def committed(progress: IngestProgress) -> None:
            show(progress)
            if progress.matched > self.flagged:
                self.flagged = progress.matched
                self.relay()

        return committed

    def relay(self) -> None:
        if not self.active or self.unavailable is not None:
            return
        from jobs.deliver import RelayUnavailable, relay_notices
        from jobs.queues import redis_connection

        try:
            self.relayed += relay_notices(self.value, redis_connection(self.value.settings))
        except RelayUnavailable as exc:
            self.unavailable = str(exc)  # said once, at the end

    def finish(self, *, quiet: bool) -> None:
        """Relay what is left and say what became of the warnings."""
        if not self.active:
            return
        self.relay()
        if self.unavailable is not None:
            click.echo(
                f"the warnings stay pending, the workers relay them: {self.unavailable}", err=True
            )
        elif not quiet:
            click.echo(f"relayed {self.relayed} notices to the queue for the workers", err=True)


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
            f"{c['matched']:>9}  {leak.name or '-'}"
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
        lines.append(
            f"  file {f.name or '-'}: {f.size:,} bytes, {f.format}"
            f"{'/' + f.compression if f.compression else ''}, sha256 {f.sha256}, "
            + (
                f"content sha256 {f.content_sha256}, "
                if f.content_sha256 not in (None, f.sha256)
                else ""
            )
            + f"ran by {f.ran_by or 'unknown'}"
        )
        per_run = ", ".join(f"{s:.1f}s" for s in f.run_seconds)
        took = f"{f.seconds:.1f}s in {f.runs} run(s)" + (f" ({per_run})" if per_run else "")
        hint = _resume_hint(f)
        lines.append(
            f"    {f.state}, {f.records_done:,} records done, {took}; read as {f.read_as}{hint}"
        )
        if f.truncated_after_bytes is not None:
            lines.append(
                f"    truncated after {f.truncated_after_bytes:,} bytes: the records before "
                "the cut are ingested, the rest of the leak is not in this file"
            )
        if f.long_lines:
            lines.append(
                f"    {f.long_lines} line(s) over {MAX_LINE_BYTES // 1024} KiB, counted invalid"
            )
    return "\n".join(lines)


def _resume_hint(leak_file: LeakFileView) -> str:
    """What to do for an interrupted file: run again, once its file is back (--enqueue)."""
    if leak_file.state != "interrupted":
        return ""
    if leak_file.path is not None:  # the workers open the file there
        try:
            size = os.stat(leak_file.path).st_size
        except OSError:
            return (
                f"; waiting for its file: {leak_file.path} is gone; put it back there, then "
                "run the same ingest again to resume"
            )
        if size != leak_file.size:
            return (
                f"; waiting for its file: {leak_file.path} changed since the ingest began; put "
                "the original back there, then run the same ingest again to resume"
            )
    return "; run the same ingest again to resume"


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
@click.option(
    "--clear-name",
    is_flag=True,
    help="Drop the leak's name in every language: notices use the neutral wording.",
)
def leaks_edit(
    slug: str,
    name: str | None,
    observed_at: str | None,
    source: str | None,
    clear_name: bool,
    **names: str | None,
) -> None:
    """Change what the notices say of a leak; warnings not yet sent use the new facts."""
    facts = leak_facts(observed_at, names)
    name = checked_option(name, check_leak_name, "--name")
    source = checked_option(source, check_leak_source, "--source")
    with migrated_runtime().db.transaction() as session:
        changed = edit_leak(
            session,
            slug,
            name=name,
            source=source,
            facts=facts,
            actor=cli_actor(),
            now=utcnow(),
            clear_names=clear_name,
        )
    click.echo(f"leak {slug} updated" if changed else f"leak {slug}: nothing to change")
