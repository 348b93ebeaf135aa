"""`leakguard notices`: what an operator checks before and while mailing 30,000 people."""

from __future__ import annotations

import click

from jobs.deliver import relay_notices
from jobs.queues import redis_connection, uses_fake_redis
from service.cli.base import cli, cli_actor, emit_json, migrated_runtime
from service.db import utcnow
from service.db.base import read_whole_number
from service.notices.campaigns import (
    campaign_status,
    cancel_warnings,
    list_failed,
    retry_failed,
    set_paused,
)
from service.notices.preview import (
    WarningVariant,
    prepare_warning,
    preview_warning,
    send_test_warning,
)
from service.notices.render import LANGUAGES, PreparedNotice
from service.runtime import Runtime

KINDS = [variant.value for variant in WarningVariant]


@cli.group("notices")
def notices_group() -> None:
    """Warning notices: preview, test, pause, resume, status, failed, retry, cancel."""


def _prepared(value: Runtime, slug: str, language: str, kind: str) -> PreparedNotice:
    with value.db.read_session() as session:
        return prepare_warning(
            session, value.settings, slug=slug, language=language, variant=WarningVariant(kind)
        )


@notices_group.command("preview")
@click.option("--leak", "slug", required=True)
@click.option(
    "--kind",
    type=click.Choice(KINDS),
    help="email: the address leaked; credential: with a password. Default: both.",
)
@click.option("--language", type=click.Choice(LANGUAGES), help="Default: every language there is.")
def notices_preview(slug: str, kind: str | None, language: str | None) -> None:
    """Print the leak's warnings as people would get them (address masked), each variant
    with its own subject."""
    value = migrated_runtime()
    shown = []
    for each_kind in [kind] if kind else KINDS:
        for each_language in [language] if language else LANGUAGES:
            prepared = _prepared(value, slug, each_language, each_kind)
            message = preview_warning(prepared, value.settings, now=utcnow())
            shown.append(f"=== {each_kind} warning, {each_language} ===\n{message}")
    click.echo("\n".join(shown))


@notices_group.command("test-send")
@click.option("--leak", "slug", required=True)
@click.option("--to", "recipient", required=True, help="A seed address of your own.")
@click.option("--kind", type=click.Choice(KINDS), default=KINDS[0], show_default=True)
@click.option("--language", type=click.Choice(LANGUAGES), default=LANGUAGES[0], show_default=True)
def notices_test_send(slug: str, recipient: str, kind: str, language: str) -> None:
    """Send one warning of the leak to a seed address, now, outside the campaign."""
    value = migrated_runtime()
    prepared = _prepared(value, slug, language, kind)
    sent = send_test_warning(prepared, value.settings, recipient=recipient, now=utcnow())
    # The operator is on the server: the folder's path tells them where to look.
    where = "" if value.settings.smtp_url else f" ({value.settings.resolved_mail_dir})"
    click.echo(f"sent to {sent.masked_recipient} via {sent.via}{where}: {sent.message_id}")


def _set_paused(slug: str, paused: bool) -> None:
    value = migrated_runtime()
    with value.db.transaction() as session:
        changed = set_paused(session, slug, paused=paused, actor=cli_actor(), now=utcnow())
    word = "paused" if paused else "resumed"
    click.echo(f"warnings of {slug} {word}" if changed else f"warnings of {slug} already {word}")


@notices_group.command("pause")
@click.option("--leak", "slug", required=True)
def notices_pause(slug: str) -> None:
    """Stop sending the leak's warnings; pending ones wait."""
    _set_paused(slug, True)


@notices_group.command("resume")
@click.option("--leak", "slug", required=True)
def notices_resume(slug: str) -> None:
    """Send the leak's warnings again."""
    _set_paused(slug, False)


@notices_group.command("status")
@click.option("--leak", "slug", required=True)
@click.option("--json", "as_json", is_flag=True)
def notices_status(slug: str, as_json: bool) -> None:
    """Count the leak's warnings by state: pending, queued, sending, sent, failed,
    cancelled; paused."""
    with migrated_runtime().db.read_session() as session:
        status = campaign_status(session, slug)
    payload = status.to_json()
    if as_json:
        emit_json(payload)
        return
    counts = ", ".join(
        f"{payload[s]} {s}" for s in ("pending", "queued", "sending", "sent", "failed", "cancelled")
    )
    click.echo(f"{slug}: {'PAUSED; ' if status.paused else ''}{counts}")


@notices_group.command("failed")
@click.option("--leak", "slug", required=True)
@click.option("--json", "as_json", is_flag=True)
def notices_failed(slug: str, as_json: bool) -> None:
    """List the leak's warnings that failed for good: id, address (masked), attempts,
    when, reason."""
    with migrated_runtime().db.read_session() as session:
        failed = list_failed(session, slug)
    if as_json:
        emit_json([notice.to_json() for notice in failed])
        return
    if not failed:
        click.echo(f"no failed warnings for {slug}")
        return
    click.echo(f"{len(failed)} failed warnings for {slug}:")
    click.echo(f"{'id':>10}  {'address':<32} {'attempts':>8}  {'failed at (UTC)':<16}  reason")
    for notice in failed:
        when = f"{notice.failed_at:%Y-%m-%d %H:%M}" if notice.failed_at else "-"
        click.echo(
            f"{notice.id:>10}  {notice.address:<32} {notice.attempts:>8}  {when:<16}  "
            f"{notice.reason}"
        )
    click.echo(f"retry them: leakguard notices retry --leak {slug} [--ids ID,...]")


def _ids(text: str | None) -> list[int] | None:
    if text is None:
        return None
    ids = [read_whole_number(part) for part in text.replace(",", " ").split()]
    # A usage error (exit 2), as any other malformed option value is.
    if None in ids:  # not digits, or beyond any id (the database would refuse to compare)
        raise click.UsageError(f"--ids takes notice ids like 12,15,40, not {text!r}")
    if not ids:
        raise click.UsageError("--ids names no notice")
    return [number for number in ids if number is not None]


@notices_group.command("retry")
@click.option("--leak", "slug", required=True)
@click.option("--ids", help="Only these notice ids (comma-separated), from `notices failed`.")
def notices_retry(slug: str, ids: str | None) -> None:
    """Send the leak's failed warnings again: back to pending, attempts start over."""
    wanted = _ids(ids)
    value = migrated_runtime()
    with value.db.transaction() as session:
        outcome = retry_failed(session, slug, ids=wanted, actor=cli_actor(), now=utcnow())
    line = f"{len(outcome.retried)} failed warnings of {slug} are pending again"
    if outcome.not_failed:
        shown = ", ".join(str(i) for i in outcome.not_failed)
        line += f"; not a failed warning of {slug}, left alone: {shown}"
    click.echo(line)
    if not outcome.retried:
        return
    if uses_fake_redis(value.settings):
        click.echo("send them with `leakguard worker --burst` (no LEAKGUARD_REDIS_URL is set)")
        return
    relayed = relay_notices(value, redis_connection(value.settings))
    click.echo(f"relayed {relayed} notices to the queue for the workers")


@notices_group.command("cancel")
@click.option("--leak", "slug", required=True)
def notices_cancel(slug: str) -> None:
    """Cancel the leak's warnings not sent yet (pending, queued, failed)."""
    with migrated_runtime().db.transaction() as session:
        outcome = cancel_warnings(session, slug, actor=cli_actor(), now=utcnow())
    line = f"cancelled {outcome.cancelled} unsent warnings of {slug}"
    if outcome.sent:
        line += f"; {outcome.sent} had already been sent and cannot be unsent"
    if outcome.sending:
        line += f"; {outcome.sending} are being sent right now and may still go out"
    click.echo(line)
