"""`leakguard accounts`: the mirror of the login service's accounts."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from tqdm import tqdm

from jobs.account_import import import_accounts
from service.cli.base import cli, cli_actor, emit_json, migrated_runtime
from service.db import utcnow


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
        report = import_accounts(value, path, on_progress=bar.update)
    if as_json:
        emit_json(report.to_json())
    else:
        click.echo(report.summary())


@accounts_group.command("unlock")
@click.argument("external_id")
def accounts_unlock(external_id: str) -> None:
    """End an account's step-up lock and forget its failed verifications (support)."""
    value = migrated_runtime()
    with value.db.transaction() as session:
        was_locked = value.step_up.unlock(session, external_id, actor=cli_actor(), now=utcnow())
    click.echo("unlocked" if was_locked else "not locked; its failure count is reset")
