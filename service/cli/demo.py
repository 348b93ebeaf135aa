"""`leakguard demo`: the whole job on a generated sample, in the embedded default."""

from __future__ import annotations

import click

from jobs.demo import run_demo
from service.cli.base import cli, runtime


@cli.command("demo")
@click.option("--accounts", "account_count", default=3000, show_default=True)
@click.option("--exposed", default=300, show_default=True, help="Accounts in the leaked mail.")
def demo(account_count: int, exposed: int) -> None:
    """Run the whole job on a generated sample, in the embedded default."""
    value = runtime()
    click.echo(run_demo(value, accounts=account_count, exposed=exposed).summary(value))
