"""What an operator checks before mailing thousands of people: one warning, seen or sent.

``preview_warning`` renders a leak's warning as a person would get it, with the address
masked; ``send_test_warning`` sends one to a seed address of the operator's own, outside
the campaign (no notice row, nothing counted).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from enum import StrEnum
from urllib.parse import urlsplit

from sqlalchemy.orm import Session

from service.addresses import InvalidAddress, canonicalize_email, clean_address, mask_email
from service.config import Settings
from service.errors import LeakguardError
from service.leaks.catalogue import find_leak, leak_name
from service.leaks.wording import Worded
from service.models import NoticeKind
from service.notices.render import (
    NoticeContext,
    PreparedNotice,
    address_message,
    new_message_id,
    prepare_notice,
)
from service.notices.transport import make_mailer

SAMPLE_RECIPIENT = "jane.doe@example.com"


class WarningVariant(StrEnum):
    """The two warnings a leak sends: the address leaked, or the address with a password."""

    EMAIL = "email"
    CREDENTIAL = "credential"


class SeedRefused(LeakguardError, Worded):
    """The seed address is no address, or the mail server refused the message."""

    status = 422
    code = "seed_refused"
    title = "The test message was not sent"


@dataclass(frozen=True, slots=True)
class SeedWords:
    """How a face names the seed address in a refusal (``service.leaks.wording``)."""

    recipient: str


CLI_SEED_WORDS = SeedWords(recipient="--to")


@dataclass(frozen=True, slots=True)
class SentSeed:
    masked_recipient: str
    message_id: str
    via: str  # "the SMTP server <host>", or "the mail folder" (no path: staff read it)


def prepare_warning(
    session: Session,
    settings: Settings,
    *,
    slug: str,
    language: str,
    variant: WarningVariant = WarningVariant.EMAIL,
) -> PreparedNotice:
    """The leak's warning in ``language``, as delivery renders it (the leak's name in that
    language, its own date); raise NotFound for no such leak."""
    leak = find_leak(session, slug)
    return prepare_notice(
        NoticeKind.LEAK_WARNING.value,
        language,
        NoticeContext(
            service_name=settings.service_name,
            leak_name=leak_name(leak.names, leak.name, language),
            leak_date=leak.observed_at,
            account_url=settings.account_url,
            password_leaked=variant is WarningVariant.CREDENTIAL,
        ),
        sender=settings.mail_from,
    )


def preview_warning(prepared: PreparedNotice, settings: Settings, *, now: datetime) -> str:
    """The headers and text part of the warning to a sample person, address masked."""
    outgoing = address_message(
        prepared,
        recipient=SAMPLE_RECIPIENT,
        message_id=new_message_id(0, settings.mail_from),
        now=now,
    )
    message = message_from_bytes(outgoing.data, policy=policy.default)
    head = "\n".join(f"{name}: {value}" for name, value in message.items())
    body = message.get_body(preferencelist=("plain",))
    text = body.get_content() if isinstance(body, EmailMessage) else ""
    return f"{head}\n\n{text}".replace(SAMPLE_RECIPIENT, mask_email(SAMPLE_RECIPIENT))


def send_test_warning(
    prepared: PreparedNotice, settings: Settings, *, recipient: str, now: datetime
) -> SentSeed:
    """Send the warning to one seed address now, over the configured transport.

    ``mailto:``, brackets and quotes around the address are dropped. Raises SeedRefused
    for no address, one that cannot be written into a To header, or a refusal.
    """
    recipient = clean_address(recipient)
    if isinstance(canonicalize_email(recipient), InvalidAddress):
        raise SeedRefused.saying(
            lambda w: f"{w.recipient} is not one valid email address", CLI_SEED_WORDS
        )
    try:
        message = address_message(
            prepared,
            recipient=recipient,
            message_id=new_message_id(0, settings.mail_from),
            now=now,
        )
    except ValueError:
        raise SeedRefused.saying(
            lambda w: f"{w.recipient} cannot be written into a To header", CLI_SEED_WORDS
        ) from None
    mailer = make_mailer(
        settings.smtp_url, mail_dir=settings.resolved_mail_dir, envelope_from=settings.mail_from
    )
    try:
        result = mailer.send(message)
    finally:
        mailer.close()
    masked = mask_email(recipient)
    if not result.accepted:
        # A relay refusal's text names its code already ("the relay refused the session: 535").
        code = "" if result.relay else result.code or ""
        reason = f"{code} {result.error or ''}".strip()
        raise SeedRefused(f"not sent to {masked}: {reason}".strip())
    # The server's name, never its credentials or a path on this machine: the staff site
    # shows this line to people who have no business with the server's file system.
    host = urlsplit(settings.smtp_url).hostname if settings.smtp_url else None
    via = f"the SMTP server {host}" if host else "the mail folder"
    return SentSeed(masked, message.message_id, via)
