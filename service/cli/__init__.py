"""The ``leakguard`` command: Flask's CLI (run, shell, routes) plus Leakguard's own commands.

Each command's module is imported only when that command runs (or shows its own help):
`leakguard --help` and `leakguard ingest` do not pay for every other command's imports.
"""

from __future__ import annotations

import sys

import click

from service.cli.base import LazyCommand, cli

__all__ = ["COMMANDS", "cli", "main"]

# Every top-level command: the module that registers it on ``cli``, and the first paragraph
# of its help for `leakguard --help` (tests/unit/test_cli_lazy.py holds both to the module).
COMMANDS = {
    "accounts": LazyCommand("service.cli.accounts", "The mirror of the login service's accounts."),
    "api-clients": LazyCommand(
        "service.cli.api_clients", "Keys for the login service and other callers of /v1."
    ),
    "config": LazyCommand("service.cli.config", "Inspect the LEAKGUARD_* settings."),
    "db": LazyCommand("service.cli.database", "Manage the database schema."),
    "demo": LazyCommand(
        "service.cli.demo", "Run the whole job on a generated sample, in the embedded default."
    ),
    "email-change": LazyCommand(
        "service.cli.email_change",
        "Support-assisted email changes, their review queue, and the holds of reverts.",
    ),
    "events": LazyCommand(
        "service.cli.events",
        "Security events (SETs) to the login service: status, dropped, keygen.",
    ),
    "exposures": LazyCommand(
        "service.cli.exposures",
        "An account's exposures: list them, resolve or dismiss one (support).",
    ),
    "housekeeping": LazyCommand(
        "service.cli.housekeeping",
        "Expire exposures past LEAKGUARD_EXPOSURE_TTL_DAYS; purge expired challenges, trusted "
        "devices, throttle rows past use and settled security events over 30 days old. Safe to "
        "run from cron at any frequency.",
    ),
    "ingest": LazyCommand(
        "service.cli.leaks",
        "Flag every account whose address is in the leak file PATH, and queue their warnings.",
    ),
    "leaks": LazyCommand("service.cli.leaks", "Leaks ingested so far."),
    "notices": LazyCommand(
        "service.cli.notices",
        "Warning notices: preview, test, pause, resume, status, failed, retry, cancel.",
    ),
    "serve": LazyCommand(
        "service.cli.serve",
        "Serve the API with gunicorn (GUNICORN_BIND, GUNICORN_WORKERS, ... adjust it).",
    ),
    "staff": LazyCommand("service.cli.staff", "Staff users of the internal site (/staff)."),
    "worker": LazyCommand(
        "service.cli.worker", "Run jobs from the rq queues on LEAKGUARD_REDIS_URL."
    ),
}
cli.lazy.update(COMMANDS)


def main() -> None:
    """Console-script entry point: configuration and connection failures in one line."""
    try:
        # Settings are read when a command builds the app, never for --help or --version:
        # an operator must be able to read the help of a broken installation.
        cli.main(prog_name="leakguard")
    except Exception as exc:
        # Imported here, not at the top: only a command that read settings or used the
        # database can raise these, and it has imported their modules already.
        from sqlalchemy.exc import OperationalError

        from service.config import ConfigError

        if isinstance(exc, ConfigError):
            for line in str(exc).splitlines():  # production names each problem on a line
                click.echo(f"Error: {line}", err=True)
            sys.exit(2)
        if isinstance(exc, OperationalError):
            reason = str(exc.orig or exc).strip().splitlines()[0]
            click.echo(
                f"Error: cannot use the database (LEAKGUARD_DATABASE_URL): {reason}", err=True
            )
            sys.exit(1)
        raise
