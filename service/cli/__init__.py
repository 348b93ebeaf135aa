"""The ``leakguard`` command: Flask's CLI (run, shell, routes) plus Leakguard's own commands."""

from __future__ import annotations

import sys

import click
from sqlalchemy.exc import OperationalError

from service.cli import (  # noqa: F401  (importing a command module registers it)
    accounts,
    api_clients,
    database,
    demo,
    events,
    exposures,
    housekeeping,
    leaks,
    notices,
    worker,
)
from service.cli.base import cli
from service.config import ConfigError, load_settings

__all__ = ["cli", "main"]


def main() -> None:
    """Console-script entry point: configuration and connection failures in one line."""
    try:
        # Check the settings first: Flask lists commands (--help) by loading the app and
        # prints any error there as a stack trace.
        load_settings()
        cli.main(prog_name="leakguard")
    except ConfigError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
    except OperationalError as exc:
        reason = str(exc.orig or exc).strip().splitlines()[0]
        click.echo(f"Error: cannot use the database (LEAKGUARD_DATABASE_URL): {reason}", err=True)
        sys.exit(1)
