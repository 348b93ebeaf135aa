"""`leakguard notices`: what an operator checks before and while mailing 30,000 people."""

from __future__ import annotations

from email import message_from_bytes, policy
from email.message import EmailMessage

import click
from sqlalchemy import select

from service.campaigns import campaign_status, set_paused
from service.cli.base import cli, cli_actor, emit_json, migrated_runtime
from service.db import utcnow
from service.emails import InvalidAddress, canonicalize_email, clean_address, mask_email
from service.errors import LeakguardError, NotFound
from service.mail import make_mailer
from service.messages import (
    LANGUAGES,
    NoticeContext,
    PreparedNotice,
    address_message,
    new_message_id,
    prepare_notice,
)
from service.models import Leak, NoticeKind
from service.runtime import Runtime


@cli.group("notices")
def notices_group() -> None:
    """Warning notices: preview, test, pause, resume, status."""


def _prepared(value: Runtime, slug: str, language: str) -> PreparedNotice:
    with value.db.read_session() as session:
        leak = session.scalars(select(Leak).where(Leak.slug == slug)).one_or_none()
        if leak is None:
            raise click.ClickException(f"no leak named {slug!r}")
        name, date = leak.name, leak.created_at.strftime("%Y-%m-%d")
    settings = value.settings
    return prepare_notice(
        NoticeKind.LEAK_WARNING.value,
        language,
        NoticeContext(
            service_name=settings.service_name,
            leak_name=name,
            leak_date=date,
            account_url=settings.account_url,
        ),
        sender=settings.mail_from,
    )


@notices_group.command("preview")
@click.option("--leak", "slug", required=True)
@click.option("--language", type=click.Choice(LANGUAGES), default=LANGUAGES[0], show_default=True)
def notices_preview(slug: str, language: str) -> None:
    """Print one warning of the leak as a person would get it (address masked)."""
    value = migrated_runtime()
    prepared = _prepared(value, slug, language)
    sample = "jane.doe@example.com"
    outgoing = address_message(
        prepared,
        recipient=sample,
        message_id=new_message_id(0, value.settings.mail_from),
        now=utcnow(),
    )
    message = message_from_bytes(outgoing.data, policy=policy.default)
    click.echo(_as_text(message).replace(sample, mask_email(sample)))


def _as_text(message: EmailMessage) -> str:
    head = "\n".join(f"{name}: {value}" for name, value in message.items())
    body = message.get_body(preferencelist=("plain",))
    text = body.get_content() if isinstance(body, EmailMessage) else ""
    return f"{head}\n\n{text}"


@notices_group.command("test-send")
@click.option("--leak", "slug", required=True)
@click.option("--to", "recipient", required=True, help="A seed address of your own.")
@click.option("--language", type=click.Choice(LANGUAGES), default=LANGUAGES[0], show_default=True)
def notices_test_send(slug: str, recipient: str, language: str) -> None:
    """Send one warning of the leak to a seed address, now, outside the campaign."""
    value = migrated_runtime()
    recipient = clean_address(recipient)  # "mailto:", brackets and quotes are not the address
    if isinstance(canonicalize_email(recipient), InvalidAddress):
        raise click.ClickException("--to is not a valid email address")
    settings = value.settings
    try:
        message = address_message(
            _prepared(value, slug, language),
            recipient=recipient,
            message_id=new_message_id(0, settings.mail_from),
            now=utcnow(),
        )
    except ValueError as exc:
        raise click.ClickException("--to cannot be written into a To header") from exc
    mailer = make_mailer(
        settings.smtp_url, mail_dir=settings.resolved_mail_dir, envelope_from=settings.mail_from
    )
    try:
        result = mailer.send(message)
    finally:
        mailer.close()
    if not result.accepted:
        raise click.ClickException(
            f"not sent to {mask_email(recipient)}: {result.code or ''} {result.error or ''}".strip()
        )
    where = (settings.smtp_url and "the SMTP server") or str(settings.resolved_mail_dir)
    click.echo(f"sent to {mask_email(recipient)} via {where}: {message.message_id}")


def _set_paused(slug: str, paused: bool) -> None:
    value = migrated_runtime()
    try:
        with value.db.transaction() as session:
            changed = set_paused(session, slug, paused=paused, actor=cli_actor(), now=utcnow())
    except NotFound as exc:
        raise click.ClickException(str(exc)) from None
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
    try:
        with migrated_runtime().db.read_session() as session:
            status = campaign_status(session, slug)
    except LeakguardError as exc:
        raise click.ClickException(str(exc)) from None
    payload = status.to_json()
    if as_json:
        emit_json(payload)
        return
    counts = ", ".join(
        f"{payload[s]} {s}" for s in ("pending", "queued", "sending", "sent", "failed")
    )
    click.echo(f"{slug}: {'PAUSED; ' if status.paused else ''}{counts}")
