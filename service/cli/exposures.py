"""`leakguard exposures`: support's view of an account's exposures, and its two verdicts."""

from __future__ import annotations

import click

from service.cli.base import cli, cli_actor, emit_json, migrated_runtime
from service.db import utcnow
from service.leaks.lifecycle import ExposureView, end_exposure, list_exposures


@cli.group("exposures")
def exposures_group() -> None:
    """An account's exposures: list them, resolve or dismiss one (support)."""


@exposures_group.command("list")
@click.argument("account_id")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list on stdout.")
def exposures_list(account_id: str, as_json: bool) -> None:
    """List every exposure of the account ACCOUNT_ID (its external id), oldest first."""
    value = migrated_runtime()
    with value.db.read_session() as session:
        views = list_exposures(session, account_id)
    if as_json:
        emit_json([view.to_json() for view in views])
        return
    if not views:
        click.echo("no exposures")
    for view in views:
        click.echo(_line(view))


def _line(view: ExposureView) -> str:
    text = f"{view.leak}\t{view.kind.value}\t{view.state.value}\tsince {view.since:%Y-%m-%d}"
    if view.ended_at is not None:
        cause = view.end_cause.value if view.end_cause else "-"
        text += f"\tended {view.ended_at:%Y-%m-%d} ({cause}) by {view.ended_by or '-'}"
        if view.reason:
            text += f": {view.reason}"
    return text


def _end(action: str, account_id: str, leak: str, reason: str) -> None:
    value = migrated_runtime()
    with value.db.transaction() as session:
        view = end_exposure(
            session,
            account_id,
            leak,
            action=action,
            reason=reason,
            actor=cli_actor(),
            now=utcnow(),
        )
    click.echo(f"exposure of account {account_id} to leak {leak} {view.state.value}")


@exposures_group.command("resolve")
@click.argument("account_id")
@click.option("--leak", required=True, help="The leak's slug.")
@click.option("--reason", required=True, help="Why (kept in the audit log, addresses masked).")
def exposures_resolve(account_id: str, leak: str, reason: str) -> None:
    """End the account's open exposure to --leak as resolved (support helped the person)."""
    _end("resolve", account_id, leak, reason)


@exposures_group.command("dismiss")
@click.argument("account_id")
@click.option("--leak", required=True, help="The leak's slug.")
@click.option("--reason", required=True, help="Why (kept in the audit log, addresses masked).")
def exposures_dismiss(account_id: str, leak: str, reason: str) -> None:
    """End the account's open exposure to --leak as dismissed: a false match. Its warning,
    if not sent yet, is cancelled."""
    _end("dismiss", account_id, leak, reason)
