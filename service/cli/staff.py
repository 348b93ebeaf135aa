"""`leakguard staff`: the people who may use the internal site at /staff."""

from __future__ import annotations

import click

from service.cli.base import cli, cli_actor, emit_json, migrated_runtime
from service.db import utcnow
from service.models import StaffRole
from service.staff.users import (
    create_staff_user,
    disable_staff_user,
    list_staff_users,
    reset_staff_totp,
)


@cli.group("staff")
def staff_group() -> None:
    """Staff users of the internal site (/staff)."""


@staff_group.command("create-user")
@click.argument("email")
@click.option(
    "--role",
    type=click.Choice([r.value for r in StaffRole]),
    required=True,
    help="viewer: reads; agent: also acts on accounts; admin: everything.",
)
def staff_create_user(email: str, role: str) -> None:
    """Create a staff user and print their one-time enrolment link (valid 72 hours)."""
    value = migrated_runtime()
    with value.db.transaction() as session:
        enrolment = create_staff_user(
            session, email=email, role=StaffRole(role), actor=cli_actor(), now=utcnow()
        )
    click.echo(f"staff user {enrolment.email} created with role {enrolment.role.value}")
    click.echo(
        f"one-time enrolment link (until {enrolment.expires_at:%Y-%m-%d %H:%M} UTC; give it "
        f"to them only): {enrolment.link(value.settings.public_url)}"
    )


@staff_group.command("list")
@click.option("--json", "as_json", is_flag=True)
def staff_list(as_json: bool) -> None:
    """List staff users with role and state (never a secret)."""
    with migrated_runtime().db.read_session() as session:
        users = list_staff_users(session)
    rows = [
        {
            "email": u.email,
            "role": u.role.value,
            "state": _state(u.disabled_at is not None, u.enrolled_at is not None),
            "last_login_at": u.last_login_at.isoformat() if u.last_login_at else None,
            "failed_logins": u.failed_logins,
        }
        for u in users
    ]
    if as_json:
        emit_json(rows)
        return
    for row in rows:
        click.echo(
            f"{row['email']}\t{row['role']}\t{row['state']}\t"
            f"last login {row['last_login_at'] or 'never'}\t"
            f"failed logins {row['failed_logins']}"
        )


def _state(disabled: bool, enrolled: bool) -> str:
    if disabled:
        return "disabled"
    return "active" if enrolled else "enrolment pending"


@staff_group.command("disable")
@click.argument("email")
def staff_disable(email: str) -> None:
    """Disable a staff user: their sessions end and they cannot log in."""
    value = migrated_runtime()
    with value.db.transaction() as session:
        changed = disable_staff_user(session, email=email, actor=cli_actor(), now=utcnow())
    click.echo(f"staff user {'disabled' if changed else 'was already disabled'}")


@staff_group.command("reset-totp")
@click.argument("email")
def staff_reset_totp(email: str) -> None:
    """Forget a staff user's authenticator and password, end their sessions, and print a
    new one-time enrolment link through which they set both again."""
    value = migrated_runtime()
    with value.db.transaction() as session:
        enrolment = reset_staff_totp(session, email=email, actor=cli_actor(), now=utcnow())
    click.echo(f"authenticator of {enrolment.email} reset; their sessions ended")
    click.echo(
        f"one-time enrolment link (until {enrolment.expires_at:%Y-%m-%d %H:%M} UTC): "
        f"{enrolment.link(value.settings.public_url)}"
    )
