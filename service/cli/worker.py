"""`leakguard worker`: run queued jobs (ingest parts now; notices later)."""

from __future__ import annotations

import os

import click

from jobs.context import use_runtime
from jobs.deliver import RelayThread, RelayUnavailable, drain_outbox, relay_notices
from jobs.queues import ALL_QUEUES, QueueName, make_worker, redis_connection, uses_fake_redis
from service.cli.base import cli, migrated_runtime


@cli.command("worker")
@click.option("--burst", is_flag=True, help="Stop when the queues are empty.")
@click.option(
    "--queue",
    "queues",
    multiple=True,
    type=click.Choice([name.value for name in ALL_QUEUES]),
    help="Repeatable; default: high, default, low, in that priority.",
)
def worker_command(burst: bool, queues: tuple[str, ...]) -> None:
    """Run jobs from the rq queues on LEAKGUARD_REDIS_URL."""
    value = migrated_runtime()
    settings = value.settings
    if uses_fake_redis(settings) and not burst:
        raise click.ClickException(
            "without LEAKGUARD_REDIS_URL the queue lives inside one process: "
            "use --burst, or set LEAKGUARD_REDIS_URL to share a Redis with other processes"
        )
    use_runtime(value)
    names = tuple(QueueName(name) for name in queues) or ALL_QUEUES
    connection = redis_connection(settings)
    if uses_fake_redis(settings):
        # The embedded queue lives in this process: relay the outbox into it, deliver, repeat.
        delivered = drain_outbox(
            value, connection, lambda: make_worker(settings, connection, names)
        )
        click.echo(f"relayed and delivered {delivered} notices in this process", err=True)
        return
    # rq forks a work horse per job. A pooled database connection must not cross the fork:
    # the horse and this process's relay thread would talk over one socket at once, and a
    # horse's commit could be lost (SQLAlchemy: "Using Connection Pools with os.fork()").
    os.register_at_fork(after_in_child=lambda: value.db.engine.dispose(close=False))
    try:
        relay_notices(value, connection)
    except RelayUnavailable as exc:
        raise click.ClickException(str(exc)) from None
    relay = None if burst else RelayThread(value, connection)
    if relay is not None:
        relay.start()
    try:
        make_worker(settings, connection, names).work(burst=burst, with_scheduler=not burst)
    finally:
        if relay is not None:
            relay.stopping.set()
