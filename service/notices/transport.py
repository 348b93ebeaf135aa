"""Sending one message to one person: over SMTP, or into a folder of ``.eml`` files.

Two implementations of one small protocol. A message arrives as the bytes that go on the
wire and its one envelope recipient (``OutgoingMessage``). ``SmtpMailer`` keeps one
connection open for a whole batch and tells a transient refusal (4xx, a dropped
connection: try later) from a permanent one (5xx: record it and stop). Every message
passes ``check_outgoing`` first, on those very bytes: no code path can send a message
addressed to a list of people.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
import smtplib
import ssl
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from email.utils import getaddresses
from pathlib import Path
from typing import Protocol

import idna

from service.addresses import mask_addresses, mask_email
from service.notices.smtp_url import SmtpSettings, parse_smtp_url
from service.private_files import private_dir, write_private

log = logging.getLogger(__name__)

SMTP_TIMEOUT_SECONDS = 30


class MultipleRecipients(Exception):
    """A message addressed to more than one person: refused before it leaves."""


class UnwritableDomain(ValueError):
    """An address whose domain has no A-label form (IDNA 2008): no relay can be given it."""


NEEDS_SMTPUTF8 = (
    "the address's local part is not ASCII: it needs SMTPUTF8 (RFC 6531), "
    "which the relay does not offer; not sent"
)


@dataclass(frozen=True, slots=True)
class SendResult:
    accepted: bool
    permanent: bool = False  # a refusal that retrying will not change
    code: int | None = None
    error: str | None = None
    # The relay refused our session or our sender (greeting, EHLO, STARTTLS, AUTH, MAIL
    # FROM), not this recipient: no address is at fault, and every other message would
    # meet the same refusal. Never permanent: a wrong password or a sender the relay does
    # not take is fixed on our side, and must not fail the campaign for good nor mark
    # every account's address undeliverable.
    relay: bool = False


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """One message as it goes on the wire, and the one person it goes to."""

    recipient: str  # the one envelope recipient (RCPT TO)
    message_id: str
    data: bytes  # the whole message, CRLF line ends
    smtputf8: bool = False  # the recipient's local part is not ASCII (RFC 6531)
    eight_bit: bool = False  # the content holds 8-bit bytes (RFC 6152)


class Mailer(Protocol):
    def send(self, message: OutgoingMessage) -> SendResult: ...

    def close(self) -> None: ...


RECIPIENT_FIELDS = frozenset({b"cc", b"bcc", b"resent-to", b"resent-cc", b"resent-bcc"})
_FIELD_NAME = re.compile(rb"[\x21-\x39\x3b-\x7e]+")  # RFC 5322 3.6.8: printable, no colon
# An addr-spec of dot-atoms (RFC 5322 3.4.1): one mailbox, nothing quoted, nothing to unfold.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
DOT_ATOM_ADDRESS = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*@{_ATEXT}(?:\.{_ATEXT})*")


def wire_address(address: str) -> str:
    """The form of ``address`` that goes on the wire: its domain as A-labels, if not ASCII.

    ``carol@Bücher.de`` is sent as ``carol@xn--bcher-kva.de`` (IDNA 2008 with the UTS #46
    mapping, which also lowercases it), in the envelope and the To header alike. An A-label
    is valid wherever a domain is (RFC 5890, 5891), so only a non-ASCII local part still
    needs SMTPUTF8 (RFC 6531), which many relays do not offer. We send the A-label even to
    a relay that offers SMTPUTF8: the next hop may not, and the relay would then have to
    bounce a message that needed no extension at all. An ASCII domain (A-labels
    included, in any case) is left as it is: it is already what the wire carries, and
    whether its labels are valid is for DNS and the receiving side to say. The local part
    is never touched: only its owner's server may read it (RFC 5321 2.4).

    Raises UnwritableDomain (a ValueError) for a non-ASCII domain that IDNA refuses.
    """
    local, at, domain = address.rpartition("@")
    if not at or domain.isascii():
        return address
    try:
        a_labels = idna.encode(domain, uts46=True).decode("ascii")
    except UnicodeError as exc:  # idna.IDNAError and its kin
        raise UnwritableDomain(
            f"the address's domain is not a valid internationalized domain name (IDNA 2008): {exc}"
        ) from None
    return f"{local}@{a_labels}"


def check_outgoing(message: OutgoingMessage) -> str:
    """Check the bytes about to leave: one To address, the envelope's; no Cc, no Bcc.

    Reads the header block of ``message.data`` itself (not an object it was made from),
    so what is checked is what is sent, and strictly: a bare CR or LF (which a reader
    could take for a line break, hence a header) or a line that is not a header field
    refuses the message. Returns the recipient; raises MultipleRecipients.
    """
    head, separator, _ = message.data.partition(b"\r\n\r\n")
    if not separator:
        raise MultipleRecipients("a notice must have a header block")
    to_values: list[bytes] = []
    in_to = False
    for line in head.split(b"\r\n"):
        if b"\r" in line or b"\n" in line:
            raise MultipleRecipients("a notice's header block holds a bare CR or LF")
        if line[:1] in (b" ", b"\t"):  # a folded field goes on (RFC 5322 2.2.3)
            if in_to:
                to_values[-1] += line
            continue
        name, colon, value = line.partition(b":")
        if not colon or not _FIELD_NAME.fullmatch(name):
            raise MultipleRecipients("a notice's header block holds a line that is no field")
        name = name.lower()
        if name in RECIPIENT_FIELDS:
            raise MultipleRecipients(f"a notice must not carry a {name.decode()} header")
        in_to = name == b"to"
        if in_to:
            to_values.append(value)
    if len(to_values) != 1:
        raise MultipleRecipients("a notice must have exactly one To header")
    # RFC 6532: a field may carry UTF-8 (an address that is not ASCII).
    to = to_values[0].decode("utf-8", "replace").strip()
    plain = to == message.recipient and DOT_ATOM_ADDRESS.fullmatch(to)
    # Anything but the plain case goes through the full address parser.
    if not plain and [address for _, address in getaddresses([to])] != [message.recipient]:
        raise MultipleRecipients("a notice must have exactly one To address, its envelope's")
    return message.recipient


class SmtpMailer:
    """One reused SMTP connection; reconnects once when the server dropped it."""

    def __init__(self, settings: SmtpSettings, *, envelope_from: str) -> None:
        self.settings = settings
        self.envelope_from = envelope_from
        self._connection: smtplib.SMTP | None = None
        # The message whose MAIL, RCPT and DATA went out behind the previous content.
        self._in_flight: OutgoingMessage | None = None

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        connection: smtplib.SMTP
        if s.implicit_tls:
            connection = smtplib.SMTP_SSL(
                s.host, s.port, timeout=SMTP_TIMEOUT_SECONDS, context=_tls_context()
            )
        else:
            connection = smtplib.SMTP(s.host, s.port, timeout=SMTP_TIMEOUT_SECONDS)
        try:
            if not s.implicit_tls:
                connection.ehlo()
                if s.starttls != "off" and connection.has_extn("starttls"):
                    connection.starttls(context=_tls_context())
                    connection.ehlo()
                elif s.starttls == "required":
                    raise smtplib.SMTPNotSupportedError("the server does not offer STARTTLS")
            if s.username:
                connection.login(s.username, s.password or "")
        except BaseException:
            # A refused EHLO, STARTTLS or login: the half-open session is of no use.
            with contextlib.suppress(OSError, smtplib.SMTPException):
                connection.close()
            raise
        return connection

    def send(self, message: OutgoingMessage) -> SendResult:
        """Send one message; raises MultipleRecipients before anything leaves."""
        check_outgoing(message)
        for _, result in self.send_all((message,)):
            return result
        return SendResult(False, error="unreachable")

    def send_all(
        self, messages: Iterable[OutgoingMessage]
    ) -> Iterator[tuple[OutgoingMessage, SendResult]]:
        """Send ``messages`` in their order, each to its one recipient; yield each with its
        result as soon as that is known, in the same order.

        Where the relay offers PIPELINING (RFC 2920), the next message's MAIL, RCPT and
        DATA follow this one's content and end-of-data in the same write: one round trip
        a message. Replies come in order, so each maps to its message; a refusal of one
        message is that message's result only, and a message is never reported accepted
        without its own 250 after its content. ``messages`` is read one ahead: the next is
        taken while this one's end-of-data is still unanswered. A message that fails
        ``check_outgoing`` is yielded refused (permanent) and never touches the wire.
        Stopping the iteration early is safe: ``close`` then drops a connection that has a
        message's envelope in flight rather than quitting it.
        """
        upcoming = iter(messages)
        message = next(upcoming, None)
        while message is not None:
            result, following = self._send_one(message, upcoming)
            yield message, result
            message = next(upcoming, None) if isinstance(following, _Unread) else following

    def _send_one(
        self, message: OutgoingMessage, upcoming: Iterator[OutgoingMessage]
    ) -> tuple[SendResult, OutgoingMessage | _Unread | None]:
        """Send ``message``; return its result and the next message, if it was read."""
        following: OutgoingMessage | _Unread | None = _UNREAD
        try:
            # A message carried behind the previous one passed the check then.
            recipient = message.recipient if message is self._in_flight else check_outgoing(message)
        except MultipleRecipients as exc:
            return SendResult(False, permanent=True, error=str(exc)[:300]), following
        for attempt in (1, 2):
            try:
                if self._connection is None:
                    session = self._session_or_refusal()
                    if isinstance(session, SendResult):
                        return session, following
                    self._connection = session
                connection = self._connection
                if not connection.has_extn("pipelining"):
                    options = _mail_options(connection, message)
                    connection.sendmail(self.envelope_from, [recipient], message.data, options)
                    return SendResult(accepted=True, code=250), following
                if self._in_flight is not message:
                    connection.send(self._envelope(connection, message))
                self._in_flight = None
                refusal = _envelope_replies(connection, recipient)
                if refusal is not None:
                    if refusal.code == 421:  # the server is closing: reconnect next time
                        self._drop()
                    return refusal, following
                if isinstance(following, _Unread):
                    following = next(upcoming, None)
                payload = _DOT_LINE.sub(b"..", message.data) + _data_end(message.data)
                carried = self._carried_envelope(connection, following)
                if carried is not None and isinstance(following, OutgoingMessage):
                    # RFC 2920 3.1: the content's end may be followed by the next
                    # transaction's commands; their replies come after this one's.
                    payload += carried
                    self._in_flight = following
                connection.send(payload)
                code, reply = connection.getreply()
                if code == 250:
                    return SendResult(accepted=True, code=250), following
                if code == 421:
                    self._drop()
                # Any other refusal ends this transaction only (RFC 5321 4.1.1.4): the
                # next one's commands, already sent, are answered in turn.
                return _refusal(code, reply, recipient), following
            except smtplib.SMTPServerDisconnected as exc:
                self._drop()
                if attempt == 2:
                    return SendResult(False, error=f"disconnected: {exc}"[:300]), following
            except smtplib.SMTPNotSupportedError as exc:
                if self._connection is None:  # STARTTLS or AUTH missing: the relay's fault
                    return SendResult(False, error=f"{type(exc).__name__}: {exc}"[:300]), following
                # A non-ASCII local part and a relay without SMTPUTF8 (RFC 6531): nothing
                # was sent, retrying changes nothing, and the next message may well go.
                return SendResult(False, permanent=True, error=str(exc)[:300]), following
            except smtplib.SMTPSenderRefused as exc:  # MAIL FROM, without PIPELINING
                if exc.smtp_code == 421:
                    self._drop()
                return _relay_refusal("the sender", exc.smtp_code, exc.smtp_error), following
            except smtplib.SMTPRecipientsRefused as exc:
                code, reply = next(iter(exc.recipients.values()))
                return _refusal(code, reply, recipient), following
            except smtplib.SMTPResponseException as exc:
                if exc.smtp_code in (421,):  # the server is closing: reconnect next time
                    self._drop()
                return _refusal(exc.smtp_code, exc.smtp_error, recipient), following
            except UnicodeEncodeError as exc:
                # An address the relay cannot be given as it is: no retry will help.
                return SendResult(False, permanent=True, error=str(exc)[:300]), following
            except (OSError, smtplib.SMTPException) as exc:
                self._drop()
                return SendResult(False, error=f"{type(exc).__name__}: {exc}"[:300]), following
        return SendResult(False, error="unreachable"), following

    def _session_or_refusal(self) -> smtplib.SMTP | SendResult:
        """A new session, or the relay's refusal of it as a ``relay`` result.

        A refusal of the greeting, EHLO, STARTTLS or AUTH (554, 530, 535 ...) is the
        relay's answer to us, whoever the message is for. A dropped connection or a
        network error is raised as before (retried once, then the batch waits).
        """
        try:
            return self._connect()
        except smtplib.SMTPServerDisconnected:
            raise
        except smtplib.SMTPResponseException as exc:  # connect, helo, auth errors
            return _relay_refusal("the session", exc.smtp_code, exc.smtp_error)

    def _envelope(self, connection: smtplib.SMTP, message: OutgoingMessage) -> bytes:
        """MAIL, RCPT and DATA of ``message`` as one write (RFC 2920)."""
        params = "".join(f" {option}" for option in _mail_options(connection, message))
        commands = (
            f"mail FROM:{_quoted(self.envelope_from)}{params}\r\n"
            f"rcpt TO:{_quoted(message.recipient)}\r\nDATA\r\n"
        )
        # SMTPUTF8 (RFC 6531) lets the commands carry UTF-8; anything else is ASCII.
        return commands.encode("utf-8" if message.smtputf8 else "ascii")

    def _carried_envelope(
        self, connection: smtplib.SMTP, message: OutgoingMessage | _Unread | None
    ) -> bytes | None:
        """The commands of ``message`` to follow the current content, if it may go on this
        connection at all; any other message is dealt with in its own turn."""
        if not isinstance(message, OutgoingMessage):
            return None
        try:
            check_outgoing(message)
            return self._envelope(connection, message)
        except (MultipleRecipients, smtplib.SMTPNotSupportedError, UnicodeEncodeError):
            return None

    def _drop(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(OSError, smtplib.SMTPException):
                self._connection.close()
        self._connection = None
        self._in_flight = None

    def close(self) -> None:
        """Quit the connection; drop it instead if a message's envelope is still in flight
        (iteration of ``send_all`` stopped early): after its 354 a QUIT would be read as
        content, and the server discards a message whose end-of-data never comes."""
        if self._connection is not None and self._in_flight is None:
            with contextlib.suppress(OSError, smtplib.SMTPException):
                self._connection.quit()
        self._drop()


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """The default verifying context, built once: loading the CA store takes ~30 ms."""
    return ssl.create_default_context()


class _Unread:
    """The next message has not been read from the caller's iterator yet."""


_UNREAD = _Unread()


def _envelope_replies(connection: smtplib.SMTP, recipient: str) -> SendResult | None:
    """Read the replies to a pipelined MAIL, RCPT and DATA (RFC 2920); None on 354.

    On a refusal, leave the session ready for the next message (as ``sendmail`` does) and
    return the refusal, told apart as ``sendmail``'s exceptions would be. smtplib does not
    pipeline; each wait for a reply is a trip through the server's event loop, the bulk of
    a message's time on a fast relay.
    """
    replies: list[tuple[int, bytes]] = []
    for _ in range(3):
        try:
            replies.append(connection.getreply())
        except smtplib.SMTPServerDisconnected:
            # A server closes after a 421 without answering what follows: that refusal
            # is the outcome (as sendmail, which stops at it), not the lost connection.
            if not any(code >= 400 for code, _ in replies):
                raise
            break
    (mail_code, mail_reply), *rest = replies
    data_open = len(rest) == 2 and rest[1][0] == 354
    if mail_code != 250:
        _reset(connection, data_open=data_open)
        return _relay_refusal("the sender", mail_code, mail_reply)
    rcpt_code, rcpt_reply = rest[0]
    if rcpt_code not in (250, 251):
        _reset(connection, data_open=data_open)
        return _refusal(rcpt_code, rcpt_reply, recipient)
    data_code, data_reply = rest[1]
    if data_code != 354:
        _reset(connection, data_open=False)
        return _refusal(data_code, data_reply, recipient)
    return None


def _quoted(address: str) -> str:
    """``smtplib.quoteaddr``, without parsing a plain dot-atom address (nearly every one):
    the parse took a tenth of a pipelined message's time."""
    if DOT_ATOM_ADDRESS.fullmatch(address):
        return f"<{address}>"
    return smtplib.quoteaddr(address)


_DOT_LINE = re.compile(rb"(?m)^\.")  # a line starting with "." gets another (RFC 5321 4.5.2)


def _data_end(data: bytes) -> bytes:
    return b".\r\n" if data.endswith(b"\r\n") else b"\r\n.\r\n"


def _reset(connection: smtplib.SMTP, *, data_open: bool) -> None:
    """Leave the session ready for the next message, as ``sendmail`` does on a refusal."""
    with contextlib.suppress(OSError, smtplib.SMTPException):
        if data_open:  # a server that took DATA without a recipient: end the empty message
            connection.send(b".\r\n")
            connection.getreply()
        connection.rset()


def _mail_options(connection: smtplib.SMTP, message: OutgoingMessage) -> list[str]:
    """MAIL FROM parameters, as ``smtplib.SMTP.send_message`` chooses them."""
    if message.smtputf8:
        if not connection.has_extn("smtputf8"):
            raise smtplib.SMTPNotSupportedError(NEEDS_SMTPUTF8)
        return ["SMTPUTF8", "BODY=8BITMIME"]
    if message.eight_bit and connection.has_extn("8bitmime"):
        return ["BODY=8BITMIME"]
    return []


def _refusal(code: int, reply: bytes | str, recipient: str) -> SendResult:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    # A server's reply may quote the address back; the record keeps it masked.
    text = text.replace(recipient, mask_email(recipient))
    return SendResult(False, permanent=500 <= code < 600, code=code, error=text[:300])


def _relay_refusal(what: str, code: int, reply: bytes | str) -> SendResult:
    """The relay's refusal of our session or sender: never the recipient's, never
    permanent (``SendResult.relay``)."""
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    error = mask_addresses(f"the relay refused {what}: {code} {text}")
    return SendResult(False, code=code, error=error[:300], relay=True)


class FolderMailer:
    """Write each message as one ``.eml`` file: the embedded default, with no SMTP."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def send(self, message: OutgoingMessage) -> SendResult:
        check_outgoing(message)
        private_dir(self.directory)
        name = (message.message_id or "message").strip("<>").replace("/", "_")
        write_private(self.directory / f"{name}.eml", message.data)
        return SendResult(accepted=True)

    def close(self) -> None:
        return None


def send_each(
    mailer: Mailer, messages: Iterable[OutgoingMessage]
) -> Iterator[tuple[OutgoingMessage, SendResult]]:
    """Send ``messages`` in order; yield each with its result, in the same order.

    ``SmtpMailer`` pipelines them (``SmtpMailer.send_all``); any other mailer sends one by
    one. A message refused before it leaves (``check_outgoing``, an address no header can
    carry) is yielded refused for good, not raised, so the rest still go.
    """
    if isinstance(mailer, SmtpMailer):
        yield from mailer.send_all(messages)
        return
    for message in messages:
        try:
            result = mailer.send(message)
        except (MultipleRecipients, ValueError) as exc:
            result = SendResult(False, permanent=True, error=str(exc)[:300])
        yield message, result


def make_mailer(smtp_url: str | None, *, mail_dir: Path, envelope_from: str) -> Mailer:
    if smtp_url is None:
        return FolderMailer(mail_dir)
    return SmtpMailer(parse_smtp_url(smtp_url), envelope_from=envelope_from)
