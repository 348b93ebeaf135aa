"""`leakguard api-clients`: keys for callers of /v1."""

from __future__ import annotations

import click

from service.cli.base import cli, cli_actor, emit_json, migrated_runtime
from service.clients import (
    Scope,
    create_api_client,
    list_api_clients,
    parse_scopes,
    revoke_api_client,
)
from service.db import utcnow


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
    with value.db.transaction() as session:
        new = create_api_client(
            session, name=name, scopes=parse_scopes(scopes), actor=cli_actor(), now=utcnow()
        )
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
    with value.db.transaction() as session:
        changed = revoke_api_client(session, name=name, actor=cli_actor(), now=utcnow())
    click.echo(f"API client {name} {'revoked' if changed else 'was already revoked'}")
