"""`leakguard demo`: the whole job on a generated sample, in the embedded default."""

from __future__ import annotations

import click

from jobs.account_import import import_accounts
from jobs.ingest import ingest_leak
from jobs.sample import generate_sample
from service.cli.base import cli, runtime
from service.migrate import upgrade_database

DEMO_LEAK = "exchange-2019-sample"


@cli.command("demo")
@click.option("--accounts", "account_count", default=3000, show_default=True)
@click.option("--exposed", default=300, show_default=True, help="Accounts in the leaked mail.")
def demo(account_count: int, exposed: int) -> None:
    """Run the whole job on a generated sample, in the embedded default."""
    value = runtime()
    upgrade_database(value.db.engine)
    directory = value.settings.instance_dir / "demo"
    sample = generate_sample(directory, accounts=account_count, exposed=exposed)
    click.echo(f"sample written to {directory}/")
    click.echo(
        f"  {sample.accounts_csv.name}: {sample.accounts} accounts (and 2 broken rows)\n"
        f"  {sample.leak_eml.name}: a mass mail exposing {sample.exposed_accounts} of them "
        "among strangers' addresses"
    )
    imported = import_accounts(value, sample.accounts_csv)
    click.echo(f"accounts imported into {value.settings.resolved_database_url}:")
    click.echo("  " + imported.summary().replace("\n", "\n  "))
    ingested = ingest_leak(
        value,
        sample.leak_eml,
        slug=DEMO_LEAK,
        name="Exchange newsletter with every recipient visible (sample)",
        source=str(sample.leak_eml),
    )
    click.echo("leak ingested:")
    click.echo("  " + ingested.summary().replace("\n", "\n  "))
    click.echo(
        "the warnings wait in the outbox (table notice) for delivery.\n"
        f"next: `leakguard leaks show {DEMO_LEAK}` for the details; `leakguard run` serves the\n"
        "      API, whose OpenAPI document is /openapi/openapi.json"
    )
