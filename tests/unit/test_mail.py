"""The mail pieces without a network: SMTP URLs, message building, HTML, languages."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from html.parser import HTMLParser
from typing import cast

import pytest

from service.mail import MultipleRecipients, SmtpSettings, check_one_recipient, parse_smtp_url
from service.messages import (
    NoticeContext,
    PreparedNotice,
    build_message,
    html_from_text,
    new_message_id,
    pick_language,
    prepare_notice,
)

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
SENDER = "Example Security <security@example.com>"


# --- parse_smtp_url ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "smtp://mail.example.com",
            SmtpSettings("mail.example.com", 587, False, "required", None, None),
        ),
        (
            "smtp://mail.example.com:25",
            SmtpSettings("mail.example.com", 25, False, "required", None, None),
        ),
        (
            "smtps://mail.example.com",
            SmtpSettings("mail.example.com", 465, True, "off", None, None),
        ),
        (
            "smtps://mail.example.com:2465",
            SmtpSettings("mail.example.com", 2465, True, "off", None, None),
        ),
        (
            "smtp://user%40example.com:p%40ss%3Aw%2Fd%25@mail.example.com:587",
            SmtpSettings(
                "mail.example.com", 587, False, "required", "user@example.com", "p@ss:w/d%"
            ),
        ),
        (
            "smtps://relay:s3cret@mail.example.com",
            SmtpSettings("mail.example.com", 465, True, "off", "relay", "s3cret"),
        ),
        # A relay on this machine: STARTTLS if it offers it.
        ("smtp://127.0.0.1:2525", SmtpSettings("127.0.0.1", 2525, False, "if-offered", None, None)),
        ("smtp://localhost", SmtpSettings("localhost", 587, False, "if-offered", None, None)),
        ("smtp://[::1]:25", SmtpSettings("::1", 25, False, "if-offered", None, None)),
        # Explicitly off, or explicitly required, whatever the host.
        (
            "smtp://mail.example.com?starttls=off",
            SmtpSettings("mail.example.com", 587, False, "off", None, None),
        ),
        (
            "smtp://127.0.0.1:2525?starttls=off",
            SmtpSettings("127.0.0.1", 2525, False, "off", None, None),
        ),
        (
            "smtp://127.0.0.1?starttls=required",
            SmtpSettings("127.0.0.1", 587, False, "required", None, None),
        ),
    ],
)
def test_parse_smtp_url(url: str, expected: SmtpSettings) -> None:
    assert parse_smtp_url(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        "smtp://mail.example.com?starttls=maybe",
        "smtp://mail.example.com?starttls=OFF",
        "smtp://mail.example.com:notaport",
        "smtp://mail.example.com:70000",
    ],
)
def test_parse_smtp_url_refuses_bad_values(url: str) -> None:
    with pytest.raises(ValueError, match=r"(?i)starttls|port"):
        parse_smtp_url(url)


# --- build_message -------------------------------------------------------------------------


def prepared(account_url: str | None = "https://accounts.example.com/email") -> PreparedNotice:
    return prepare_notice(
        "leak_warning",
        "en",
        NoticeContext(
            service_name="Example",
            leak_name="Exchange newsletter",
            leak_date="2019-11-01",
            account_url=account_url,
        ),
    )


def built(recipient: str = "jane.doe@example.org") -> EmailMessage:
    return build_message(
        prepared(),
        recipient=recipient,
        sender=SENDER,
        message_id="<notice-7.abc@example.com>",
        now=NOW,
    )


def test_build_message_writes_one_recipient_and_the_notice_headers() -> None:
    message = built()
    assert message["From"] == SENDER
    assert message.get_all("To") == ["jane.doe@example.org"]
    assert message["Subject"] == "Security notice: your email address appeared in a leak"
    assert message["Date"] == "Fri, 02 Jan 2026 03:04:05 +0000"
    assert message["Message-ID"] == "<notice-7.abc@example.com>"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["X-Auto-Response-Suppress"] == "All"
    for header in ("Cc", "Bcc", "Reply-To", "List-Unsubscribe", "List-Unsubscribe-Post"):
        assert message[header] is None, header
    assert check_one_recipient(message) == "jane.doe@example.org"
    assert message.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in message.iter_parts()] == [
        "text/plain",
        "text/html",
    ]


def test_build_message_fills_the_address_in_both_parts_escaped_in_html() -> None:
    message = built("o'brien&co@example.org")
    # Sent and read back as bytes: what the person's mail program gets.
    parsed = cast(EmailMessage, message_from_bytes(message.as_bytes(), policy=policy.default))
    text = parsed.get_body(preferencelist=("plain",))
    html = parsed.get_body(preferencelist=("html",))
    assert isinstance(text, EmailMessage)
    assert isinstance(html, EmailMessage)
    assert "(o'brien&co@example.org)" in text.get_content()
    assert "o&#x27;brien&amp;co@example.org" in html.get_content()
    assert "\x00" not in text.get_content() + html.get_content()


def test_a_recipient_naming_two_people_gives_a_message_that_is_refused() -> None:
    message = built("a@example.org, b@example.org")
    with pytest.raises(MultipleRecipients):
        check_one_recipient(message)


def test_a_recipient_cannot_smuggle_a_header() -> None:
    with pytest.raises(ValueError, match=r"linefeed|newline|CR|LF"):
        built("a@example.org\r\nBcc: b@example.org")


def test_message_ids_are_unique_and_name_the_notice() -> None:
    ids = {new_message_id(42, SENDER) for _ in range(100)}
    assert len(ids) == 100
    assert all(i.startswith("<notice-42.") and i.endswith("@example.com>") for i in ids)
    assert new_message_id(1, "nobody").endswith("@leakguard.invalid>")


# --- html_from_text ------------------------------------------------------------------------


class _Anchors(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.anchors: list[list[tuple[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "a":
            self.anchors.append(attrs)


def anchors(html: str) -> tuple[list[str], list[list[tuple[str, str | None]]]]:
    parser = _Anchors()
    parser.feed(html)
    return parser.tags, parser.anchors


def test_html_escapes_markup() -> None:
    html = html_from_text("Hello <script>alert(1)</script> & <img src=x onerror=alert(2)>")
    assert "<script" not in html
    assert "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;img" in html
    tags, _ = anchors(html)
    assert set(tags) <= {"html", "head", "meta", "body", "p", "br", "ul", "li", "a"}


def test_html_links_only_our_own_https_url() -> None:
    html = html_from_text(
        "Change it here: https://accounts.example.com/email\n"
        "not http://plain.example.com/ nor javascript:alert(1) nor ftp://files.example.com/\n"
        "nor a leak named https://evil.example.net/login",
        links=("https://accounts.example.com/",),
    )
    _, found = anchors(html)
    assert found == [[("href", "https://accounts.example.com/email")]]
    assert ">https://accounts.example.com/email</a>" in html


def test_html_link_cannot_break_out_of_its_attribute() -> None:
    html = html_from_text(
        'See https://example.com/"onmouseover="alert(1)"><script>x</script>',
        links=("https://example.com/",),
    )
    tags, found = anchors(html)
    assert "script" not in tags
    assert len(found) == 1
    assert [name for name, _ in found[0]] == ["href"]
    assert found[0][0][1] is not None
    assert found[0][0][1].startswith("https://example.com/")


def test_html_keeps_paragraphs_and_lists() -> None:
    html = html_from_text("Hello,\n\nfirst line\nsecond line\n\n- one\n  more\n- two\n")
    assert "<p>Hello,</p>" in html
    assert "<p>first line<br>second line</p>" in html
    assert "<ul><li>one more</li><li>two</li></ul>" in " ".join(html.split())


def test_notice_html_links_only_the_account_url() -> None:
    notice = prepared("https://accounts.example.com/email")
    _, found = anchors(notice.html)
    assert found == [[("href", "https://accounts.example.com/email")]]
    _, none = anchors(prepared(None).html)
    assert none == []


# --- pick_language -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("locale", "language"),
    [
        ("de-AT", "de"),
        ("de", "de"),
        ("DE-ch", "de"),
        ("en-GB", "en"),
        ("en", "en"),
        ("xx", "en"),
        ("fr-CA", "en"),
        ("deu", "en"),
        ("", "en"),
        (None, "en"),
    ],
)
def test_pick_language(locale: str | None, language: str) -> None:
    assert pick_language(locale) == language
