"""`leakguard notices`: what an operator checks before and while mailing 30,000 people."""

from __future__ import annotations

import click

from service.cli.base import cli, cli_actor, emit_json, migrated_runtime
from service.db import utcnow
from service.notices.campaigns import campaign_status, set_paused
from service.notices.preview import prepare_warning, preview_warning, send_test_warning
from service.notices.render import LANGUAGES, PreparedNotice
from service.runtime import Runtime


@cli.group("notices")
def notices_group() -> None:
    """Warning notices: preview, test, pause, resume, status."""


def _prepared(value: Runtime, slug: str, language: str) -> PreparedNotice:
    with value.db.read_session() as session:
        return prepare_warning(session, value.settings, slug=slug, language=language)


@notices_group.command("preview")
@click.option("--leak", "slug", required=True)
@click.option("--language", type=click.Choice(LANGUAGES), default=LANGUAGES[0], show_default=True)
def notices_preview(slug: str, language: str) -> None:
    """Print one warning of the leak as a person would get it (address masked)."""
    value = migrated_runtime()
    prepared = _prepared(value, slug, language)
    click.echo(preview_warning(prepared, value.settings, now=utcnow()))


@notices_group.command("test-send")
@click.option("--leak", "slug", required=True)
@click.option("--to", "recipient", required=True, help="A seed address of your own.")
@click.option("--language", type=click.Choice(LANGUAGES), default=LANGUAGES[0], show_default=True)
def notices_test_send(slug: str, recipient: str, language: str) -> None:
    """Send one warning of the leak to a seed address, now, outside the campaign."""
    value = migrated_runtime()
    prepared = _prepared(value, slug, language)
    sent = send_test_warning(prepared, value.settings, recipient=recipient, now=utcnow())
    click.echo(f"sent to {sent.masked_recipient} via {sent.via}: {sent.message_id}")


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
    """Count the leak's warnings by state: pending, queued, sending, sent, failed; paused."""
    with migrated_runtime().db.read_session() as session:
        status = campaign_status(session, slug)
    payload = status.to_json()
    if as_json:
        emit_json(payload)
        return
    counts = ", ".join(
        f"{payload[s]} {s}" for s in ("pending", "queued", "sending", "sent", "failed")
    )
    click.echo(f"{slug}: {'PAUSED; ' if status.paused else ''}{counts}")
