"""`leakguard accounts`: the mirror of the login service's accounts."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from tqdm import tqdm

from jobs.account_import import ImportAborted, ImportFileError, import_accounts
from service.cli.base import cli, emit_json, migrated_runtime


@cli.group("accounts")
def accounts_group() -> None:
    """The mirror of the login service's accounts."""


@accounts_group.command("import")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
def accounts_import(path: Path, as_json: bool) -> None:
    """Create or update accounts from a CSV with external_id and email columns."""
    value = migrated_runtime()
    with tqdm(unit=" rows", unit_scale=True, disable=None, file=sys.stderr, leave=False) as bar:
        try:
            report = import_accounts(value, path, on_progress=bar.update)
        except ImportFileError as exc:
            raise click.ClickException(str(exc)) from None
        except ImportAborted as exc:
            raise click.ClickException(str(exc)) from None
    if as_json:
        emit_json(report.to_json())
    else:
        click.echo(report.summary())
