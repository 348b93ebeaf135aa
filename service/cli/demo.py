"""`leakguard demo`: the whole job on a generated sample, in the embedded default."""

from __future__ import annotations

import click

from jobs.account_import import import_accounts
from jobs.context import use_runtime
from jobs.deliver import drain_outbox, relay_notices
from jobs.ingest.pipeline import ingest_leak
from jobs.queues import make_worker, redis_connection, uses_fake_redis
from jobs.sample import generate_sample
from service.cli.base import cli, runtime
from service.db.migrate import upgrade_database

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
    settings = value.settings
    connection = redis_connection(settings)
    if uses_fake_redis(settings):
        use_runtime(value)
        delivered = drain_outbox(value, connection, lambda: make_worker(settings, connection))
        where = (
            "the SMTP server"
            if settings.smtp_url
            else f"{settings.resolved_mail_dir}/ (.eml files)"
        )
        click.echo(f"warnings delivered: {delivered}, one message per person, to {where}")
    else:
        relayed = relay_notices(value, connection)
        click.echo(f"warnings relayed to the queue: {relayed}; `leakguard worker` delivers them")
    click.echo(
        f"next: `leakguard leaks show {DEMO_LEAK}` and `leakguard notices status --leak "
        f"{DEMO_LEAK}`;\n      `leakguard run` serves the API "
        "(OpenAPI document at /openapi/openapi.json)"
    )
