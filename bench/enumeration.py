"""Benchmark: does the time of a step-up challenge tell a known account from an unknown one?

Issue 11 item 6 (before: a median 46 ms for a known account, 4 ms for an unknown one, the
body the same). The test suite checks the cause (a known and an unknown id run the same
statements before the answer, ``test_stepup_rules.py``); this bench measures the effect
an attacker sees, and prints figures only (tests never fail on timing).

A fresh database (SQLite in a temp dir, or the PostgreSQL database
``leakguard_bench_enumeration_<pid>``, created and dropped) gets N accounts with a deliverable
address and an API key with ``step_up:verify``. The app runs in process (Flask's test
client: what is timed is the app's own work, not a network), with its queue and limits in
the real Redis (a database of its own: ``LEAKGUARD_BENCH_REDIS`` if set, else a free one
claimed as the test runs claim theirs, ``bench/owned.py``; emptied at the end),
the limits set high enough never to answer 429. Then ``POST /v1/step-up/challenges
{"account_id": ..., "method": "email_code"}`` is sent once per id, alternating a known id
and an unknown one (each id asked once, as an attacker probing a list would), after a
warm-up. A known account's code is queued for the worker after the answer is sent; the
answer's time is measured up to its last byte, as a client would see it.

Printed per kind: requests, statuses, median, p90 and p99 in ms; then the ratio of the
medians (the issue's bound: within 20 %, i.e. between 0.8 and 1.25).

    .venv/bin/python bench/enumeration.py [--requests 100] [--backend sqlite|postgres]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from common import backend_database, bench_database_name
from options import at_least, make_parser
from owned import RedisUnavailable, redis_database, run_bench

from service.accounts import AccountInput, upsert_account
from service.app import create_app
from service.clients import Scope, create_api_client
from service.config import Settings
from service.db import utcnow
from service.runtime import build_runtime

LEAKGUARD = Path(sys.executable).parent / "leakguard"
# This one if set, else a free database claimed as the test runs claim theirs (bench/owned.py).
REDIS_URL = os.environ.get("LEAKGUARD_BENCH_REDIS")
PG_DATABASE = bench_database_name("enumeration")
HASH_KEY = "bench-hash-key-0123456789abcdef"
WARMUP = 10  # per kind, not counted


def main() -> None:
    parser = make_parser(__doc__)
    # Two at least: a p90 and p99 need two samples.
    parser.add_argument(
        "--requests", type=at_least(2), default=100, help="per kind (known, unknown)"
    )
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    args = parser.parse_args()
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; backend {args.backend}; "
        f"{args.requests} challenges per kind after {WARMUP} of warm-up"
    )
    with tempfile.TemporaryDirectory(prefix="leakguard-bench-enumeration-") as tmp:
        directory = Path(tmp)
        try:
            with (
                backend_database(args.backend, directory, PG_DATABASE) as url,
                redis_database(REDIS_URL) as redis_url,
            ):
                run(url, redis_url, directory, args.requests)
        except RedisUnavailable as exc:
            sys.exit(f"no Redis database for the queue and limits: {exc}")


def run(url: str, redis_url: str, directory: Path, requests: int) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("LEAKGUARD_")}
    env.update(
        LEAKGUARD_DATABASE_URL=url,
        LEAKGUARD_HASH_KEY=HASH_KEY,
        LEAKGUARD_INSTANCE_DIR=str(directory / "instance"),
    )
    subprocess.run([str(LEAKGUARD), "db", "upgrade"], env=env, check=True, capture_output=True)
    settings = Settings(
        database_url=url,
        redis_url=redis_url,
        hash_key=HASH_KEY,
        instance_dir=directory / "instance",
        log_level="WARNING",
        rate_limit_step_up="100000/second",
        rate_limit_email_code="100000/minute",
        rate_limit_auth_failures="100000/minute",
    )
    runtime = build_runtime(settings)
    total = requests + WARMUP
    known = [f"known_{i:05d}" for i in range(total)]
    unknown = [f"unknown_{i:05d}" for i in range(total)]
    with runtime.db.transaction() as session:
        for external_id in known:
            upsert_account(
                session,
                AccountInput(external_id, f"{external_id}@example.org"),
                keys=runtime.keys,
                now=utcnow(),
            )
        key = create_api_client(
            session, name="bench", scopes=(Scope.STEP_UP_VERIFY,), actor="bench", now=utcnow()
        ).key
    runtime.db.dispose()

    app = create_app(settings)
    client = app.test_client()
    headers = {"Authorization": f"Bearer {key}"}
    times: dict[str, list[float]] = {"known": [], "unknown": []}
    statuses: dict[str, Counter[int]] = {"known": Counter(), "unknown": Counter()}
    for i in range(total):
        for kind, external_id in (("known", known[i]), ("unknown", unknown[i])):
            started = time.perf_counter()
            response = client.post(
                "/v1/step-up/challenges",
                json={"account_id": external_id, "method": "email_code"},
                headers=headers,
            )
            response.get_data()
            elapsed = time.perf_counter() - started
            response.close()  # runs what is handed over after the answer (the code's mail)
            if i >= WARMUP:
                times[kind].append(elapsed * 1000)
                statuses[kind][response.status_code] += 1

    print(f"{'kind':<8} {'requests':>8} {'statuses':<12} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8}")
    for kind, samples in times.items():
        deciles = statistics.quantiles(samples, n=100)
        answered = ",".join(f"{code}x{count}" for code, count in sorted(statuses[kind].items()))
        print(
            f"{kind:<8} {len(samples):>8} {answered:<12} {statistics.median(samples):>8.2f} "
            f"{deciles[89]:>8.2f} {deciles[98]:>8.2f}"
        )
    ratio = statistics.median(times["known"]) / statistics.median(times["unknown"])
    verdict = "within" if 0.8 <= ratio <= 1.25 else "outside"
    print(f"median known / median unknown: {ratio:.2f} ({verdict} the issue's 20 % bound)")


if __name__ == "__main__":
    run_bench(main)
