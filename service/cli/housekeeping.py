"""`leakguard housekeeping`: expire exposures, purge what is past use (for cron)."""

from __future__ import annotations

from datetime import timedelta

import click

from service.cli.base import cli, emit_json, migrated_runtime
from service.db import utcnow
from service.housekeeping import run_housekeeping


@cli.command("housekeeping")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON on stdout.")
def housekeeping(as_json: bool) -> None:
    """Expire exposures past LEAKGUARD_EXPOSURE_TTL_DAYS; purge expired challenges, trusted
    devices, throttle rows past use and settled security events over 30 days old. Safe to
    run from cron at any frequency."""
    value = migrated_runtime()
    report = run_housekeeping(
        value.db,
        exposure_ttl=timedelta(days=value.settings.exposure_ttl_days),
        throttle=value.step_up.policy.throttle,
        now=utcnow(),
    )
    if as_json:
        emit_json(report.to_json())
    else:
        click.echo(report.summary())
