"""`leakguard db`: the schema."""

from __future__ import annotations

import click

from service.cli.base import cli, runtime
from service.db.migrate import current_revision, head_revision, upgrade_database


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
