"""The mail pieces without a network: SMTP URLs, message building and checks, HTML, languages."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, date, datetime
from email import message_from_bytes, policy
from email.headerregistry import Address
from email.message import EmailMessage
from html.parser import HTMLParser
from typing import cast

import pytest

from service.notices.render import (
    LANGUAGES,
    NoticeContext,
    PreparedNotice,
    address_message,
    html_from_text,
    new_message_id,
    pick_language,
    prepare_notice,
)
from service.notices.transport import (
    DOT_ATOM_ADDRESS,
    MultipleRecipients,
    OutgoingMessage,
    SmtpSettings,
    UnwritableDomain,
    check_outgoing,
    parse_smtp_url,
    wire_address,
)
from tests.support.mail import one_recipient, parse_message, text_and_html

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


# --- address_message -----------------------------------------------------------------------


def prepared(
    account_url: str | None = "https://accounts.example.com/email",
    *,
    language: str = "en",
    service_name: str = "Example",
    sender: str = SENDER,
) -> PreparedNotice:
    return prepare_notice(
        "leak_warning",
        language,
        NoticeContext(
            service_name=service_name,
            leak_name="Exchange newsletter",
            leak_date=date(2019, 11, 1),
            account_url=account_url,
        ),
        sender=sender,
    )


def built(
    recipient: str = "jane.doe@example.org", notice: PreparedNotice | None = None
) -> OutgoingMessage:
    return address_message(
        notice or prepared(),
        recipient=recipient,
        message_id="<notice-7.abc@example.com>",
        now=NOW,
    )


def parsed(message: OutgoingMessage) -> EmailMessage:
    """The message as the person's mail program reads it."""
    return parse_message(message.data)


def test_address_message_writes_one_recipient_and_the_notice_headers() -> None:
    outgoing = built()
    assert (outgoing.recipient, outgoing.smtputf8) == ("jane.doe@example.org", False)
    assert check_outgoing(outgoing) == "jane.doe@example.org"
    message = parsed(outgoing)
    assert message["From"] == SENDER
    assert message.get_all("To") == ["jane.doe@example.org"]
    assert message["Subject"] == "Security notice: your email address appeared in a data leak"
    assert message["Date"] == "Fri, 02 Jan 2026 03:04:05 +0000"
    assert message["Message-ID"] == "<notice-7.abc@example.com>"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["X-Auto-Response-Suppress"] == "All"
    for header in ("Cc", "Bcc", "Reply-To", "List-Unsubscribe", "List-Unsubscribe-Post"):
        assert message[header] is None, header
    assert one_recipient(message) == "jane.doe@example.org"
    assert message.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in message.iter_parts()] == [
        "text/plain",
        "text/html",
    ]
    assert message.defects == []
    assert all(part.defects == [] for part in message.walk())


def test_the_wire_form_is_crlf_throughout_with_short_lines() -> None:
    data = built(notice=prepared(language="de")).data
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert b"\r" not in data.replace(b"\r\n", b"")
    assert max(len(line) for line in data.split(b"\r\n")) <= 998  # RFC 5322 2.1.1


def test_everyone_gets_the_same_content_behind_their_own_headers() -> None:
    notice = prepared()
    first = built("jane.doe@example.org", notice)
    second = built("o'brien&co@example.org", notice)
    assert first.data.endswith(notice.content)
    assert second.data.endswith(notice.content)
    # No address in the body: the To header shows the person theirs, nobody sees another's.
    for outgoing in (first, second):
        text, html = text_and_html(parsed(outgoing))
        assert "@" not in text + html
        assert "\x00" not in text + html
    assert parsed(second).get_all("To") == ["o'brien&co@example.org"]


def test_the_prepared_message_reads_as_one_built_field_by_field() -> None:
    """The bytes parse to what EmailMessage and Address make of the same fields."""
    sender = "Sicherheitsteam Über <security@example.com>"
    for language in LANGUAGES:
        notice = prepared(language=language, service_name="Bücher & Co", sender=sender)
        for recipient, to in (
            ("jane.doe@example.org", "jane.doe@example.org"),
            ("jörg@example.com", "jörg@example.com"),
            ("user@bücher.de", "user@xn--bcher-kva.de"),  # the domain as its A-label
        ):
            outgoing = built(recipient, notice)
            reference = EmailMessage()
            reference["From"] = sender
            reference["To"] = Address(addr_spec=to) if to.isascii() else to
            reference["Subject"] = notice.subject
            reference.set_content(notice.text)
            reference.add_alternative(notice.html, subtype="html")
            reread = cast(
                EmailMessage,
                message_from_bytes(
                    reference.as_bytes(policy=policy.SMTPUTF8), policy=policy.default
                ),
            )
            message = parsed(outgoing)
            for header in ("From", "To"):
                assert str(message[header]) == str(reread[header]), (header, recipient)
            # Not the reference's: EmailMessage folds a long subject right after
            # "Subject:", and the person's mail program shows a leading space.
            assert str(message["Subject"]) == notice.subject
            assert text_and_html(message) == text_and_html(reread)


@pytest.mark.parametrize(
    ("recipient", "wire"),
    [
        ("jörg@example.com", "jörg@example.com"),
        ("jürgen@example.de", "jürgen@example.de"),
        # Only the local part needs SMTPUTF8; the domain still goes as its A-label.
        ("Jörg.Müller@Bücher.example", "Jörg.Müller@xn--bcher-kva.example"),
    ],
)
def test_a_non_ascii_local_part_goes_in_utf8_and_asks_for_smtputf8(
    recipient: str, wire: str
) -> None:
    outgoing = built(recipient)
    assert (outgoing.recipient, outgoing.smtputf8, outgoing.eight_bit) == (wire, True, True)
    assert check_outgoing(outgoing) == wire
    assert b"To: " + wire.encode() + b"\r\n" in outgoing.data  # RFC 6532, not =?utf-8?
    assert parsed(outgoing).get_all("To") == [wire]
    assert one_recipient(parsed(outgoing)) == wire


# --- internationalized domains: A-labels on the wire -------------------------------------


@pytest.mark.parametrize(
    ("address", "wire"),
    [
        ("carol@bücher.de", "carol@xn--bcher-kva.de"),
        # UTS #46 maps case (and full-width forms) before encoding; the local part keeps its.
        ("Carol@Bücher.DE", "Carol@xn--bcher-kva.de"),
        ("carol@BÜCHER.de", "carol@xn--bcher-kva.de"),
        ("carol@\uff42\u00fccher\uff0ede", "carol@xn--bcher-kva.de"),  # full-width b and dot
        ("carol@mail.bücher.de", "carol@mail.xn--bcher-kva.de"),
        ("anna@straße.de", "anna@xn--strae-oqa.de"),  # IDNA 2008: ß stays ß, not "ss"
        ("ivan@пример.рф", "ivan@xn--e1afmkfd.xn--p1ai"),
        ("jürgen@bücher.de", "jürgen@xn--bcher-kva.de"),
        # Already ASCII (A-labels in any case, plain names): sent as they are.
        ("carol@xn--bcher-kva.de", "carol@xn--bcher-kva.de"),
        ("carol@XN--BCHER-KVA.DE", "carol@XN--BCHER-KVA.DE"),
        ("UPPER.case@Example.ORG", "UPPER.case@Example.ORG"),
        ("jürgen@example.de", "jürgen@example.de"),
        ('"a@b"@bücher.de', '"a@b"@xn--bcher-kva.de'),  # the domain follows the last @
    ],
)
def test_wire_address_writes_a_non_ascii_domain_as_a_labels(address: str, wire: str) -> None:
    assert wire_address(address) == wire


@pytest.mark.parametrize(
    "address", ["carol@bücher.de", "Carol@Bücher.DE", "carol@xn--bcher-kva.de"]
)
def test_an_idn_with_an_ascii_local_part_needs_no_smtputf8(address: str) -> None:
    outgoing = built(address)
    wire = address.split("@")[0] + "@xn--bcher-kva.de"
    assert (outgoing.recipient, outgoing.smtputf8, outgoing.eight_bit) == (wire, False, False)
    assert outgoing.data.startswith(f"To: {wire}\r\n".encode())  # the envelope's, exactly
    assert outgoing.data.isascii()
    assert check_outgoing(outgoing) == wire
    assert one_recipient(parsed(outgoing)) == wire


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("carol@☃.com", "U+2603"),  # a symbol: DISALLOWED in IDNA 2008
        ("carol@-bücher.de", "hyphen"),
        ("carol@bücher..de", "Empty Label"),
        ("carol@xn--zz.bücher.de", "A-label"),  # a broken A-label beside a U-label
        ("carol@bü cher.de", "U+0020"),
    ],
)
def test_an_invalid_idn_is_a_clear_value_error(address: str, reason: str) -> None:
    with pytest.raises(UnwritableDomain, match="not a valid internationalized domain") as raised:
        built(address)
    assert reason in str(raised.value)
    assert isinstance(raised.value, ValueError)  # what the delivery job records as permanent


@pytest.mark.parametrize(
    "address",
    [
        "jane.doe@example.org",
        "o'brien&co@example.org",
        "a+tag@sub.example.co.uk",
        "x!#$%&'*+/=?^_`{|}~-@example.org",
        "UPPER.case@Example.ORG",
    ],
)
def test_a_dot_atom_address_is_written_as_address_writes_it(address: str) -> None:
    assert DOT_ATOM_ADDRESS.fullmatch(address)
    assert str(Address(addr_spec=address)) == address
    outgoing = built(address)
    assert outgoing.data.startswith(f"To: {address}\r\n".encode())
    assert check_outgoing(outgoing) == address
    assert one_recipient(parsed(outgoing)) == address


@pytest.mark.parametrize(
    "address", ['"john doe"@example.org', "a..b@example.org", "a@[127.0.0.1]", "a@b@example.org"]
)
def test_other_addresses_take_the_full_parser(address: str) -> None:
    assert not DOT_ATOM_ADDRESS.fullmatch(address)
    outgoing = built(address)
    try:
        found = check_outgoing(outgoing)
    except MultipleRecipients:
        return  # refused: never sent
    assert one_recipient(parsed(outgoing)) == found == address


def test_a_recipient_naming_two_people_gives_a_message_that_is_refused() -> None:
    for recipient in ("a@example.org, b@example.org", "friends: a@example.org, b@example.org;"):
        with pytest.raises(MultipleRecipients):
            check_outgoing(built(recipient))


def test_a_recipient_cannot_smuggle_a_header() -> None:
    for recipient in ("a@example.org\r\nBcc: b@example.org", "a@example.org\nCc: b@x.org"):
        with pytest.raises(ValueError, match=r"linefeed|newline|CR|LF"):
            built(recipient)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda data: b"Cc: b@example.org\r\n" + data, id="cc"),
        pytest.param(lambda data: b"Bcc: b@example.org\r\n" + data, id="bcc"),
        pytest.param(lambda data: b"To: b@example.org\r\n" + data, id="second-to"),
        pytest.param(lambda data: b"Resent-To: b@example.org\r\n" + data, id="resent-to"),
        pytest.param(lambda data: data.replace(b"To: a@", b"To: x@", 1), id="other-to"),
        pytest.param(lambda data: data.replace(b"To: a@", b"X-To: a@", 1), id="no-to"),
        pytest.param(lambda data: data.replace(b"\r\n\r\n", b"\r\n"), id="no-body"),
        pytest.param(
            lambda data: data.replace(b"a@example.org\r\n", b"a@example.org,\r\n b@x.org\r\n"),
            id="folded-second-to",
        ),
        pytest.param(lambda data: b"X-Note: y\nBcc: b@example.org\r\n" + data, id="bare-lf"),
        pytest.param(lambda data: b"X-Note: y\rBcc: b@example.org\r\n" + data, id="bare-cr"),
        pytest.param(lambda data: b"not a field\r\n" + data, id="not-a-field"),
        pytest.param(lambda data: b"BCC : b@example.org\r\n" + data, id="space-before-colon"),
        pytest.param(lambda data: b"bcc: b@example.org\r\n" + data, id="lowercase-bcc"),
    ],
)
def test_check_outgoing_refuses_bytes_for_anyone_but_the_one_recipient(
    change: Callable[[bytes], bytes],
) -> None:
    good = built("a@example.org")
    assert check_outgoing(good) == "a@example.org"
    with pytest.raises(MultipleRecipients):
        check_outgoing(dataclasses.replace(good, data=change(good.data)))


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
    assert "<p>first line second line</p>" in html  # a paragraph flows: no <br> in it
    assert "<ul><li>one more</li><li>two</li></ul>" in " ".join(html.split())


def test_warning_names_the_account_page_but_links_nowhere() -> None:
    """It tells people not to sign in through links in mail: it offers none itself."""
    notice = prepared("https://accounts.example.com/email")
    _, found = anchors(notice.html)
    assert found == []
    assert "https://accounts.example.com/email" in notice.html
    assert "https://accounts.example.com/email" in notice.text


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
