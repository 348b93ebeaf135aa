"""The ``leakguard`` command: Flask's CLI (run, shell, routes) plus Leakguard's own commands.

Commands parse their input, call one function, and print a summary (or ``--json`` alone on
stdout for machines). Failures are one line on stderr and a non-zero exit, never a trace.
"""

from __future__ import annotations

import getpass
import json
import sys
from pathlib import Path
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import FlaskGroup
from sqlalchemy.exc import OperationalError
from tqdm import tqdm

from jobs.account_import import ImportAborted, ImportFileError, import_accounts
from jobs.sample import generate_sample
from service.api_clients import (
    Scope,
    create_api_client,
    list_api_clients,
    parse_scopes,
    revoke_api_client,
)
from service.app import create_app
from service.config import ConfigError, load_settings
from service.db import utcnow
from service.errors import LeakguardError
from service.migrate import current_revision, head_revision, is_at_head, upgrade_database
from service.runtime import Runtime


def _create_app() -> Flask:
    return create_app()


cli = FlaskGroup(
    create_app=_create_app,
    add_default_commands=True,
    help="Leakguard: protect accounts after a third-party leak of email addresses.",
)


def runtime() -> Runtime:
    value: Runtime = current_app.extensions["leakguard"]
    return value


def migrated_runtime() -> Runtime:
    """The runtime, after making sure the schema is current."""
    value = runtime()
    if not is_at_head(value.db.engine):
        raise click.ClickException(
            "the database schema is not current: run `leakguard db upgrade` first"
        )
    return value


def cli_actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def emit_json(payload: dict[str, Any] | list[Any]) -> None:
    click.echo(json.dumps(payload, default=str))


# --- db -------------------------------------------------------------------------------


@cli.group("db")
def db_group() -> None:
    """Manage the database schema."""


@db_group.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Target revision.")
def db_upgrade(revision: str) -> None:
    """Migrate the database to the latest schema (safe to run twice)."""
    engine = runtime().db.engine
    before = current_revision(engine)
    upgrade_database(engine, revision)
    after = current_revision(engine)
    if before == after:
        click.echo(f"database already at {after}")
    else:
        click.echo(f"database migrated from {before or 'empty'} to {after}")


@db_group.command("current")
def db_current() -> None:
    """Print the database's schema revision and the latest one."""
    click.echo(f"current: {current_revision(runtime().db.engine)}  head: {head_revision()}")


# --- accounts ---------------------------------------------------------------------------


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


# --- api-clients ------------------------------------------------------------------------


@cli.group("api-clients")
def api_clients_group() -> None:
    """Keys for the login service and other callers of /v1."""


@api_clients_group.command("create")
@click.argument("name")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    help=f"Repeatable; one of: {', '.join(s.value for s in Scope)}.",
)
@click.option("--json", "as_json", is_flag=True, help="Print {name, key} as JSON.")
def api_clients_create(name: str, scopes: tuple[str, ...], as_json: bool) -> None:
    """Create an API client and print its key, once: it is stored only as a hash."""
    value = migrated_runtime()
    try:
        with value.db.transaction() as session:
            new = create_api_client(
                session, name=name, scopes=parse_scopes(scopes), actor=cli_actor(), now=utcnow()
            )
    except LeakguardError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        emit_json({"name": new.name, "key": new.key, "scopes": [s.value for s in new.scopes]})
    else:
        click.echo(f"API client {new.name} created with scopes {' '.join(new.scopes)}")
        click.echo(f"key (shown once, store it now): {new.key}")


@api_clients_group.command("list")
@click.option("--json", "as_json", is_flag=True)
def api_clients_list(as_json: bool) -> None:
    """List API clients (never their keys)."""
    with migrated_runtime().db.read_session() as session:
        clients = list_api_clients(session)
    if as_json:
        emit_json(
            [
                {
                    "name": c.name,
                    "scopes": list(c.scopes),
                    "created_at": c.created_at.isoformat(),
                    "revoked_at": c.revoked_at.isoformat() if c.revoked_at else None,
                }
                for c in clients
            ]
        )
        return
    for c in clients:
        state = f"revoked {c.revoked_at:%Y-%m-%d %H:%M}" if c.revoked_at else "active"
        click.echo(f"{c.name}\t{' '.join(c.scopes)}\t{state}")


@api_clients_group.command("revoke")
@click.argument("name")
def api_clients_revoke(name: str) -> None:
    """Revoke a client's key; its requests fail from now on."""
    value = migrated_runtime()
    try:
        with value.db.transaction() as session:
            changed = revoke_api_client(session, name=name, actor=cli_actor(), now=utcnow())
    except LeakguardError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"API client {name} {'revoked' if changed else 'was already revoked'}")


# --- demo -----------------------------------------------------------------------------


@cli.command("demo")
@click.option("--accounts", "account_count", default=3000, show_default=True)
@click.option("--exposed", default=300, show_default=True, help="Accounts in the leaked mail.")
def demo(account_count: int, exposed: int) -> None:
    """Run the whole job on a generated sample, in the embedded default."""
    value = runtime()
    upgrade_database(value.db.engine)
    directory = value.settings.instance_dir / "demo"
    sample = generate_sample(directory, accounts=account_count, exposed=exposed)
    click.echo(f"sample written to {directory}/")
    click.echo(
        f"  {sample.accounts_csv.name}: {sample.accounts} accounts (and 2 broken rows)\n"
        f"  {sample.leak_eml.name}: a mass mail exposing {sample.exposed_accounts} of them "
        "among strangers' addresses"
    )
    report = import_accounts(value, sample.accounts_csv)
    click.echo(f"accounts imported into {value.settings.resolved_database_url}:")
    click.echo("  " + report.summary().replace("\n", "\n  "))
    click.echo(
        "next: `leakguard run` serves the API; its OpenAPI document is /openapi/openapi.json"
    )


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
