"""The whole job on a generated sample, in the embedded default: what `leakguard demo` runs.

A sample of accounts and a leaked mass mail that exposes some of them among strangers'
addresses; the accounts imported, the mail ingested, the warnings delivered (in process on
the embedded default, to the queue with a real Redis). Safe to run twice: the second run
finds every account unchanged and the mail ingested before.
"""

from __future__ import annotations

from dataclasses import dataclass

from jobs.account_import import ImportReport, import_accounts
from jobs.deliver import relay_notices
from jobs.ingest.pipeline import IngestReport, ingest_leak
from jobs.queues import redis_connection, uses_fake_redis
from jobs.sample import SampleFiles, generate_sample
from jobs.worker import run_worker
from service.db import utcnow
from service.db.migrate import upgrade_database
from service.keying import verify_runtime_key
from service.runtime import Runtime

DEMO_LEAK = "exchange-2019-sample"


@dataclass(frozen=True, slots=True)
class DemoReport:
    sample: SampleFiles
    imported: ImportReport
    ingested: IngestReport
    delivered: int | None  # in process (embedded default); None: relayed to a real queue
    relayed: int
    failed: int = 0  # in process: notices that failed for good (or wait for a retry)

    def summary(self, runtime: Runtime) -> str:
        settings = runtime.settings
        sample = self.sample
        lines = [
            f"sample written to {sample.accounts_csv.parent}/",
            f"  {sample.accounts_csv.name}: {sample.accounts} accounts (and 2 broken rows)",
            f"  {sample.leak_eml.name}: a mass mail exposing {sample.exposed_accounts} of them "
            "among strangers' addresses",
            f"accounts imported into {settings.resolved_database_url}:",
            "  " + self.imported.summary().replace("\n", "\n  "),
            "leak ingested:",
            "  " + self.ingested.summary().replace("\n", "\n  "),
        ]
        if self.delivered is not None:
            where = (
                "the SMTP server"
                if settings.smtp_url
                else f"{settings.resolved_mail_dir}/ (.eml files)"
            )
            lines.append(
                f"warnings delivered: {self.delivered}, one message per person, to {where}"
            )
            if self.failed:
                lines.append(f"warnings not delivered: {self.failed} (see notices status)")
        else:
            lines.append(
                f"warnings relayed to the queue: {self.relayed}; `leakguard worker` delivers them"
            )
        lines.append(
            f"next: `leakguard leaks show {DEMO_LEAK}` and `leakguard notices status --leak "
            f"{DEMO_LEAK}`;\n      `leakguard serve` serves the API "
            "(OpenAPI document at /openapi/openapi.json)"
        )
        return "\n".join(lines)


def run_demo(runtime: Runtime, *, accounts: int, exposed: int) -> DemoReport:
    """Migrate, generate the sample, import, ingest, deliver; return what each step did."""
    upgrade_database(runtime.db.engine)
    verify_runtime_key(runtime, record=True, now=utcnow())
    sample = generate_sample(
        runtime.settings.instance_dir / "demo", accounts=accounts, exposed=exposed
    )
    imported = import_accounts(runtime, sample.accounts_csv)
    ingested = ingest_leak(
        runtime,
        sample.leak_eml,
        slug=DEMO_LEAK,
        name="Exchange newsletter with every recipient visible (sample)",
        source=str(sample.leak_eml),
        operator="leakguard demo",
    )
    if uses_fake_redis(runtime.settings):
        drained = run_worker(runtime, burst=True)
        if drained is None:
            return DemoReport(sample, imported, ingested, 0, 0)
        return DemoReport(
            sample,
            imported,
            ingested,
            drained.sent,
            drained.relayed,
            failed=drained.failed + drained.retrying + drained.unfinished,
        )
    relayed = relay_notices(runtime, redis_connection(runtime.settings))
    return DemoReport(sample, imported, ingested, None, relayed)
