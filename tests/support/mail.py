"""A message as its one recipient's mail program reads it.

``one_recipient`` is the test's own reading of "one message, one person": it parses the
message with the standard library (not with the code under test) and names the one
person it is for, or fails.
"""

from __future__ import annotations

import re
from email import message_from_bytes, policy
from email.message import EmailMessage, Message
from email.utils import getaddresses
from html import unescape

RECIPIENT_HEADERS = ("Cc", "Bcc", "Resent-To", "Resent-Cc", "Resent-Bcc")
# Every link-shaped thing in a message part: schemes, bare www. hosts, href/src targets.
_LINKISH = re.compile(r"(?:[a-z][a-z0-9+.-]*://|www\.)[^\s<>\"']+", re.IGNORECASE)
_ATTRIBUTE_TARGET = re.compile(r"\b(?:href|src|action)\s*=\s*\"([^\"]*)\"", re.IGNORECASE)


class NotOneRecipient(AssertionError):
    """The message is addressed to anything but exactly one person."""


def one_recipient(message: Message) -> str:
    """The message's one recipient; raise NotOneRecipient otherwise.

    Exactly one To header holding exactly one address, and no Cc, Bcc or Resent-*
    header: the leak that started all this was a mass mail with every recipient visible.
    """
    for header in RECIPIENT_HEADERS:
        if message.get_all(header):
            raise NotOneRecipient(f"the message carries a {header} header")
    to_headers = message.get_all("To") or []
    addresses = [address for _, address in getaddresses([str(h) for h in to_headers])]
    if len(to_headers) != 1 or len(addresses) != 1 or not addresses[0]:
        raise NotOneRecipient(f"the message is to {addresses!r}, not to one address")
    return addresses[0]


def to_addresses(message: Message) -> list[str]:
    """Every address of every To header, in order."""
    return [address for _, address in getaddresses([str(h) for h in message.get_all("To") or []])]


def parse_message(data: bytes) -> EmailMessage:
    """The message as the person's mail program reads it."""
    message = message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def text_and_html(message: EmailMessage) -> tuple[str, str]:
    """The plain-text and the HTML body."""
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert isinstance(text, EmailMessage)
    assert isinstance(html, EmailMessage)
    return text.get_content(), html.get_content()


def links(text: str) -> set[str]:
    """Every link in a text or HTML body, attribute targets included."""
    found = {match.rstrip(".,;:)") for match in _LINKISH.findall(unescape(text))}
    return found | {unescape(target) for target in _ATTRIBUTE_TARGET.findall(text)}
