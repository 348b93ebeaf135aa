"""`leakguard accounts`: the mirror of the login service's accounts."""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path

import click
from tqdm import tqdm

from jobs.account_import import ImportInterrupted, import_accounts
from service.cli.base import cli, cli_actor, emit_json, migrated_runtime
from service.cli.stopping import INTERRUPTED_EXIT, stop_on_signals
from service.db import utcnow
from service.stepup import hold, support


@cli.group("accounts")
def accounts_group() -> None:
    """The mirror of the login service's accounts."""


@accounts_group.command("import")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
def accounts_import(path: Path, as_json: bool) -> None:
    """Create or update accounts from a CSV with external_id and email columns.

    Safe to run again: imported rows come out unchanged. Ctrl-C (or SIGTERM) stops after
    the chunk being committed and says up to which line the rows are imported.
    """
    value = migrated_runtime(record_key=True)
    try:
        with (
            tqdm(unit=" rows", unit_scale=True, disable=None, file=sys.stderr, leave=False) as bar,
            stop_on_signals() as stop,
        ):
            report = import_accounts(value, path, on_progress=bar.update, stop=stop)
    except ImportInterrupted as exc:
        click.echo(str(exc), err=True)
        raise click.exceptions.Exit(INTERRUPTED_EXIT) from None
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


def _support_change(
    external_id: str, act: str, reason: str | None, *, expires_in: timedelta | None = None
) -> None:
    """Run one of support's step-up overrides (service/stepup/support.py), audited as the
    operator; print what changed."""
    value = migrated_runtime()
    with value.db.transaction() as session:
        actor, now = cli_actor(), utcnow()
        if act == "lock":
            change = support.lock_step_up(
                session, value.step_up, external_id, actor=actor, now=now, reason=reason
            )
            click.echo(
                "step-up blocked until `accounts unlock`" if change.changed else "already blocked"
            )
        elif act == "reset-totp":
            change = support.reset_totp(session, external_id, actor=actor, now=now, reason=reason)
            click.echo("authenticator removed" if change.changed else "no authenticator to remove")
        elif act == "revoke-devices":
            change = support.revoke_trusted_devices(
                session, external_id, actor=actor, now=now, reason=reason
            )
            click.echo(f"{change.devices_revoked} trusted devices revoked")
        elif act == "clear-hold":
            change = support.clear_support_hold(
                session, external_id, actor=actor, now=now, reason=reason or ""
            )
            click.echo("hold cleared" if change.changed else "no hold to clear")
        else:
            change = support.force_step_up(
                session, external_id, actor=actor, now=now, reason=reason, expires_in=expires_in
            )
            until = (
                f"until {change.hold_until:%Y-%m-%d %H:%M} UTC at most"
                if change.hold_until
                else "until cleared"
            )
            click.echo(
                f"held: every sign-in steps up until a step-up is passed ({until}); "
                f"{change.devices_revoked} trusted devices revoked; earlier assurance tokens void"
            )


REASON = click.option("--reason", help="Why, for the audit log (a ticket).")


@accounts_group.command("lock")
@click.argument("external_id")
@click.option("--reason", required=True, help="Why, for the audit log (a ticket).")
def accounts_lock(external_id: str, reason: str) -> None:
    """Block every step-up method of the account until `accounts unlock` (support): a
    sign-in the risk check asks a step-up for is denied."""
    _support_change(external_id, "lock", reason)


@accounts_group.command("reset-totp")
@click.argument("external_id")
@click.option("--reason", required=True, help="Why, for the audit log (a ticket).")
def accounts_reset_totp(external_id: str, reason: str) -> None:
    """Remove the account's authenticator for a person who lost it (support vouches)."""
    _support_change(external_id, "reset-totp", reason)


@accounts_group.command("revoke-devices")
@click.argument("external_id")
@REASON
def accounts_revoke_devices(external_id: str, reason: str | None) -> None:
    """End every trusted device of the account."""
    _support_change(external_id, "revoke-devices", reason)


@accounts_group.command("force-step-up")
@click.argument("external_id")
@REASON
@click.option(
    "--hours",
    type=click.IntRange(min=1, max=hold.MAX_HOLD.days * 24),
    help="End the hold after this many hours even if no step-up is passed (default: never).",
)
def accounts_force_step_up(external_id: str, reason: str | None, hours: int | None) -> None:
    """Hold the account: every sign-in steps up (reason support_hold), whether a leak names
    it or not, until the person passes a step-up or `accounts clear-hold`; its trusted
    devices and earlier assurance tokens stop counting."""
    expires_in = timedelta(hours=hours) if hours is not None else None
    _support_change(external_id, "force-step-up", reason, expires_in=expires_in)


@accounts_group.command("clear-hold")
@click.argument("external_id")
@click.option("--reason", required=True, help="Why the hold can end, for the audit log.")
def accounts_clear_hold(external_id: str, reason: str) -> None:
    """End the hold `accounts force-step-up` placed: sign-ins step up again only where a
    leak (or another hold) asks for it."""
    _support_change(external_id, "clear-hold", reason)
