"""Settings from ``LEAKGUARD_*`` environment variables, with an embedded default.

The embedded default needs nothing installed: a SQLite file, an in-process fake Redis and
a mail folder, all under the instance folder. Production (``LEAKGUARD_ENV=production``)
refuses to start without the secrets, because a generated key would silently change the
keyed hashes that join leaks to accounts.
"""

from __future__ import annotations

import os
import re
import secrets
from email.utils import getaddresses
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import idna
from limits import parse_many
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from service.notices.smtp_url import parse_smtp_url
from service.private_files import private_dir
from service.readable_text import TextFault, text_fault

ENV_PREFIX = "LEAKGUARD_"
HASH_KEY_FILE = "hash_key"
SECRET_KEY_FILE = "secret_key"  # noqa: S105  (a file name, not a secret)
MIN_KEY_BYTES = 16
# The service's and the TOTP issuer's name: a few words, shown in subjects and apps.
MAX_NAME_CHARS = 100
# Ceiling of LEAKGUARD_MAX_BATCH_ACCOUNTS. A full batch of maximal items (255-character ids
# and 320-character addresses, every character \u-escaped) is about 3.5 MB: it stays under
# the default body limit, so a schema-valid request never meets a 413.
MAX_BATCH_ACCOUNTS_LIMIT = 1000


class ConfigError(Exception):
    """The configuration cannot be used; the message names the variable."""


class Environment(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class Settings(BaseSettings):
    """Everything Leakguard reads from its environment. Frozen: pass a new one to change it."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="ignore")

    env: Environment = Environment.DEVELOPMENT
    instance_dir: Path = Field(default_factory=lambda: Path.cwd() / "instance")
    database_url: str | None = None
    redis_url: str | None = None
    hash_key: SecretStr | None = None
    secret_key: SecretStr | None = None
    smtp_url: str | None = None
    mail_dir: Path | None = None
    mail_from: str = "Leakguard <security@localhost>"
    # Messages a second from each delivering process (0: as fast as the server takes them).
    mail_rate: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0
    # Named in the notices: "your account with <service_name>" ("us" when unset).
    service_name: str = "us"
    # Where a person changes the address of their account: named in the warning as an
    # address to type, not a link (the warning tells people not to sign in through links).
    account_url: str | None = None
    # Where Leakguard's own pages are reached from outside: the email-change links point
    # there (``GET /email-change/confirm?token=...``). Required, https, in production.
    public_url: str = "http://localhost:5000"

    # Canonical form rules (service/emails.py); each can be switched off for a deployment
    # whose users' mail servers treat, say, "+" literally.
    canon_lowercase_local: bool = True
    canon_drop_subaddress: bool = True
    canon_gmail_dots: bool = True

    # Step-up verification (service/stepup.py).
    totp_issuer: str = "Leakguard"  # the name authenticator apps show beside the code
    email_code_ttl_seconds: Annotated[int, Field(ge=60, le=3600)] = 600
    assurance_ttl_seconds: Annotated[int, Field(ge=60, le=86400)] = 900
    # A passed step-up trusts the device the login service names for this long (0: never).
    trusted_device_days: Annotated[int, Field(ge=0, le=365)] = 30
    # An exposure still open after this long expires (leakguard housekeeping).
    exposure_ttl_days: Annotated[int, Field(ge=1, le=3650)] = 180
    # Rate limits, as Flask-Limiter strings, kept in Redis (in memory without it).
    # Per API client: a login service sends every sign-in of its users through one key.
    rate_limit_risk: str = "500/second"
    rate_limit_step_up: str = "50/second"
    # Per account: emailed codes it may be sent, against mail bombing.
    rate_limit_email_code: str = "5/15minutes"
    # Per IP: requests with a missing, unknown or revoked key (a key guesser).
    rate_limit_auth_failures: str = "20/minute"

    # The email change (service/email_change): after a revert, no new change for this long.
    email_change_cooldown_hours: Annotated[int, Field(ge=0, le=24 * 90)] = 72
    # Email-change requests (and resends) per account, and per new address over all accounts.
    rate_limit_email_change_account: str = "5/hour"
    rate_limit_email_change_address: str = "5/hour"
    rate_limit_email_change_resend: str = "3/hour"
    # Refused logins to /staff per staff account (the email as typed) and per client IP.
    rate_limit_staff_login_account: str = "10/15minutes"
    rate_limit_staff_login_ip: str = "50/15minutes"

    # Reverse proxies in front of the app whose X-Forwarded-For/-Proto it believes (0: none).
    trusted_proxies: Annotated[int, Field(ge=0, le=5)] = 0

    # Longest a database statement may run, lock waits included, while serving an HTTP
    # request (PostgreSQL statement_timeout; 0: unbounded). A request held up behind a
    # migration's or an operator's table lock then answers 503 with Retry-After instead of
    # holding the sign-in. CLI commands and queue workers are never bounded by it.
    db_request_timeout_seconds: Annotated[float, Field(ge=0, le=600)] = 5.0

    # Security events to the login service (service/events/): SETs (RFC 8417) pushed to
    # ``events_push_url`` (RFC 8935) and/or fetched from POST /v1/events/poll (RFC 8936).
    # With neither, no event is recorded.
    events_push_url: str | None = None
    events_push_token: SecretStr | None = None  # sent as Authorization: Bearer
    events_poll: bool = False
    # The ``iss`` of every SET and of /.well-known/ssf-configuration: this service's base URL.
    events_issuer: str = "http://localhost:8000"
    # The ``aud`` of every SET (default: the push URL, else the issuer).
    events_audience: str | None = None
    # A private JWK (JSON) that signs the SETs; development: generated into the instance.
    events_signing_key: SecretStr | None = None
    # The key signing before a rotation (a JWK, private or public): only its public part
    # is published in the JWKS, until receivers have seen the new one.
    events_previous_key: SecretStr | None = None
    # CAEP session-revoked when an account is flagged or its address changes.
    events_revoke_sessions: bool = False
    # How long a poll with returnImmediately false waits for a first SET.
    events_poll_wait_seconds: Annotated[float, Field(ge=0, le=25)] = 5.0

    log_level: str = "WARNING"
    # json: one JSON object per line; console: a readable line. Unset: json in production.
    log_format: Literal["json", "console"] | None = None
    max_request_bytes: Annotated[int, Field(gt=0)] = 4 * 1024 * 1024
    max_batch_accounts: Annotated[int, Field(gt=0, le=MAX_BATCH_ACCOUNTS_LIMIT)] = 1000
    import_chunk_rows: Annotated[int, Field(gt=0)] = 20_000
    # Records per ingest transaction: memory, commit cost and resume granularity.
    ingest_chunk_records: Annotated[int, Field(gt=0)] = 100_000

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str | None) -> str | None:
        if value is not None:
            database_dialect(value)
        return value

    @field_validator("mail_from")
    @classmethod
    def _one_sender(cls, value: str) -> str:
        return sender_with_a_labels(value)

    @field_validator("service_name", "totp_issuer")
    @classmethod
    def _readable_name(cls, value: str) -> str:
        # Named in every notice ("your account with ...", the subject) and in people's
        # authenticator apps: blank, a newline or a bidi override would show there.
        fault = text_fault(value, limit=MAX_NAME_CHARS)
        if fault is not None:
            kind, detail = fault
            raise ValueError(
                {
                    TextFault.CONTROL: f"may not hold a control or formatting character ({detail})",
                    TextFault.BLANK: "is blank: give visible text, or leave it unset",
                    TextFault.TOO_LONG: f"is {detail} characters long; at most {MAX_NAME_CHARS}",
                }[kind]
            )
        return " ".join(value.split())

    @field_validator("totp_issuer")
    @classmethod
    def _issuer_without_colon(cls, value: str) -> str:
        if ":" in value:
            # The otpauth:// label is "issuer:account"; apps split it at the first colon
            # (Key Uri Format), so an issuer holding one shows as another name.
            raise ValueError("may not hold a colon (authenticator apps split the name at it)")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @field_validator("smtp_url")
    @classmethod
    def _smtp_scheme(cls, value: str | None) -> str | None:
        if value is not None:
            parse_smtp_url(value)  # every fault found here, not by the first delivery job
        return value

    @field_validator(
        "rate_limit_risk",
        "rate_limit_step_up",
        "rate_limit_email_code",
        "rate_limit_auth_failures",
        "rate_limit_email_change_account",
        "rate_limit_email_change_address",
        "rate_limit_email_change_resend",
        "rate_limit_staff_login_account",
        "rate_limit_staff_login_ip",
    )
    @classmethod
    def _rate_limit(cls, value: str) -> str:
        try:
            items = parse_many(value)
        except ValueError:
            raise ValueError("must be a rate limit such as 50/second or 5/15minutes") from None
        # "0/second" parses, and refuses every request: a typo, never a limit anyone wants.
        if not items or any(item.amount < 1 or item.multiples < 1 for item in items):
            raise ValueError("must allow at least 1 request, such as 50/second or 5/15minutes")
        return value

    @field_validator("events_push_url", "events_issuer")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("https://", "http://")):
            raise ValueError("must be an https:// (or http://) URL")
        return value.rstrip("/") if value is not None else None

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        if value.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return value.upper()

    @field_validator("account_url")
    @classmethod
    def _https_only(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("https://"):
            raise ValueError("must be an https:// URL: a notice links nowhere else")
        return value

    @field_validator("public_url")
    @classmethod
    def _web_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")) or any(c in value for c in "?#\\ "):
            raise ValueError("must be an http(s):// URL without query or fragment")
        return value.rstrip("/")

    @field_validator("hash_key", "secret_key")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().encode()) < MIN_KEY_BYTES:
            raise ValueError(f"must be at least {MIN_KEY_BYTES} bytes")
        return value

    @model_validator(mode="after")
    def _production_needs_secrets(self) -> Settings:
        if self.env is Environment.PRODUCTION:
            missing = [
                f"{ENV_PREFIX}{name.upper()}"
                for name in ("hash_key", "secret_key", "database_url")
                if getattr(self, name) is None
            ]
            if missing:
                raise ValueError(f"{', '.join(missing)} required in production")
            if self.events_enabled and self.events_signing_key is None:
                # Each process would otherwise sign with a key of its own making.
                raise ValueError(
                    f"{ENV_PREFIX}EVENTS_SIGNING_KEY is required in production with events on"
                )
            if self.events_enabled and not self.events_issuer.startswith("https://"):
                # Receivers check ``iss`` and fetch the keys from it: never localhost.
                raise ValueError(
                    f"{ENV_PREFIX}EVENTS_ISSUER must be this service's https:// URL in "
                    "production with events on"
                )
        return self

    @property
    def events_enabled(self) -> bool:
        """Whether any receiver takes security events (push URL set, or polling on)."""
        return self.events_push_url is not None or self.events_poll

    @property
    def resolved_events_audience(self) -> str:
        return self.events_audience or self.events_push_url or self.events_issuer

    @property
    def resolved_log_format(self) -> str:
        if self.log_format is not None:
            return self.log_format
        return "json" if self.env is Environment.PRODUCTION else "console"

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.instance_dir / 'leakguard.sqlite3'}"

    @property
    def resolved_mail_dir(self) -> Path:
        return self.mail_dir or self.instance_dir / "mail"

    def hash_key_bytes(self) -> bytes:
        """Return the key of the address hash; in development, generate it once and keep it."""
        if self.hash_key is not None:
            return self.hash_key.get_secret_value().encode()
        return _instance_secret(self.instance_dir / HASH_KEY_FILE).encode()

    def hash_key_source(self) -> str:
        """Where ``hash_key_bytes`` takes the key from, for a message: the variable or the
        file (its absolute path)."""
        if self.hash_key is not None:
            return f"{ENV_PREFIX}HASH_KEY"
        return str((self.instance_dir / HASH_KEY_FILE).absolute())

    def secret_key_text(self) -> str:
        """Return Flask's signing key; in development, generate it once and keep it."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value()
        return _instance_secret(self.instance_dir / SECRET_KEY_FILE)


def _instance_secret(path: Path) -> str:
    """Read a secret kept in the instance folder, creating it 0600 on first use.

    Written to a private temporary file and hard-linked into place, so two processes
    starting at once agree on one key and neither can read a half-written file.
    """
    try:
        return _read_secret(path)
    except FileNotFoundError:
        pass
    private_dir(path.parent)
    value = secrets.token_hex(32)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(value + "\n")
        os.link(temporary, path)
    except FileExistsError:
        return _read_secret(path)
    finally:
        temporary.unlink()
    return value


def _read_secret(path: Path) -> str:
    value = path.read_text().strip()
    if len(value.encode()) < MIN_KEY_BYTES:
        raise ConfigError(f"{path} holds fewer than {MIN_KEY_BYTES} bytes; delete or fix it")
    return value


# The (backend, driver) pairs Leakguard runs on; ``postgresql://`` means psycopg 3 in
# SQLAlchemy 2.1, and ``sqlite://`` the standard library's sqlite3.
SUPPORTED_DIALECTS = frozenset({("sqlite", "pysqlite"), ("postgresql", "psycopg")})


def database_dialect(url: str) -> tuple[str, str]:
    """The (backend, driver) of a database URL, such as ("postgresql", "psycopg").

    Raises ValueError, in words that never repeat the URL (it may hold a password), for a
    string that is no SQLAlchemy URL, a bad port, or a dialect or driver other than
    SQLite's and psycopg 3's: found here, at start, rather than as a traceback from the
    first connection.
    """
    wanted = "must be a sqlite:/// or postgresql+psycopg:// URL"
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise ValueError(f"{wanted}; this one cannot be parsed (check the port)") from None
    try:
        dialect = parsed.get_dialect()
    except NoSuchModuleError:
        raise ValueError(f"{wanted}; its dialect is unknown") from None
    found = (str(dialect.name), str(dialect.driver))
    if found not in SUPPORTED_DIALECTS:
        raise ValueError(f"{wanted}, not {found[0]}+{found[1]}")
    return found


# The sender's addr-spec (RFC 5321 4.1.2): a dot-atom local part, and a domain of labels
# (any letters: a non-ASCII one becomes A-labels) or an address literal.
_SENDER_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_SENDER_DOMAIN = re.compile(r"(?:[^\W_](?:[\w-]*[^\W_])?\.)*[^\W_](?:[\w-]*[^\W_])?")
_DOMAIN_LITERAL = re.compile(r"\[[A-Za-z0-9.:-]+\]")


def sender_with_a_labels(value: str) -> str:
    """``value`` (``Name <local@domain>`` or ``local@domain``) with its domain as A-labels.

    ``Sicherheit <security@bücher.de>`` becomes ``Sicherheit <security@xn--bcher-kva.de>``
    (IDNA 2008 with the UTS #46 mapping, RFC 5890/5891), so that the From header, the SMTP
    envelope sender and every Message-ID (RFC 5322 3.6.4, ASCII only) carry the same
    domain without SMTPUTF8. Raises ValueError for anything but one address with a domain,
    or a domain IDNA refuses.
    """
    if "\r" in value or "\n" in value:
        raise ValueError("must be one line")
    found = getaddresses([value])
    if len(found) != 1 or "@" not in found[0][1]:
        raise ValueError("must be one address, such as Security <security@example.com>")
    address = found[0][1]
    local, _, domain = address.rpartition("@")
    if not local or not domain or address not in value:
        # Not found as written (``s@exa mple.com`` parses as ``s@example.com``): the From
        # header would carry one address and the envelope another.
        raise ValueError("must be one address, such as Security <security@example.com>")
    if not _SENDER_LOCAL.fullmatch(local):
        # The envelope sender of every notice, sent without SMTPUTF8: a local part that is
        # not plain ASCII would have every notice refused before it leaves.
        raise ValueError(
            "its local part must be plain ASCII letters, digits and .!#$%&'*+/=?^_`{|}~- "
            "(the SMTP envelope sender of every notice)"
        )
    if not (_SENDER_DOMAIN.fullmatch(domain) or _DOMAIN_LITERAL.fullmatch(domain)):
        raise ValueError("its domain is no domain name, such as example.com")
    if domain.isascii():
        return value
    try:
        a_labels = idna.encode(domain, uts46=True).decode("ascii")
    except UnicodeError as exc:  # idna.IDNAError and its kin
        raise ValueError(f"its domain is no valid internationalized domain name: {exc}") from None
    return value.replace(f"{local}@{domain}", f"{local}@{a_labels}")


def load_settings(**overrides: Any) -> Settings:
    """Read settings from the environment; raise ConfigError naming the bad variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None


def describe_validation_error(exc: ValidationError) -> str:
    """Turn pydantic's report into one line that names the environment variable."""
    return "invalid configuration: " + "; ".join(validation_problems(exc))


def validation_problems(exc: ValidationError) -> list[str]:
    """Pydantic's report as one ``LEAKGUARD_NAME: what is wrong`` string per error.

    Never repeats the value given (it may be a key or hold a password).
    """
    parts = []
    for error in exc.errors():
        field = ".".join(str(loc) for loc in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        if field:
            parts.append(f"{ENV_PREFIX}{field.upper()}: {message}")
        else:
            parts.append(message)
    return parts
