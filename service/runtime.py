"""What a running Leakguard process holds: settings, database, address keys.

Built once per process (by the app factory or a CLI command) and handed down; nothing
connects at import time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from limits import parse
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from service.addresses import AddressKeys, address_keys_from
from service.config import HASH_KEY_FILE, SECRET_KEY_FILE, ConfigError, Environment, Settings
from service.config_check import production_problems
from service.db import Database
from service.errors import JobError
from service.events.emit import EventPolicy
from service.private_files import private_dir
from service.stepup.assurance import AssuranceSigner
from service.stepup.services import StepUp, StepUpPolicy
from service.stepup.throttle import ThrottlePolicy


@dataclass(frozen=True, slots=True)
class Runtime:
    settings: Settings
    db: Database
    keys: AddressKeys
    step_up: StepUp


class InstanceNotFound(JobError):
    """No instance where the settings point: a command that must not create one stops."""


def build_runtime(
    settings: Settings, *, serving: bool = False, create_instance: bool = True
) -> Runtime:
    """Build the runtime from ``settings``; ``serving``: for an HTTP server, whose database
    statements are bounded by ``db_request_timeout_seconds`` (jobs and commands are not).

    ``create_instance`` False (every command but ``demo`` and ``db upgrade``): raise
    InstanceNotFound rather than create an instance folder, keys or a SQLite database,
    since a new hash key silently matches nothing stored under the old.
    In production, raises ConfigError with every ``production_problems`` line.
    """
    if settings.env is Environment.PRODUCTION:
        problems = production_problems(settings)
        if problems:
            raise ConfigError("\n".join(problems))
    if create_instance:
        private_dir(settings.instance_dir)
    else:
        problem = instance_problem(settings)
        if problem is not None:
            raise InstanceNotFound(problem)
        if settings.instance_dir.is_dir():
            private_dir(settings.instance_dir)  # narrow it, as on creation
    signer = AssuranceSigner(
        settings.secret_key_text(), timedelta(seconds=settings.assurance_ttl_seconds)
    )
    email_sends = parse(settings.rate_limit_email_code)
    policy = StepUpPolicy(
        code_ttl=timedelta(seconds=settings.email_code_ttl_seconds),
        totp_issuer=settings.totp_issuer,
        trusted_device_ttl=timedelta(days=settings.trusted_device_days),
        throttle=ThrottlePolicy(
            email_sends=email_sends.amount,
            email_send_window=timedelta(seconds=email_sends.get_expiry()),
        ),
    )
    return Runtime(
        settings=settings,
        db=Database(
            settings.resolved_database_url,
            statement_timeout=settings.db_request_timeout_seconds if serving else None,
            session_info=EventPolicy.from_settings(settings).session_info(),
        ),
        keys=address_keys_from(settings),
        step_up=StepUp(master_key=settings.hash_key_bytes(), signer=signer, policy=policy),
    )


def instance_problem(settings: Settings) -> str | None:
    """Say, in one line, what of the instance is missing: None if it is all there.

    Names the database and the instance folder looked at: a command run from another
    directory looks for ``./instance`` there (LEAKGUARD_INSTANCE_DIR unset).
    """
    folder = settings.instance_dir.absolute()
    missing = []
    database = _sqlite_file(settings.resolved_database_url)
    if database is not None and not database.exists():
        missing.append("no database file")
    wanted = ((HASH_KEY_FILE, settings.hash_key), (SECRET_KEY_FILE, settings.secret_key))
    keys = [file for file, given in wanted if given is None and not (folder / file).exists()]
    if keys and not folder.exists():
        missing.append("no instance folder")
    elif keys:
        missing.append(f"no {' or '.join(keys)} in the instance folder")
    if not missing:
        return None
    shown = str(database) if database is not None else _hide_password(settings)
    return (
        f"no Leakguard instance found ({', '.join(missing)}): looked for the database at "
        f"{shown} and the instance folder {folder}; set LEAKGUARD_INSTANCE_DIR (or "
        "LEAKGUARD_DATABASE_URL) to your instance, or create a new, empty one here with "
        "`leakguard db upgrade`"
    )


def _sqlite_file(url: str) -> Path | None:
    """The file of a SQLite database URL; None for another database or an in-memory one."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None
    name = parsed.database
    if parsed.get_backend_name() != "sqlite" or not name or name == ":memory:":
        return None
    if name.startswith("file:"):
        return None
    return Path(name).absolute()


def _hide_password(settings: Settings) -> str:
    return make_url(settings.resolved_database_url).render_as_string(hide_password=True)


EXTENSION = "leakguard"  # the key of the Runtime in a Flask app's ``extensions``


def runtime_of(app: Any) -> Runtime:
    """The runtime the app factory built for ``app`` (a Flask app; typed loosely so that
    this module stays free of Flask)."""
    value: Runtime = app.extensions[EXTENSION]
    return value
