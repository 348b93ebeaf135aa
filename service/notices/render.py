"""Notice messages: prepared once per leak, language and kind, addressed per person.

Rendering Jinja2, building MIME and serializing it for every one of 30,000 recipients
costs several times what sending does; and nothing in a notice's content differs from one
person to the next (the To header shows them their address). So ``prepare_notice`` renders
the text and HTML once and serializes the whole message but its per-person headers to
bytes once (policy SMTP: CRLF, 7-bit headers); ``address_message`` puts the person's own
To, Date and Message-ID in front of those bytes.

Templates are plain text, wrapped in the source for whoever edits them. A paragraph
becomes one line of the text part (``reflow``), which quoted-printable carries in short
wire lines with soft breaks, so every mail program wraps it to its own width; the HTML
part has one ``<p>`` per paragraph and no ``<br>`` inside a sentence. A block indented by
four spaces (a code) stays as it is, a ``- `` item is one line.
"""

from __future__ import annotations

import html
import re
import secrets
from dataclasses import dataclass
from datetime import date, datetime
from email import policy
from email.errors import HeaderParseError
from email.header import Header
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from functools import lru_cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from service.notices.transport import DOT_ATOM_ADDRESS, OutgoingMessage, wire_address

LANGUAGES = ("en", "de")  # the first is the fallback
_URL = re.compile(r"https://[^\s<>\"']+")
_DOMAIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")
_BLANK_LINES = re.compile(r"\n(?:[ \t]*\n)+")
_PREFORMATTED = "    "
# RFC 5322 2.1.1: header lines SHOULD stay within 78 characters.
HEADER_LINE_CHARS = 78
MONTHS = {
    "en": (
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ),
    "de": (
        "Januar",
        "Februar",
        "März",
        "April",
        "Mai",
        "Juni",
        "Juli",
        "August",
        "September",
        "Oktober",
        "November",
        "Dezember",
    ),
}


@dataclass(frozen=True, slots=True)
class PreparedNotice:
    kind: str
    language: str
    subject: str
    text: str
    html: str
    content: bytes  # every header but To, Date and Message-ID, then the MIME body; CRLF
    eight_bit: bool  # the body holds 8-bit bytes (UTF-8 text, sent as 8bit)


@dataclass(frozen=True, slots=True)
class NoticeContext:
    service_name: str
    leak_name: str | None  # in the message's language; None: neutral wording, never a slug
    leak_date: date | None  # the leak's own date (when it appeared); None: not mentioned
    account_url: str | None
    password_leaked: bool = False
    code: str | None = None  # an emailed step-up code: this message is for one person only
    code_minutes: int = 10
    # An email change's message (for one person only): its single-use link, how long the
    # link works, the address it is about (masked in the alert), when it was asked for.
    link: str | None = None
    link_hours: int = 24
    link_days: int = 7
    new_address: str | None = None
    requested_at: datetime | None = None
    # Where our own pages are: only links starting there become links in the HTML part.
    own_links: tuple[str, ...] = ()


def format_moment(moment: datetime, language: str) -> str:
    """A UTC time as people write it: "1 December 2026, 02:30 UTC"."""
    return f"{format_date(moment.date(), language)}, {moment:%H:%M} UTC"


def format_date(day: date, language: str) -> str:
    """A date as people write it: "1 November 2019", "1. November 2019"."""
    month = MONTHS.get(language, MONTHS[LANGUAGES[0]])[day.month - 1]
    if language == "de":
        return f"{day.day}. {month} {day.year}"
    return f"{day.day} {month} {day.year}"


def pick_language(locale: str | None) -> str:
    """The template language for a BCP 47 tag: ``de-AT`` is German; unknown is English."""
    primary = (locale or "").split("-")[0].lower()
    return primary if primary in LANGUAGES else LANGUAGES[0]


@lru_cache(maxsize=1)
def _environment() -> Environment:
    return Environment(
        loader=PackageLoader("service.notices", "templates"),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        # Plain-text templates; the HTML part is escaped, whole, by html_from_text.
        autoescape=False,  # noqa: S701
    )


def prepare_notice(
    kind: str, language: str, context: NoticeContext, *, sender: str
) -> PreparedNotice:
    """Render the template of ``kind`` in ``language`` and serialize the message, once.

    The result is the same for every recipient. Security notices carry ``Auto-Submitted``
    and no List-Unsubscribe: a one-click stop must not silence the only warning a person
    gets. Raises LookupError for a template without a subject.
    """
    template = _environment().get_template(f"{kind}.{language}.txt")
    values = {
        "service_name": context.service_name,
        "leak_name": context.leak_name or None,
        "leak_date": format_date(context.leak_date, language) if context.leak_date else None,
        "account_url": context.account_url,
        "password_leaked": context.password_leaked,
        "code": context.code,
        "code_minutes": context.code_minutes,
        "link": context.link,
        "link_hours": context.link_hours,
        "link_days": context.link_days,
        "new_address": context.new_address,
        "requested_at": (
            format_moment(context.requested_at, language) if context.requested_at else None
        ),
    }
    text = reflow(template.render(values))
    subject = " ".join(str(getattr(template.make_module(values), "subject", "")).split())
    if not subject:
        raise LookupError(f"template {kind}.{language}.txt sets no subject")
    # The account page is named as an address to type, never a link: the warning tells
    # people not to sign in through links in mail, and must not offer one itself.
    html_text = html_from_text(text, links=context.own_links)

    message = EmailMessage(policy=policy.SMTP)
    message["From"] = sender
    message["Auto-Submitted"] = "auto-generated"
    message["X-Auto-Response-Suppress"] = "All"
    message.set_content(text, cte="quoted-printable")
    message.add_alternative(html_text, subtype="html", cte="quoted-printable")
    content = subject_header(subject) + message.as_bytes()
    return PreparedNotice(
        kind, language, subject, text, html_text, content, eight_bit=not content.isascii()
    )


def subject_header(subject: str) -> bytes:
    """The Subject line, folded between words and never right after ``Subject:``.

    policy.SMTP folds a long subject by starting it on the next line, which unfolds to a
    leading space in many mail programs; ``Header`` fits the first words on the first line
    (RFC 2047 encoded words when the subject is not ASCII).
    """
    charset = "us-ascii" if subject.isascii() else "utf-8"
    folded = Header(subject, charset, header_name="Subject").encode(
        linesep="\r\n", maxlinelen=HEADER_LINE_CHARS
    )
    return b"Subject: " + folded.encode("ascii") + b"\r\n"


def reflow(text: str) -> str:
    """One line per paragraph and per ``- `` item; indented blocks kept as they are."""
    lines = "\n".join(line.rstrip() for line in text.strip().split("\n"))
    blocks = []
    for block in _BLANK_LINES.split(lines):
        rows = block.split("\n")
        if all(row.startswith(_PREFORMATTED) for row in rows):
            blocks.append(block)
        elif rows[0].startswith("- "):
            items: list[str] = []
            for row in rows:
                if row.startswith("- ") or not items:
                    items.append(row.strip())
                else:
                    items[-1] += " " + row.strip()
            blocks.append("\n".join(items))
        else:
            blocks.append(" ".join(row.strip() for row in rows))
    return "\n\n".join(blocks) + "\n"


def html_from_text(text: str, *, links: tuple[str, ...] = ()) -> str:
    """The HTML alternative of a notice: the same words, escaped; only our own links.

    A URL becomes a link only if it starts with one of ``links`` (ours): a leak's name
    could carry any URL, and a notice must never point people to a stranger's page.
    Paragraphs flow (a line break inside one is a space, never ``<br>``); an indented
    block (a code) is shown large, as it is.

    No images, no tracking: a security notice that phones home would teach people the
    very habits phishing relies on.
    """
    body = []
    for block in _BLANK_LINES.split(reflow(text).strip()):
        rows = block.split("\n")
        if all(row.startswith(_PREFORMATTED) for row in rows):
            shown = "\n".join(html.escape(row.strip()) for row in rows)
            body.append(f'<pre style="font-size: 1.5em; letter-spacing: 0.1em">{shown}</pre>')
        elif rows[0].startswith("- "):
            body.append(
                "<ul>" + "".join(f"<li>{_inline(row[2:], links)}</li>" for row in rows) + "</ul>"
            )
        else:
            body.append(f"<p>{_inline(block, links)}</p>")
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


def address_message(
    prepared: PreparedNotice, *, recipient: str, message_id: str, now: datetime
) -> OutgoingMessage:
    """One message to one person: the prepared bytes behind their own To, Date, Message-ID.

    Exactly one To address, no Cc, no Bcc (the prepared part carries no recipient header;
    the mailer checks the finished bytes again). A non-ASCII domain is written as A-labels
    in the To header and the envelope alike (``wire_address``), so that the two agree.
    Raises ValueError for a recipient that cannot be written into a header (a line break:
    header injection; unparseable; a domain IDNA refuses).
    """
    if "\r" in recipient or "\n" in recipient:
        raise ValueError("a recipient must not contain CR or LF characters")
    recipient = wire_address(recipient)
    wide = not recipient.isascii()
    date = format_datetime(now).encode("ascii")
    if wide or not _plain(recipient):
        # A non-ASCII local part goes in UTF-8 (RFC 6532; sent with SMTPUTF8); anything that
        # is not one plain address is written as the header parser reads it, so that the
        # mailer's check sees, and refuses, whatever else it names.
        to = _folded("To", recipient, policy.SMTPUTF8 if wide else policy.SMTP)
    else:
        # What Address(addr_spec=...) writes for a plain address with no display name;
        # an addr-spec is never folded.
        to = b"To: " + recipient.encode("ascii") + b"\r\n"
    head = b"%sDate: %s\r\nMessage-ID: %s\r\n" % (to, date, message_id.encode("ascii"))
    return OutgoingMessage(
        recipient=recipient,
        message_id=message_id,
        data=head + prepared.content,
        smtputf8=wide,
        eight_bit=wide or prepared.eight_bit,
    )


def _folded(name: str, value: str, header_policy: policy.EmailPolicy[Any]) -> bytes:
    try:
        stored_name, header = header_policy.header_store_parse(name, value)  # refuses CR, LF
        return header_policy.fold_binary(stored_name, header)
    except HeaderParseError as exc:  # not a ValueError, but the same verdict: no such address
        raise ValueError(f"{name} cannot be written: {exc}") from exc


def _plain(address: str) -> bool:
    """True for one plain ASCII address that Address() takes as it is."""
    if DOT_ATOM_ADDRESS.fullmatch(address):
        return True  # Address(addr_spec=...) writes a dot-atom addr-spec unchanged
    try:
        parsed = Address(addr_spec=address)
    except (ValueError, IndexError, HeaderParseError):
        return False
    return not parsed.display_name and str(parsed) == address


def new_message_id(notice_id: int, sender: str) -> str:
    """A unique Message-ID naming the notice, so a bounce finds its row."""
    return f"<notice-{notice_id}.{secrets.token_hex(8)}@{_message_id_domain(sender)}>"


@lru_cache(maxsize=16)
def _message_id_domain(sender: str) -> str:
    _, at, domain = parseaddr(sender)[1].rpartition("@")
    # Only a domain a Message-ID can carry as it is (RFC 5322 dot-atom, ASCII).
    if at and domain and domain.isascii() and _DOMAIN.fullmatch(domain):
        return domain
    return "leakguard.invalid"
