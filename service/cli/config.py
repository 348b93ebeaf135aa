"""`leakguard config check`: the settings as this process reads them, and what is wrong."""

from __future__ import annotations

import os
import sys

import click
from pydantic import ValidationError

from service.cli.base import cli, emit_json
from service.config import ENV_PREFIX, Environment, Settings, validation_problems
from service.config_check import HIDDEN, effective_settings, hide_url_password, production_problems

_SECRET_VARIABLES = frozenset({f"{ENV_PREFIX}HASH_KEY", f"{ENV_PREFIX}SECRET_KEY"})


@cli.group("config")
def config_group() -> None:
    """Inspect the LEAKGUARD_* settings."""


@config_group.command("check", with_appcontext=False)
@click.option(
    "--production",
    "as_production",
    is_flag=True,
    help="Check as LEAKGUARD_ENV=production would, whatever it is set to.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def config_check(as_production: bool, as_json: bool) -> None:
    """Print the effective settings (keys and passwords hidden) and every problem.

    Exits 1 when there is a problem: an invalid value, or in production (or with
    --production) a setting production refuses, such as SQLite or a localhost sender.
    Connects to nothing.
    """
    advice: list[str] = []  # outside production: what a switch to it would refuse
    try:
        settings = Settings()
    except ValidationError as exc:
        shown = _given_variables()
        problems = validation_problems(exc)
        production = as_production or os.environ.get(f"{ENV_PREFIX}ENV") == "production"
    else:
        shown = effective_settings(settings)
        production = as_production or settings.env is Environment.PRODUCTION
        found = production_problems(settings)
        problems, advice = (found, []) if production else ([], found)
    if as_json:
        emit_json(
            {
                "settings": dict(shown),
                "problems": problems,
                "production_would_refuse": advice,
            }
        )
    else:
        width = max(len(name) for name, _ in shown) if shown else 0
        for name, value in shown:
            click.echo(f"{name.ljust(width)}  {value}")
        for line in problems:
            click.echo(f"Error: {line}", err=True)
        for line in advice:
            click.echo(f"Note (production would refuse): {line}", err=True)
        if not problems:
            mode = "production" if production else "development"
            click.echo(f"no problems found for {mode}", err=True)
    if problems:
        sys.exit(1)


def _given_variables() -> list[tuple[str, str]]:
    """The LEAKGUARD_* variables as set, masked: shown when they do not make valid settings."""
    shown = []
    for name in sorted(os.environ):
        if not name.startswith(ENV_PREFIX):
            continue
        value = os.environ[name]
        if name in _SECRET_VARIABLES:
            value = HIDDEN
        elif name.endswith("_URL"):
            try:
                value = hide_url_password(value)
            except ValueError:
                value = "(not shown: cannot be parsed)"
        shown.append((name, value))
    return shown
