"""Notice messages: a template prepared once per leak and language, filled per person.

Rendering Jinja2 and building MIME from scratch for every one of 30,000 recipients costs
more than sending; so a ``PreparedNotice`` holds the rendered subject, text and HTML with
a placeholder for the one thing that differs per person (the masked address), and
``build_message`` only substitutes it and wraps the parts in a one-recipient message.
"""

from __future__ import annotations

import html
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from functools import lru_cache

from jinja2 import Environment, PackageLoader, StrictUndefined

LANGUAGES = ("en", "de")  # the first is the fallback
RECIPIENT_SLOT = "\x00recipient\x00"
_URL = re.compile(r"https://[^\s<>\"']+")


@dataclass(frozen=True, slots=True)
class PreparedNotice:
    kind: str
    language: str
    subject: str
    text: str
    html: str


@dataclass(frozen=True, slots=True)
class NoticeContext:
    service_name: str
    leak_name: str
    leak_date: str | None
    account_url: str | None
    password_leaked: bool = False


def pick_language(locale: str | None) -> str:
    """The template language for a BCP 47 tag: ``de-AT`` is German; unknown is English."""
    primary = (locale or "").split("-")[0].lower()
    return primary if primary in LANGUAGES else LANGUAGES[0]


@lru_cache(maxsize=1)
def _environment() -> Environment:
    return Environment(
        loader=PackageLoader("service", "templates"),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        # Plain-text templates; the HTML part is escaped, whole, by html_from_text.
        autoescape=False,  # noqa: S701
    )


def prepare_notice(kind: str, language: str, context: NoticeContext) -> PreparedNotice:
    """Render the template of ``kind`` in ``language`` once, with a slot for the recipient."""
    template = _environment().get_template(f"notices/{kind}.{language}.txt")
    values = {
        "service_name": context.service_name,
        "leak_name": context.leak_name,
        "leak_date": context.leak_date,
        "account_url": context.account_url,
        "password_leaked": context.password_leaked,
        "recipient": RECIPIENT_SLOT,
    }
    text = template.render(values)
    subject = str(getattr(template.make_module(values), "subject", ""))
    if not subject:
        raise LookupError(f"template notices/{kind}.{language}.txt sets no subject")
    links = (context.account_url,) if context.account_url else ()
    return PreparedNotice(kind, language, subject, text, html_from_text(text, links=links))


def html_from_text(text: str, *, links: tuple[str, ...] = ()) -> str:
    """The HTML alternative of a notice: the same words, escaped; only our own links.

    A URL becomes a link only if it starts with one of ``links`` (ours): a leak's name
    could carry any URL, and a notice must never point people to a stranger's page.

    No images, no tracking: a security notice that phones home would teach people the
    very habits phishing relies on.
    """
    blocks = [block for block in text.strip().split("\n\n") if block.strip()]
    body = []
    for block in blocks:
        lines = block.split("\n")
        if all(line.startswith(("- ", "  ")) for line in lines):
            items = " ".join(lines).split("- ")
            body.append(
                "<ul>"
                + "".join(f"<li>{_inline(i, links)}</li>" for i in items if i.strip())
                + "</ul>"
            )
        else:
            body.append(f"<p>{'<br>'.join(_inline(line, links) for line in lines)}</p>")
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8"></head>'
        '<body style="font-family: sans-serif; line-height: 1.5; max-width: 40em">'
        + "".join(body)
        + "</body></html>\n"
    )


def _inline(text: str, links: tuple[str, ...]) -> str:
    escaped = html.escape(text.strip(), quote=True)
    own = tuple(html.escape(link, quote=True) for link in links if link)

    def link(match: re.Match[str]) -> str:
        url = match.group(0)
        return f'<a href="{url}">{url}</a>' if own and url.startswith(own) else url

    return _URL.sub(link, escaped)


def build_message(
    prepared: PreparedNotice,
    *,
    recipient: str,
    sender: str,
    message_id: str,
    now: datetime,
) -> EmailMessage:
    """One message to one person: exactly one To address, no Cc, no Bcc.

    Security notices carry ``Auto-Submitted`` and no List-Unsubscribe: a one-click stop
    must not silence the only warning a person gets.
    """
    message = EmailMessage()
    message["From"] = sender
    message["To"] = Address(addr_spec=recipient) if _plain(recipient) else recipient
    message["Subject"] = prepared.subject
    message["Date"] = format_datetime(now)
    message["Message-ID"] = message_id
    message["Auto-Submitted"] = "auto-generated"
    message["X-Auto-Response-Suppress"] = "All"
    # The person's own address, in full: it is theirs, and the To header shows it anyway.
    message.set_content(prepared.text.replace(RECIPIENT_SLOT, recipient))
    message.add_alternative(
        prepared.html.replace(html.escape(RECIPIENT_SLOT), html.escape(recipient)),
        subtype="html",
    )
    return message


def _plain(address: str) -> bool:
    try:
        Address(addr_spec=address)
    except (ValueError, IndexError):
        return False
    return True


def new_message_id(notice_id: int, sender: str) -> str:
    """A unique Message-ID naming the notice, so a bounce finds its row."""
    _, at, domain = parseaddr(sender)[1].rpartition("@")
    domain = domain if at and domain else "leakguard.invalid"
    return f"<notice-{notice_id}.{secrets.token_hex(8)}@{domain}>"
