"""``LEAKGUARD_SMTP_URL`` read into the settings of one SMTP connection.

Its own module, free of the mail libraries, so the settings check it at start (one line
naming the variable) rather than the first delivery job failing on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
STARTTLS_VALUES = ("required", "if-offered", "off")


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    host: str
    port: int
    implicit_tls: bool
    starttls: str  # "required" | "if-offered" | "off"
    username: str | None
    password: str | None


def parse_smtp_url(url: str) -> SmtpSettings:
    """Read ``smtp://user:pass@host:587`` (STARTTLS) or ``smtps://...:465`` (TLS).

    STARTTLS is required on ``smtp://`` except to a loopback relay, where it is used if
    offered; ``?starttls=off`` turns it off explicitly (a relay on a trusted network).

    Raises ValueError, in words that never repeat the URL (it holds the password), for
    another scheme, no host, a port that is no number from 1 to 65535, a path, a query
    parameter other than one ``starttls`` of the three values (a typo such as
    ``?startls=off`` would otherwise be ignored), or a ``starttls`` on ``smtps://``.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps"):
        raise ValueError("must be an smtp:// or smtps:// URL")
    implicit = parts.scheme == "smtps"
    try:
        port = parts.port
    except ValueError:
        raise ValueError("its port must be a number from 1 to 65535") from None
    if port == 0:
        raise ValueError("its port must be a number from 1 to 65535")
    host = parts.hostname
    if not host:
        raise ValueError("names no host: smtp://user:password@relay.example.com:587")
    if parts.path not in ("", "/") or parts.fragment:
        raise ValueError("must be smtp://user:password@host:port with no path")
    try:
        query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise ValueError("its query can only be ?starttls=required|if-offered|off") from None
    if set(query) - {"starttls"} or len(query.get("starttls", [])) > 1:
        raise ValueError("its query can only be ?starttls=required|if-offered|off")
    default = "if-offered" if host in LOOPBACK_HOSTS else "required"
    starttls = query.get("starttls", [default])[0]
    if starttls not in STARTTLS_VALUES:
        raise ValueError("starttls must be required, if-offered or off")
    if implicit:
        if "starttls" in query:
            raise ValueError("smtps:// is TLS from the start: it takes no starttls")
        starttls = "off"
    return SmtpSettings(
        host=host,
        port=port or (465 if implicit else 587),
        implicit_tls=implicit,
        starttls=starttls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )
