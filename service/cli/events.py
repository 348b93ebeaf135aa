"""`leakguard events`: the security events to the login service, as an operator checks them."""

from __future__ import annotations

import click

from service.cli.base import cli, emit_json, migrated_runtime
from service.events.keys import generate_jwk
from service.events.outbox import dropped_events, event_counts
from service.models import EventState


@cli.group("events")
def events_group() -> None:
    """Security events (SETs) to the login service: status, dropped, keygen."""


@events_group.command("status")
@click.option("--json", "as_json", is_flag=True)
def events_status(as_json: bool) -> None:
    """Count the events of each receiver (push, poll) by state."""
    value = migrated_runtime()
    with value.db.read_session() as session:
        counts = event_counts(session)
    if as_json:
        emit_json(counts)
        return
    if not value.settings.events_enabled:
        click.echo("security events are off (set LEAKGUARD_EVENTS_PUSH_URL or _POLL)")
    for receiver in ("push", "poll"):
        by_state = counts.get(receiver, {})
        shown = ", ".join(f"{by_state.get(state.value, 0)} {state.value}" for state in EventState)
        click.echo(f"{receiver}: {shown}")


@events_group.command("dropped")
@click.option("--json", "as_json", is_flag=True)
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
def events_dropped(as_json: bool, limit: int) -> None:
    """List the latest events a receiver refused for good, with its error code."""
    with migrated_runtime().db.read_session() as session:
        dropped = dropped_events(session, limit=limit)
    if as_json:
        emit_json([event.to_json() for event in dropped])
        return
    if not dropped:
        click.echo("no event was dropped")
    for event in dropped:
        kind = event.event_type.rsplit("/", 1)[-1]
        click.echo(
            f"{event.at:%Y-%m-%d %H:%M} {event.receiver} {event.account} {kind}: {event.reason}"
        )


@events_group.command("keygen")
def events_keygen() -> None:
    """Print a new private P-256 JWK for LEAKGUARD_EVENTS_SIGNING_KEY (to rotate: move the
    current one to LEAKGUARD_EVENTS_PREVIOUS_KEY)."""
    click.echo(generate_jwk())
