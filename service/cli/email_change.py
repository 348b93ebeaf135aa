"""``leakguard email-change``: support's side of the email change (issue 14, part 2, item 7).

Every command prints masked addresses only, and every step is audited with the name given.
"""

from __future__ import annotations

import click

from jobs.deliver import send_now
from jobs.queues import QueueName
from service.cli.base import cli, cli_actor, emit_json, migrated_runtime
from service.db import utcnow
from service.email_change.assisted import approve, deny, request_assisted, review_queue
from service.email_change.context import ChangeTools
from service.email_change.holds import clear_hold


@cli.group("email-change")
def email_change_group() -> None:
    """Support-assisted email changes, their review queue, and the holds of reverts."""


@email_change_group.command("request-assisted")
@click.argument("account_id")
@click.option("--new-email", required=True, help="The address the person can read now.")
@click.option("--ticket", required=True, help="The support ticket this change is for.")
@click.option(
    "--accept-leaked-address", is_flag=True, help="Accept a new address that is in a leak."
)
@click.option(
    "--cancel-open-request",
    is_flag=True,
    help="Cancel the account's open support-assisted request and file this one instead.",
)
def request_assisted_command(
    account_id: str,
    new_email: str,
    ticket: str,
    accept_leaked_address: bool,
    cancel_open_request: bool,
) -> None:
    """File a change for someone who lost the old mailbox; it waits for review."""
    value = migrated_runtime()
    with value.db.transaction() as session:
        view = request_assisted(
            session,
            ChangeTools.of(value),
            account_id,
            new_email,
            ticket=ticket,
            accept_leaked=accept_leaked_address,
            cancel_open=cancel_open_request,
            actor=cli_actor(),
            now=utcnow(),
        )
    click.echo(f"{view.request_id} {view.state}: {view.old_email} -> {view.new_email}")


@email_change_group.command("queue")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list on stdout.")
def queue_command(as_json: bool) -> None:
    """Requests waiting for review: accounts with an open exposure first, then oldest."""
    value = migrated_runtime()
    with value.db.read_session() as session:
        waiting = review_queue(session)
    if as_json:
        emit_json([item.to_json() for item in waiting])
        return
    if not waiting:
        click.echo("no request waits for review")
        return
    for item in waiting:
        flag = "exposed" if item.open_exposure else "-"
        click.echo(
            f"{item.view.request_id}  {item.view.created_at:%Y-%m-%d %H:%M}  {flag:7}  "
            f"{item.external_id}  {item.view.old_email} -> {item.view.new_email}  "
            f"ticket {item.view.ticket}  by {item.requested_by}"
        )


@email_change_group.command("approve")
@click.argument("request_id")
@click.option("--by", "by", required=True, help="Who approves (not who filed it).")
@click.option("--reason", required=True, help="Why, for the audit trail.")
def approve_command(request_id: str, by: str, reason: str) -> None:
    """Approve a waiting request: the confirmation and the alert are sent."""
    value = migrated_runtime()
    with value.db.transaction() as session:
        step = approve(
            session, ChangeTools.of(value), request_id, by=by, reason=reason, now=utcnow()
        )
    queue = QueueName.HIGH if step.view.priority == "high" else QueueName.DEFAULT
    sent = send_now(value, list(step.notice_ids), queue)
    click.echo(
        f"{step.view.request_id} approved: confirmation sent to {step.view.new_email}, "
        f"alert to {step.view.old_email}"
        + ("" if sent else " (queued: the mail goes out with the next relay)")
    )


@email_change_group.command("deny")
@click.argument("request_id")
@click.option("--by", "by", required=True, help="Who denies.")
@click.option("--reason", required=True, help="Why, for the audit trail.")
def deny_command(request_id: str, by: str, reason: str) -> None:
    """Deny a waiting request; nothing is sent."""
    value = migrated_runtime()
    with value.db.transaction() as session:
        view = deny(session, request_id, by=by, reason=reason, now=utcnow())
    click.echo(f"{view.request_id} denied")


@email_change_group.command("clear-hold")
@click.argument("account_id")
@click.option("--by", "by", required=True, help="Who looked at the account.")
@click.option("--reason", required=True, help="Why the hold can end, for the audit trail.")
def clear_hold_command(account_id: str, by: str, reason: str) -> None:
    """After a revert: sign-ins no longer need a step-up for it (the cooling-off stays)."""
    value = migrated_runtime()
    with value.db.transaction() as session:
        cleared = clear_hold(session, account_id, actor=by, reason=reason, now=utcnow())
    if cleared.was_held:
        click.echo(f"{account_id}: hold cleared")
    else:
        click.echo(f"{account_id}: no hold to clear")
