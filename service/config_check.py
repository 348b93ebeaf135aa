"""What production refuses, and the settings as an operator may see them.

Development runs on the embedded default (SQLite, a fake Redis, a mail folder): fine on a
laptop, wrong on a server. ``production_problems`` names each setting that would make a
production deployment lose work or send mail that looks forged; every process refuses to
start in production while there is one (``service.runtime.build_runtime``), and
``leakguard config check`` prints them all. Free of Flask.
"""

from __future__ import annotations

import ipaddress
from email.utils import parseaddr
from urllib.parse import urlsplit, urlunsplit

from pydantic import SecretStr
from sqlalchemy.engine import make_url

from service.config import ENV_PREFIX, Environment, Settings, database_dialect

DEFAULT_SERVICE_NAME = "us"
HIDDEN = "********"

# Names that never reach a person's mail server: RFC 6761 (localhost, invalid, test,
# example), RFC 6762 (.local), RFC 2606 (example.com/net/org) and ICANN's private .internal.
_SPECIAL_NAMES = frozenset({"localhost", "invalid", "test", "example", "local", "internal"})
_SPECIAL_DOMAINS = frozenset({"example.com", "example.net", "example.org", "localdomain"})


def production_problems(settings: Settings) -> list[str]:
    """Every setting that cannot be right in production, one line each naming the variable.

    Checked whatever ``settings.env`` says, so that ``config check`` can tell a developer
    what production would refuse. Empty: nothing to refuse.
    """
    problems = []
    if settings.database_url is None:
        problems.append(_line("database_url", "unset: production needs PostgreSQL"))
    elif database_dialect(settings.database_url)[0] == "sqlite":
        problems.append(
            _line(
                "database_url",
                "SQLite serves one machine's trial; production needs PostgreSQL "
                "(postgresql+psycopg://user:password@host/db)",
            )
        )
    if settings.redis_url is None:
        problems.append(
            _line(
                "redis_url",
                "unset means an in-process fake Redis that no worker shares and that loses "
                "its queues and limits on restart; set redis://host:6379/0",
            )
        )
    if settings.smtp_url is None:
        problems.append(
            _line(
                "smtp_url",
                "unset means warnings and codes are written to the instance's mail folder, "
                "where nobody reads them; set smtp://user:password@relay:587",
            )
        )
    for name in ("hash_key", "secret_key"):
        if getattr(settings, name) is None:
            problems.append(_line(name, "unset: production never generates its keys"))
    if settings.hash_key is not None and settings.hash_key.get_secret_value() == _secret(
        settings.secret_key
    ):
        problems.append(
            _line(
                "secret_key",
                "equals LEAKGUARD_HASH_KEY: rotating the signing key would then orphan every "
                "stored hash; generate two keys",
            )
        )
    domain = parseaddr(settings.mail_from)[1].rpartition("@")[2]
    if unreachable_domain(domain):
        problems.append(
            _line(
                "mail_from",
                f"the domain {domain!r} is no public mail domain: notices would go out from "
                "it and with Message-IDs at it, which receivers treat as forged",
            )
        )
    if settings.account_url is not None:
        host = urlsplit(settings.account_url).hostname or ""
        if unreachable_domain(host):
            problems.append(
                _line(
                    "account_url",
                    f"the host {host!r} is not one the people warned can reach; "
                    "name the https address of your account page",
                )
            )
    if settings.service_name.strip() == DEFAULT_SERVICE_NAME:
        problems.append(
            _line(
                "service_name",
                'unset: notices would say "your account with us"; name your service as '
                "its users know it",
            )
        )
    return problems


def unreachable_domain(domain: str) -> bool:
    """True for a domain no one else's mail server or browser can reach: empty, one label,
    an address literal or a special-use name (``localhost``, ``*.test``, ``example.com``)."""
    name = domain.strip().rstrip(".").lower()
    if not name or name.startswith("["):
        return True
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        pass
    labels = name.split(".")
    if len(labels) < 2 or labels[-1] in _SPECIAL_NAMES:
        return True
    return ".".join(labels[-2:]) in _SPECIAL_DOMAINS or labels[-1] == "localdomain"


def effective_settings(settings: Settings) -> list[tuple[str, str]]:
    """Every setting as (variable, value shown), in declaration order.

    Keys show only whether they are set; URLs show no password. Resolved defaults are shown
    as the process uses them (the SQLite file, the mail folder).
    """
    shown = []
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if name == "database_url":
            text = hide_url_password(settings.resolved_database_url)
        elif name == "mail_dir":
            text = str(settings.resolved_mail_dir)
        elif isinstance(value, SecretStr):
            text = HIDDEN
        elif name in {"redis_url", "smtp_url"} and value is not None:
            text = hide_url_password(value)
        elif value is None:
            text = "(unset)"
        elif isinstance(value, Environment):
            text = value.value
        else:
            text = str(value)
        if name == "redis_url" and value is None:
            text = "(unset: an in-process fake Redis)"
        if name in {"hash_key", "secret_key"} and value is None:
            text = "(unset: generated into the instance folder)"
        shown.append((f"{ENV_PREFIX}{name.upper()}", text))
    return shown


def hide_url_password(url: str) -> str:
    """``url`` with any password replaced by ``***``."""
    if url.startswith(("sqlite", "postgresql")):
        return make_url(url).render_as_string(hide_password=True)
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _line(field: str, message: str) -> str:
    return f"{ENV_PREFIX}{field.upper()}: {message}"


def _secret(value: SecretStr | None) -> str | None:
    return None if value is None else value.get_secret_value()
