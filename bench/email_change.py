"""Benchmark: seconds from an email-change request to the SMTP server, high priority vs
normal, while a 20,000-notice campaign is being delivered. Prints figures only.

A fresh database (SQLite in a temp dir, or a PostgreSQL database
``leakguard_bench_email_change_<pid>``, created and dropped) gets N campaign accounts, each with
an open exposure and a pending warning (``bench/deliver.py``'s ``fill``), and as many
accounts with no exposure as there are normal-priority samples. The campaign is relayed to
the real Redis (untimed), one ``leakguard worker`` process starts on all queues, and once
the sink has taken the campaign's first messages this process asks for email changes
through the API (``POST /v1/accounts/{id}/email-change``, in process, with a real
assurance token), alternating: an exposed account (``priority: high``, its mail on the
``high`` queue) and an account with no exposure (``normal``, behind the campaign on
``default``). A sample is the time from just before the request until the sink (aiosmtpd
in a process of its own, on 127.0.0.1) accepted the confirmation message for the new
address. Redis: a database of its own, ``LEAKGUARD_BENCH_REDIS`` if set, else a free one of
1-15 claimed as the test runs claim theirs (``bench/owned.py``); used only if empty, emptied
at the end. Ctrl-C stops the sink and the worker and removes the databases and files.

    .venv/bin/python bench/email_change.py [--notices 20000] [--samples 10]
                                           [--backend sqlite|postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import backend_database, bench_database_name
from deliver import HASH_KEY, LEAKGUARD, fill
from options import at_least, make_parser
from owned import RedisUnavailable, redis_database, run_bench, start
from sqlalchemy import select as sql_select

from jobs.deliver import BATCH_SIZE, relay_notices
from jobs.queues import redis_connection
from service.accounts import AccountInput, upsert_account
from service.app import create_app
from service.clients import Scope, create_api_client
from service.config import Settings
from service.db import utcnow
from service.models import Account
from service.runtime import Runtime, build_runtime

HOST = "127.0.0.1"
# This one if set, else a free database claimed as the test runs claim theirs (bench/owned.py).
REDIS_URL = os.environ.get("LEAKGUARD_BENCH_REDIS")
PG_DATABASE = bench_database_name("email_change")
NEW_DOMAIN = "change.example"  # the new addresses: the sink times these
STARTED_AFTER = 1_000  # campaign messages accepted before the first request (at most half)
COUNT_EVERY = 100  # the sink records the campaign's count every this many messages
CAMPAIGN_START_SECONDS = 600  # the longest wait for the campaign's first messages


# --- the sink process -------------------------------------------------------------------


class Timing:
    """aiosmtpd handler: accept everything; count it, and time messages to NEW_DOMAIN."""

    def __init__(self, record: Path) -> None:
        self.count = 0
        self.record = record.open("a")

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.count += 1
        for rcpt in envelope.rcpt_tos:
            if rcpt.endswith("@" + NEW_DOMAIN):
                self.record.write(json.dumps({"rcpt": rcpt, "at": time.time()}) + "\n")
                self.record.flush()
        if self.count % COUNT_EVERY == 0:
            self.record.write(json.dumps({"count": self.count}) + "\n")
            self.record.flush()
        return "250 2.0.0 OK discarded"


def serve_sink(record: Path) -> None:
    from aiosmtpd.smtp import SMTP  # the sink process only

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    handler = Timing(record)
    server = loop.run_until_complete(
        loop.create_server(
            lambda: SMTP(handler, hostname="sink.bench", decode_data=False, loop=loop), HOST, 0
        )
    )
    print(f"READY {server.sockets[0].getsockname()[1]}", flush=True)
    loop.add_signal_handler(signal.SIGTERM, loop.stop)
    loop.run_forever()
    server.close()


def start_sink(record: Path) -> tuple[subprocess.Popen[str], int]:
    process = start(
        [sys.executable, __file__, "--sink", str(record)], stdout=subprocess.PIPE, text=True
    )
    ready, _, _ = select.select([process.stdout], [], [], 15) if process.stdout else ([], 0, 0)
    line = process.stdout.readline() if ready and process.stdout else ""
    if not line.startswith("READY "):
        process.kill()
        sys.exit(f"the sink did not start: {line!r}")
    return process, int(line.split()[1])


def sink_state(record: Path) -> tuple[int, dict[str, float]]:
    """(campaign messages accepted so far, new address -> acceptance time)."""
    count, accepted = 0, {}
    if record.exists():
        for line in record.read_text().splitlines():
            entry = json.loads(line)
            if "count" in entry:
                count = max(count, entry["count"])
            else:
                accepted[entry["rcpt"]] = entry["at"]
    return count, accepted


# --- the benchmark ------------------------------------------------------------------------


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("--notices", type=at_least(1), default=20_000)
    parser.add_argument("--samples", type=at_least(1), default=10, help="per priority")
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--sink", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sink is not None:
        serve_sink(args.sink)
        return
    if args.samples > args.notices:
        parser.error(
            "--samples must not exceed --notices (the exposed samples are campaign accounts)"
        )
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; campaign of "
        f"{args.notices:,} notices; {args.samples} samples per priority; backend {args.backend}"
    )
    with tempfile.TemporaryDirectory(prefix="leakguard-bench-email-change-") as tmp:
        directory = Path(tmp)
        try:
            with (
                backend_database(args.backend, directory, PG_DATABASE) as url,
                redis_database(REDIS_URL) as redis_url,
            ):
                run(url, redis_url, directory, args.notices, args.samples)
        except RedisUnavailable as exc:
            sys.exit(f"no Redis database for the worker: {exc}")


def run(url: str, redis_url: str, directory: Path, n: int, samples: int) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("LEAKGUARD_")}
    env.update(
        LEAKGUARD_DATABASE_URL=url,
        LEAKGUARD_REDIS_URL=redis_url,
        LEAKGUARD_HASH_KEY=HASH_KEY,
        LEAKGUARD_INSTANCE_DIR=str(directory / "instance"),
        LEAKGUARD_LOG_LEVEL="WARNING",
    )
    subprocess.run([str(LEAKGUARD), "db", "upgrade"], env=env, check=True, capture_output=True)
    record = directory / "sink.jsonl"
    sink, port = start_sink(record)
    env["LEAKGUARD_SMTP_URL"] = f"smtp://{HOST}:{port}?starttls=off"
    try:
        asked, campaign_at_last_request = measure(env, directory, record, n, samples)
    finally:
        sink.terminate()
        sink.wait(timeout=30)
    total, accepted = sink_state(record)
    report(asked, accepted, campaign_at_last_request, total)


def measure(
    env: dict[str, str], directory: Path, record: Path, n: int, samples: int
) -> tuple[dict[str, tuple[str, float]], int]:
    """Fill, relay the campaign, start the worker and ask for the email changes once the
    campaign is under way; (new address -> (priority, asked at), campaign messages accepted
    when the last request was made)."""
    settings = Settings(
        database_url=env["LEAKGUARD_DATABASE_URL"],
        redis_url=env["LEAKGUARD_REDIS_URL"],
        hash_key=HASH_KEY,
        instance_dir=directory / "instance",
        smtp_url=env["LEAKGUARD_SMTP_URL"],
        rate_limit_email_change_address="1000/hour",
    )
    runtime = build_runtime(settings)
    started = time.perf_counter()
    fill(runtime, n)
    calm = [f"calm_{i:04d}" for i in range(samples)]
    for external_id in calm:
        with runtime.db.transaction() as session:
            upsert_account(
                session,
                AccountInput(external_id, f"{external_id}@example.org"),
                keys=runtime.keys,
                now=utcnow(),
            )
    # The exposed accounts whose warnings are last in the campaign: no head start.
    exposed = [f"usr_{i:08d}" for i in range(n - samples, n)]
    with runtime.db.transaction() as session:
        key = create_api_client(
            session, name="bench", scopes=(Scope.EMAIL_CHANGE_WRITE,), actor="bench", now=utcnow()
        ).key
    print(f"filled {n:,} accounts, exposures and warnings in {time.perf_counter() - started:.1f} s")
    connection = redis_connection(settings)
    relayed = relay_notices(runtime, connection)
    print(f"relayed the campaign: {relayed:,} notices to the default queue (untimed)")

    app = create_app(settings)
    client = app.test_client()
    headers = {"Authorization": f"Bearer {key}"}
    started_after = campaign_started_after(n)
    log = (directory / "worker.log").open("w")
    worker = start([str(LEAKGUARD), "worker"], env=env, stdout=log, stderr=subprocess.STDOUT)
    asked: dict[str, tuple[str, float]] = {}  # new address -> (priority, asked at)
    try:
        deadline = time.monotonic() + CAMPAIGN_START_SECONDS
        while sink_state(record)[0] < started_after:
            if worker.poll() is not None:
                sys.exit(f"the worker exited: {(directory / 'worker.log').read_text()[-2000:]}")
            if time.monotonic() > deadline:
                sys.exit(f"the campaign's first {started_after:,} messages did not arrive in time")
            time.sleep(0.05)
        pairs = [(e, "high") for e in exposed] + [(c, "normal") for c in calm]
        order = [pair for two in zip(pairs[:samples], pairs[samples:], strict=True) for pair in two]
        for external_id, expected in order:
            new = f"{external_id}@{NEW_DOMAIN}"
            token = assurance(runtime, external_id)
            at = time.time()
            response = client.post(
                f"/v1/accounts/{external_id}/email-change",
                json={"new_email": new, "assurance_token": token},
                headers=headers,
            )
            response.close()  # the messages are handed to the queue once the answer is sent
            body = response.get_json()
            if response.status_code != 202 or body["priority"] != expected:
                sys.exit(f"unexpected answer for {external_id}: {response.status_code} {body}")
            asked[new] = (expected, at)
            time.sleep(0.2)
        campaign_at_last_request = sink_state(record)[0]
        deadline = time.monotonic() + 600
        while len(sink_state(record)[1]) < len(asked) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
        log.close()
        runtime.db.dispose()
    return asked, campaign_at_last_request


def campaign_started_after(notices: int) -> int:
    """The campaign messages the sink must have accepted before the first request:
    STARTED_AFTER, or for a smaller campaign half of it, in the sink's steps of COUNT_EVERY
    (0: at once). More than the campaign holds would never come: the bench would wait
    forever (it did for fewer than 1,000 notices)."""
    return min(STARTED_AFTER, notices // 2 // COUNT_EVERY * COUNT_EVERY)


def assurance(runtime: Runtime, external_id: str) -> str:
    """What POST /v1/step-up/verify returns after a passed step-up (epoch 0: untouched)."""

    with runtime.db.read_session() as session:
        account = session.execute(
            sql_select(Account.id, Account.security_epoch).where(Account.external_id == external_id)
        ).one()
    return runtime.step_up.signer.issue(
        external_id=external_id,
        account_id=account.id,
        method="totp",
        epoch=account.security_epoch,
        now=utcnow(),
    )


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))]


def report(
    asked: dict[str, tuple[str, float]], accepted: dict[str, float], campaign_then: int, total: int
) -> None:
    by_priority: dict[str, list[float]] = {"high": [], "normal": []}
    missing = 0
    for address, (priority, at) in asked.items():
        if address in accepted:
            by_priority[priority].append(accepted[address] - at)
        else:
            missing += 1
    print(
        f"\ncampaign messages accepted by the sink: {campaign_then:,} when the last request "
        f"was made, {total:,} in all"
    )
    print(f"\n{'priority':>8} {'samples':>8} {'median s':>9} {'p95 s':>7} {'max s':>7}")
    medians = {}
    for priority, seconds in by_priority.items():
        if not seconds:
            print(f"{priority:>8} {0:>8}")
            continue
        medians[priority] = statistics.median(seconds)
        print(
            f"{priority:>8} {len(seconds):>8} {medians[priority]:>9.2f} "
            f"{percentile(seconds, 0.95):>7.2f} {max(seconds):>7.2f}"
        )
    if missing:
        print(f"{missing} confirmations never reached the sink within 10 minutes")
    if "high" in medians and "normal" in medians and medians["high"] > 0:
        print(f"\nnormal / high median: {medians['normal'] / medians['high']:.1f}x")
    print(
        "\nA sample: from just before POST /v1/accounts/{id}/email-change until the sink "
        "accepted the confirmation for the new address. One `leakguard worker` on all queues "
        f"(high first); the campaign's warnings are up to {BATCH_SIZE:,} to a job on `default`, "
        "so a high message waits at most for the job in hand; a normal one waits for the "
        "campaign."
    )


if __name__ == "__main__":
    run_bench(main)
