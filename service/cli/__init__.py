"""The ``leakguard`` command: Flask's CLI (run, shell, routes) plus Leakguard's own commands."""

from __future__ import annotations

import sys

import click
from sqlalchemy.exc import OperationalError

from service.cli import (  # noqa: F401  (importing a command module registers it)
    accounts,
    api_clients,
    config,
    database,
    demo,
    email_change,
    events,
    exposures,
    housekeeping,
    leaks,
    notices,
    serve,
    staff,
    worker,
)
from service.cli.base import cli
from service.config import ConfigError

__all__ = ["cli", "main"]


def main() -> None:
    """Console-script entry point: configuration and connection failures in one line."""
    try:
        # Settings are read when a command builds the app, never for --help or --version:
        # an operator must be able to read the help of a broken installation.
        cli.main(prog_name="leakguard")
    except ConfigError as exc:
        for line in str(exc).splitlines():  # production names each problem on a line
            click.echo(f"Error: {line}", err=True)
        sys.exit(2)
    except OperationalError as exc:
        reason = str(exc.orig or exc).strip().splitlines()[0]
        click.echo(f"Error: cannot use the database (LEAKGUARD_DATABASE_URL): {reason}", err=True)
        sys.exit(1)
