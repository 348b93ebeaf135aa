"""Every notice, in every language and variant, read as its recipient reads it.

Each case builds the real message bytes (``prepare_notice`` then ``address_message``) and
parses them with ``email.policy.default``, the way a mail program does: the subject as
shown, the text part as decoded, the HTML part as rendered.
"""

from __future__ import annotations

import itertools
import re
from datetime import UTC, date, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path

import pytest

from service.notices.render import (
    LANGUAGES,
    NoticeContext,
    PreparedNotice,
    address_message,
    prepare_notice,
    reflow,
)

TEMPLATES = Path(__file__).parents[2] / "service" / "notices" / "templates"
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
RECIPIENT = "jane.doe@example.org"
ACCOUNT_URL = "https://accounts.example.com/settings/email"
# A small letter opening a sentence: after . ! ? and a space (German "1. November" has a
# capital after it anyway).
LOWER_AFTER_STOP = re.compile(r"[.!?] +[a-zäöüß]")


def contexts() -> list[tuple[str, str, NoticeContext]]:
    cases = []
    for language, password_leaked, named, service in itertools.product(
        LANGUAGES, (False, True), (False, True), ("Example Shop", "us")
    ):
        cases.append(
            (
                "leak_warning",
                language,
                NoticeContext(
                    service_name=service,
                    leak_name="Exchange newsletter" if named else None,
                    leak_date=date(2019, 11, 1) if named else None,
                    account_url=ACCOUNT_URL if named else None,
                    password_leaked=password_leaked,
                ),
            )
        )
    for language, service in itertools.product(LANGUAGES, ("Example Shop", "us")):
        cases.append(
            (
                "step_up_code",
                language,
                NoticeContext(
                    service_name=service,
                    leak_name=None,
                    leak_date=None,
                    account_url=None,
                    code="123456",
                ),
            )
        )
    link = "https://leakguard.example.com/email-change/confirm?token=abc-DEF_123"
    for kind, language, service in itertools.product(
        ("email_change_confirm", "email_change_alert", "email_changed"),
        LANGUAGES,
        ("Example Shop", "us"),
    ):
        cases.append(
            (
                kind,
                language,
                NoticeContext(
                    service_name=service,
                    leak_name=None,
                    leak_date=None,
                    account_url=None,
                    link=None if kind == "email_changed" else link,
                    new_address="j***@example.net" if kind.endswith("alert") else RECIPIENT,
                    requested_at=NOW,
                    own_links=("https://leakguard.example.com/",),
                ),
            )
        )
    return cases


CASES = contexts()
IDS = [
    f"{kind}-{lang}-{'cred' if c.password_leaked else 'email'}-"
    f"{'named' if c.leak_name else 'plain'}-{c.service_name.replace(' ', '')}"
    for kind, lang, c in CASES
]


def rendered(kind: str, language: str, context: NoticeContext) -> tuple[PreparedNotice, bytes]:
    prepared = prepare_notice(kind, language, context, sender="Security <security@example.com>")
    outgoing = address_message(
        prepared, recipient=RECIPIENT, message_id="<notice-1.ab@example.com>", now=NOW
    )
    return prepared, outgoing.data


def parsed(data: bytes) -> tuple[EmailMessage, str, str]:
    message = message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert isinstance(text, EmailMessage)
    assert isinstance(html, EmailMessage)
    # The wire's CRLF line ends come back as they are: read lines, not line ends.
    return message, text.get_content().replace("\r\n", "\n"), html.get_content()


class _Html(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.blocks: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag in ("p", "li", "pre"):
            self.blocks.append("")

    def handle_data(self, data: str) -> None:
        if self.blocks:
            self.blocks[-1] += data


def html_blocks(html: str) -> tuple[list[str], list[str]]:
    parser = _Html()
    parser.feed(html)
    return parser.tags, [block.strip() for block in parser.blocks]


@pytest.mark.parametrize(("kind", "language", "context"), CASES, ids=IDS)
def test_the_subject_reads_as_written_with_no_leading_space(
    kind: str, language: str, context: NoticeContext
) -> None:
    prepared, data = rendered(kind, language, context)
    head = data.split(b"\r\n\r\n", 1)[0]
    (line,) = [raw for raw in head.split(b"\r\n") if raw.startswith(b"Subject:")]
    assert re.fullmatch(rb"Subject: \S.*", line), line  # never folded right after the name
    assert max(len(raw) for raw in head.split(b"\r\n")) <= 78
    message, _, _ = parsed(data)
    assert str(message["Subject"]) == prepared.subject
    assert prepared.subject == prepared.subject.strip()


@pytest.mark.parametrize(("kind", "language", "context"), CASES, ids=IDS)
def test_paragraphs_flow_and_sentences_start_with_a_capital(
    kind: str, language: str, context: NoticeContext
) -> None:
    _, data = rendered(kind, language, context)
    assert max(len(raw) for raw in data.split(b"\r\n")) <= 78  # quoted-printable soft breaks
    _, text, html = parsed(data)
    tags, blocks = html_blocks(html)
    assert "br" not in tags  # no line break inside a sentence
    paragraphs = text.strip().split("\n\n")
    for paragraph in paragraphs:
        rows = paragraph.split("\n")
        if rows[0].startswith("    "):  # the code, shown as it is
            continue
        if rows[0].startswith("- "):
            rows = [row[2:] for row in rows]
        else:
            assert len(rows) == 1, paragraph  # one line: the mail program wraps it
        for row in rows:
            assert row[0].isupper(), row
            assert not LOWER_AFTER_STOP.search(row), row
    for block in blocks:
        assert block[0].isupper() or block.isdigit(), block
    # The HTML says what the text says, block for block.
    flat = [row.removeprefix("- ").strip() for p in paragraphs for row in p.split("\n")]
    assert blocks == flat


@pytest.mark.parametrize(
    ("kind", "language", "context"),
    [case for case in CASES if case[0] == "leak_warning"],
    ids=[i for i in IDS if i.startswith("leak_warning")],
)
def test_the_warning_offers_no_link_and_does_not_disown_emailed_codes(
    kind: str, language: str, context: NoticeContext
) -> None:
    _, data = rendered(kind, language, context)
    _, text, html = parsed(data)
    tags, _ = html_blocks(html)
    assert "a" not in tags  # it warns against signing in through links: it offers none
    if context.account_url:
        assert context.account_url in text  # named, to be typed
    # The service emails codes (step-up): the warning must not say it never does.
    assert not re.search(r"never ask[^.]*code[^.]*by (e-?mail)", text, re.IGNORECASE)
    assert not re.search(r"nie[^.]*per E-Mail[^.]*Code", text)
    assert ("password" in text.lower() or "passwort" in text.lower()) is True
    if context.password_leaked:
        assert "password" in str(parsed(data)[0]["Subject"]).lower().replace("passwort", "password")


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_code_mail_is_named_for_what_it_is(language: str) -> None:
    context = NoticeContext(
        service_name="Example Shop", leak_name=None, leak_date=None, account_url=None, code="123456"
    )
    _, data = rendered("step_up_code", language, context)
    message, text, html = parsed(data)
    subject = str(message["Subject"])
    assert {"en": "security code", "de": "Sicherheitscode"}[language] in subject
    assert "Example Shop" in subject
    assert "\n    123456\n" in text
    assert '<pre style="font-size: 1.5em; letter-spacing: 0.1em">123456</pre>' in html
    assert "123456" not in subject  # the code stays in the body


@pytest.mark.parametrize("path", sorted(TEMPLATES.glob("*.txt")), ids=lambda p: p.name)
def test_every_template_starts_its_paragraphs_with_a_capital(path: Path) -> None:
    """The template source, any kind added later included: tags out, values as X."""
    source = re.sub(r"\{#.*?#\}|\{%.*?%\}", "", path.read_text(encoding="utf-8"), flags=re.S)
    source = re.sub(r"\{\{.*?\}\}", "X", source, flags=re.S)
    for paragraph in reflow(source).split("\n\n"):
        for row in paragraph.split("\n"):
            row = row.removeprefix("- ").strip()
            if row and row != "X":
                assert row[0].isupper(), (path.name, row)
                assert not LOWER_AFTER_STOP.search(row), (path.name, row)


@pytest.mark.parametrize(
    ("kind", "language", "context"),
    [case for case in CASES if case[0] in ("email_change_confirm", "email_change_alert")],
    ids=[i for i in IDS if i.startswith(("email_change_confirm", "email_change_alert"))],
)
def test_an_email_change_message_carries_its_one_link_as_a_link(
    kind: str, language: str, context: NoticeContext
) -> None:
    _, data = rendered(kind, language, context)
    _, text, html = parsed(data)
    assert context.link is not None
    assert text.count(context.link) == 1
    assert html.count(f'<a href="{context.link}">') == 1
    if kind == "email_change_alert":
        assert "j***@example.net" in text  # the old mailbox sees where, masked
        assert {"en": "2 January 2026, 03:04 UTC", "de": "2. Januar 2026, 03:04 UTC"}[
            language
        ] in text
