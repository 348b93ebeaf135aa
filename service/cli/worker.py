"""`leakguard worker`: deliver notices and run ingest parts from the rq queues."""

from __future__ import annotations

import click

from jobs.queues import ALL_QUEUES, QueueName
from jobs.worker import run_worker
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
    # A worker writes keys (ingest parts, email changes): it may be the first to record.
    value = migrated_runtime(record_key=True)
    report = run_worker(value, tuple(QueueName(name) for name in queues), burst=burst)
    if report is not None:
        click.echo(report.summary(), err=True)
