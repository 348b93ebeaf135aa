"""Benchmark ``POST /v1/risk/check`` under gunicorn beside a bare baseline; prints figures only.

Loads a fresh PostgreSQL database with 1,000,000 accounts (COPY; ``email_key`` is the
deployment's keyed hash of each address through ``AddressKeys``), one leak and 100,000 open
email exposures of random accounts, and creates an API key with the scope ``risk:check``.
Then it starts two servers on loopback, each under ``deploy/gunicorn.conf.py`` with the same
workers and threads (access log off):

* ``leakguard``: the real app, ``service.app:create_app()`` in production mode, its rate
  limits counted in Redis as in production, set high enough never to trigger;
* ``baseline``: a minimal Flask app (``create_baseline_app`` below) that parses the JSON
  body, runs the same indexed read (account by external id, LEFT JOIN its open exposures)
  with SQLAlchemy Core and answers JSON: no authentication, validation, limiter or audit.

wrk (a second process, one thread) POSTs ``{"account_id": ...}`` with random ids: the
``allow`` path picks accounts without an exposure, the ``step_up`` path accounts with one;
the baseline gets the same ids. Per (path, connections) both servers run back to back, each
after a warm-up, and a sample of answers is checked (status 200 and the expected
decision). Printed: req/s, p50/p95/p99 latency, non-2xx and socket errors, the ratios to the
baseline (throughput, p99), and the peak RSS (VmHWM) of each server's workers.

    .venv/bin/python bench/risk.py [--accounts 1000000] [--exposures 100000]
        [--connections 16,64] [--paths allow,step_up] [--duration 15] [--warmup 3]
        [--workers 2] [--threads 4] [--keep]

PostgreSQL: a database ``leakguard_bench_risk_<pid>`` on postgres@127.0.0.1
(``LEAKGUARD_BENCH_PG``) is created, and dropped at the end unless ``--keep``. Redis: a
database of its own, ``LEAKGUARD_BENCH_REDIS`` if set, else a free one of 1-15 claimed as the
test runs claim theirs (``bench/owned.py``), emptied at the end. The servers listen on ports
the kernel gives out, so two runs at once do not collide; Ctrl-C stops them and wrk, and
cleans up as above.
Targets (issue 5): allow path at least 80 % of the baseline's req/s, p99 at most 1.5x its p99.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from common import bench_database_name, create_pg_database, drop_pg_database, pg_url
from options import at_least, counts_of, make_parser, names_of
from owned import RedisUnavailable, free_port, redis_database, run_bench, start

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
GUNICORN = BIN / "gunicorn"
WRK = shutil.which("wrk") or "wrk"
HASH_KEY = "bench-hash-key-0123456789abcdef"
SECRET_KEY = "bench-secret-key-0123456789abcdef"  # noqa: S105  (a throw-away bench key)
# Production refuses the defaults (a localhost sender, "your account with us").
BENCH_SERVICE_NAME = "Bench Shop"
BENCH_MAIL_FROM = "Bench Shop Security <security@bench-shop.de>"
BENCH_PUBLIC_URL = "https://leakguard.bench-shop.de"
PG_DATABASE = bench_database_name("risk")
# This one if set, else a free database claimed as the test runs claim theirs (bench/owned.py).
REDIS_URL = os.environ.get("LEAKGUARD_BENCH_REDIS")
HOST = "127.0.0.1"
SERVERS = ("leakguard", "baseline")
LEAK_SLUG = "bench-mass-mail"
IDS_PER_PATH = 20_000  # random ids handed to wrk per path
SAMPLE_CHECKS = 40  # answers checked per (server, path) before each measurement
TARGET_THROUGHPUT = 0.80
TARGET_P99 = 1.5
DOMAINS = ("gmail.com", "yahoo.com", "outlook.com", "web.de", "gmx.de", "proton.me", "icloud.com")
EXPECTED = {"allow": "allow", "step_up": "step_up"}

WRK_SCRIPT = """
local ids = {%(ids)s}
local headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer %(key)s"}
local n = #ids
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("seed", counter)
end
function init(args)
  math.randomseed(os.time() * 1000 + (seed or 0))
end
function request()
  local id = ids[math.random(n)]
  return wrk.format("POST", "/v1/risk/check", headers, '{"account_id":"' .. id .. '"}')
end
function done(summary, latency, requests)
  io.write(string.format(
    'WRKJSON {"requests":%%d,"duration_us":%%d,"status":%%d,"connect":%%d,"read":%%d,' ..
    '"write":%%d,"timeout":%%d,"p50":%%d,"p95":%%d,"p99":%%d,"max":%%d}\\n',
    summary.requests, summary.duration, summary.errors.status, summary.errors.connect,
    summary.errors.read, summary.errors.write, summary.errors.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max))
end
"""


@dataclass(frozen=True, slots=True)
class Load:
    """One wrk run's figures; latencies in milliseconds."""

    rate: float
    requests: int
    non_2xx: int
    socket_errors: int
    p50: float
    p95: float
    p99: float
    peak: float


@dataclass(slots=True)
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("--accounts", type=at_least(2), default=1_000_000)
    parser.add_argument("--exposures", type=at_least(1), default=100_000)
    parser.add_argument("--connections", type=counts_of(1), default="16,64")
    parser.add_argument("--paths", type=names_of(EXPECTED), default="allow,step_up")
    parser.add_argument("--duration", type=at_least(1), default=15, help="seconds measured per run")
    parser.add_argument(
        "--warmup", type=at_least(0), default=3, help="seconds of warm-up per run (0: none)"
    )
    parser.add_argument(
        "--workers", type=at_least(1), default=2, help="gunicorn workers per server"
    )
    parser.add_argument(
        "--threads", type=at_least(1), default=4, help="gunicorn threads per worker"
    )
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument(
        "--profile",
        type=at_least(0),
        default=0,
        metavar="N",
        help="also profile N allow-path requests in-process (cProfile, Flask test client)",
    )
    parser.add_argument("--profile-only", action="store_true", help="load, profile, stop")
    parser.add_argument("--seed", type=int, default=2019)
    args = parser.parse_args()
    connections: list[int] = args.connections
    paths: list[str] = args.paths
    if not 0 < args.exposures < args.accounts:
        parser.error("--exposures must be between 0 and --accounts")
    if shutil.which(WRK) is None and not args.profile_only:
        sys.exit("wrk is needed (apt-get install wrk)")

    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average "
        + " ".join(f"{x:.2f}" for x in os.getloadavg())
        + f", {time.strftime('%Y-%m-%d %H:%M:%S')}"
    )
    print(
        f"gunicorn: deploy/gunicorn.conf.py, {args.workers} workers x {args.threads} threads "
        "(gthread), access log off; wrk: 1 thread; "
        f"{args.warmup} s warm-up + {args.duration} s measured per run"
    )
    # The servers (in the stack) stop before their folder is removed.
    with tempfile.TemporaryDirectory(prefix="leakguard-bench-risk-") as tmp, ExitStack() as stack:
        directory = Path(tmp)
        # Its drop is registered first: a Ctrl-C while it is created still drops it.
        if not args.keep:
            stack.callback(drop_pg_database, PG_DATABASE)
        else:
            stack.callback(print, f"kept the database {PG_DATABASE} (--keep)")
        url = create_pg_database(PG_DATABASE)
        try:
            redis_url = stack.enter_context(redis_database(REDIS_URL))
        except RedisUnavailable as exc:
            sys.exit(f"no Redis database for the rate limits: {exc}")
        rng = random.Random(args.seed)
        started = time.perf_counter()
        exposed = load_data(url, args.accounts, args.exposures, rng)
        key = create_key(url)
        print(
            f"loaded {args.accounts:,} accounts, 1 leak, {args.exposures:,} open email exposures "
            f"into {PG_DATABASE} in {time.perf_counter() - started:.1f} s"
        )
        ids = pick_ids(args.accounts, exposed, rng)
        if args.profile or args.profile_only:
            profile_allow(url, redis_url, key, ids["allow"], directory, args.profile or 3000)
            if args.profile_only:
                return
        scripts = {path: write_script(directory, path, ids[path], key) for path in paths}
        servers = {
            name: stack.enter_context(run_server(name, directory, url, redis_url, args))
            for name in SERVERS
        }
        results: dict[tuple[str, str, int], Load] = {}
        header = (
            f"\n{'server':<10} {'path':<8} {'conns':>5} {'req/s':>8} {'p50 ms':>7} "
            f"{'p95 ms':>7} {'p99 ms':>7} {'max ms':>7} {'non-2xx':>8} {'sock err':>8}"
        )
        print(header)
        print("-" * (len(header) - 1))
        for path in paths:
            for conns in connections:
                for name, server in servers.items():
                    check_answers(server, path, ids[path], key, rng)
                    if args.warmup:
                        wrk(server, scripts[path], conns, args.warmup)
                    load = wrk(server, scripts[path], conns, args.duration)
                    results[(name, path, conns)] = load
                    print_load(name, path, conns, load)
        print_rss(servers)
        print_ratios(results, paths, connections)
        print(
            "\nload average after: " + " ".join(f"{x:.2f}" for x in os.getloadavg()) + "; "
            "the machine is shared: read the ratios, measured back to back, before the absolutes."
        )


# --- data ------------------------------------------------------------------------------------


def load_data(
    url: str, accounts: int, exposures: int, rng: random.Random, database: str = PG_DATABASE
) -> list[int]:
    """Migrate, then COPY the accounts and insert the exposures; return the exposed numbers.

    ``url`` is the SQLAlchemy URL of ``database`` (an empty database on the bench's server).
    """
    from sqlalchemy import create_engine

    from service.addresses import AddressKeys, CanonicalRules, EmailHasher
    from service.db.migrate import upgrade_database

    engine = create_engine(url)
    try:
        upgrade_database(engine)
    finally:
        engine.dispose()
    keys = AddressKeys(hasher=EmailHasher(HASH_KEY.encode()), rules=CanonicalRules())
    with psycopg.connect(pg_url(database)) as pg:
        with pg.cursor() as cursor:
            copy_sql = (
                "COPY account (external_id, email, email_key, locale, created_at, updated_at, "
                "security_epoch) FROM STDIN"
            )
            with cursor.copy(copy_sql) as copy:
                for n in range(1, accounts + 1):
                    email = f"user.{n}.{rng.randrange(10_000)}@{rng.choice(DOMAINS)}"
                    copy.write_row((external_id(n), email, keys.key(email), "en", "now", "now", 0))
            leak_id = cursor.execute(
                "INSERT INTO leak (slug, name, created_at, updated_at, lines, valid, invalid, "
                "duplicates, matched, notices) VALUES (%s, %s, now(), now(), 0, 0, 0, 0, %s, 0) "
                "RETURNING id",
                (LEAK_SLUG, "Bench mass mail", exposures),
            ).fetchone()
            if leak_id is None:
                raise RuntimeError("the leak row was not inserted")
            exposed = sorted(rng.sample(range(1, accounts + 1), exposures))
            cursor.execute(
                "INSERT INTO exposure (account_id, leak_id, kind, state, created_at) "
                "SELECT account.id, %s, 'email', 'open', now() FROM account "
                "JOIN unnest(%s::text[]) AS picked(external_id) USING (external_id)",
                (leak_id[0], [external_id(n) for n in exposed]),
            )
        pg.commit()
    with psycopg.connect(pg_url(database), autocommit=True) as pg:
        pg.execute("VACUUM ANALYZE")
    return exposed


def external_id(n: int) -> str:
    return f"acct-{n:07d}"


def create_key(url: str) -> str:
    from service.clients import Scope, create_api_client
    from service.db import Database, utcnow

    database = Database(url)
    try:
        with database.transaction() as session:
            client = create_api_client(
                session, name="bench-risk", scopes=(Scope.RISK_CHECK,), actor="bench", now=utcnow()
            )
    finally:
        database.dispose()
    return client.key


def pick_ids(accounts: int, exposed: list[int], rng: random.Random) -> dict[str, list[str]]:
    """Random external ids per path: accounts without an exposure, and accounts with one."""
    flagged = set(exposed)
    clean: list[str] = []
    while len(clean) < IDS_PER_PATH:
        n = rng.randrange(1, accounts + 1)
        if n not in flagged:
            clean.append(external_id(n))
    chosen = rng.sample(exposed, min(IDS_PER_PATH, len(exposed)))
    return {"allow": clean, "step_up": [external_id(n) for n in chosen]}


def write_script(directory: Path, path: str, ids: list[str], key: str) -> Path:
    script = directory / f"{path}.lua"
    text = WRK_SCRIPT % {"ids": ",".join(f'"{i}"' for i in ids), "key": key}
    script.write_text(text, encoding="utf-8")
    return script


# --- servers ---------------------------------------------------------------------------------


@contextmanager
def run_server(
    name: str, directory: Path, url: str, redis_url: str, args: argparse.Namespace
) -> Iterator[Server]:
    """Start gunicorn for ``name`` on a free port; stop it (and every worker) however the
    block ends."""
    port = free_port(HOST)
    env = {key: value for key, value in os.environ.items() if not key.startswith("LEAKGUARD_")}
    env.update(
        GUNICORN_BIND=f"{HOST}:{port}",
        GUNICORN_WORKERS=str(args.workers),
        GUNICORN_THREADS=str(args.threads),
        GUNICORN_ACCESSLOG="",
        LEAKGUARD_DATABASE_URL=url,
        LEAKGUARD_INSTANCE_DIR=str(directory / "instance"),
    )
    command = [str(GUNICORN), "-c", str(ROOT / "deploy" / "gunicorn.conf.py")]
    if name == "leakguard":
        env.update(
            LEAKGUARD_ENV="production",
            LEAKGUARD_HASH_KEY=HASH_KEY,
            LEAKGUARD_SECRET_KEY=SECRET_KEY,
            LEAKGUARD_REDIS_URL=redis_url,
            LEAKGUARD_RATE_LIMIT_RISK="1000000/second",
            LEAKGUARD_SERVICE_NAME=BENCH_SERVICE_NAME,
            LEAKGUARD_MAIL_FROM=BENCH_MAIL_FROM,
            LEAKGUARD_PUBLIC_URL=BENCH_PUBLIC_URL,
            # never used: the risk check sends no mail; production wants a relay named
            LEAKGUARD_SMTP_URL="smtp://127.0.0.1:25",
        )
        command.append("service.app:create_app()")
    else:
        command += ["--pythonpath", str(ROOT / "bench"), "risk:create_baseline_app()"]
    log = directory / f"{name}.log"
    with log.open("wb") as handle:
        # In a session of its own: Ctrl-C reaches us only; we stop the group ourselves.
        process = start(
            command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    server = Server(name, port, process, log)
    try:
        wait_ready(server)
        yield server
    finally:
        stop_server(server)


def wait_ready(server: Server, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            break
        try:
            connection = http.client.HTTPConnection(HOST, server.port, timeout=2)
            connection.request("GET", "/healthz")
            if connection.getresponse().status == 200:
                connection.close()
                return
        except OSError:
            time.sleep(0.2)
    tail = server.log.read_text(errors="replace")[-2000:]
    raise RuntimeError(f"{server.name} did not start:\n{tail}")


def stop_server(server: Server) -> None:
    if server.process.poll() is None:
        os.killpg(server.process.pid, signal.SIGTERM)
        try:
            server.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.process.pid, signal.SIGKILL)
            server.process.wait()
    with suppress(ProcessLookupError):  # workers left behind by a master that died first
        os.killpg(server.process.pid, signal.SIGKILL)


def worker_pids(server: Server) -> list[int]:
    pid = server.process.pid
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(child) for child in text.split()]


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


# --- load ------------------------------------------------------------------------------------


def check_answers(server: Server, path: str, ids: list[str], key: str, rng: random.Random) -> None:
    """A sample of answers: status 200 and the decision the path must give."""
    connection = http.client.HTTPConnection(HOST, server.port, timeout=10)
    try:
        for account in rng.sample(ids, SAMPLE_CHECKS):
            connection.request(
                "POST",
                "/v1/risk/check",
                body=json.dumps({"account_id": account}),
                headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
            )
            response = connection.getresponse()
            body: dict[str, Any] = json.loads(response.read())
            if response.status != 200 or body.get("decision") != EXPECTED[path]:
                raise RuntimeError(
                    f"{server.name} {path}: {account} answered {response.status} {body}"
                )
    finally:
        connection.close()


def wrk(server: Server, script: Path, connections: int, seconds: int) -> Load:
    command = [
        WRK,
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        f"http://{HOST}:{server.port}",
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, check=False, timeout=seconds + 60
    )
    found = [line for line in done.stdout.splitlines() if line.startswith("WRKJSON ")]
    if done.returncode != 0 or not found:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip()}")
    figures = json.loads(found[-1].removeprefix("WRKJSON "))
    errors = sum(figures[name] for name in ("connect", "read", "write", "timeout"))
    return Load(
        rate=figures["requests"] / (figures["duration_us"] / 1e6),
        requests=figures["requests"],
        non_2xx=figures["status"],
        socket_errors=errors,
        p50=figures["p50"] / 1000,
        p95=figures["p95"] / 1000,
        p99=figures["p99"] / 1000,
        peak=figures["max"] / 1000,
    )


def print_load(name: str, path: str, conns: int, load: Load) -> None:
    print(
        f"{name:<10} {path:<8} {conns:>5} {load.rate:>8,.0f} {load.p50:>7.2f} {load.p95:>7.2f} "
        f"{load.p99:>7.2f} {load.peak:>7.1f} {load.non_2xx:>8} {load.socket_errors:>8}",
        flush=True,
    )


def print_rss(servers: dict[str, Server]) -> None:
    print("\npeak RSS (VmHWM) of the gunicorn workers:")
    for name, server in servers.items():
        sizes = [peak_rss_mb(pid) for pid in worker_pids(server)]
        if sizes:
            print(
                f"  {name:<10} {len(sizes)} workers, largest {max(sizes):.0f} MiB, "
                f"together {sum(sizes):.0f} MiB"
            )


def print_ratios(
    results: dict[tuple[str, str, int], Load], paths: list[str], connections: list[int]
) -> None:
    print(
        f"\nleakguard vs baseline (targets: req/s >= {TARGET_THROUGHPUT:.0%}, "
        f"p99 <= {TARGET_P99}x):"
    )
    for path in paths:
        for conns in connections:
            app, base = results[("leakguard", path, conns)], results[("baseline", path, conns)]
            throughput, p99 = app.rate / base.rate, app.p99 / base.p99
            verdict = (
                "meets both"
                if throughput >= TARGET_THROUGHPUT and p99 <= TARGET_P99
                else "misses "
                + " and ".join(
                    name
                    for name, missed in (
                        ("req/s", throughput < TARGET_THROUGHPUT),
                        ("p99", p99 > TARGET_P99),
                    )
                    if missed
                )
            )
            print(
                f"  {path:<8} {conns:>3} conns: req/s {throughput:>5.0%}, "
                f"p99 {p99:.2f}x  ({verdict})"
            )


# --- profile ---------------------------------------------------------------------------------


def profile_allow(
    url: str, redis_url: str, key: str, ids: list[str], directory: Path, requests: int
) -> None:
    """Time, then profile, ``requests`` allow-path checks through the real app in this process.

    Production settings and the Redis limiter as under gunicorn, but no HTTP server: the
    Flask test client calls the WSGI app directly, in one thread.
    """
    import cProfile
    import pstats

    from service.app import create_app
    from service.config import Environment, Settings

    settings = Settings(
        env=Environment.PRODUCTION,
        instance_dir=directory / "instance-profile",
        database_url=url,
        redis_url=redis_url,
        hash_key=HASH_KEY,
        secret_key=SECRET_KEY,
        rate_limit_risk="1000000/second",
        service_name=BENCH_SERVICE_NAME,
        mail_from=BENCH_MAIL_FROM,
    )
    app = create_app(settings)
    client = app.test_client()
    headers = {"Authorization": f"Bearer {key}"}
    rng = random.Random(1)

    def run(count: int) -> float:
        started = time.perf_counter()
        for _ in range(count):
            response = client.post(
                "/v1/risk/check", json={"account_id": rng.choice(ids)}, headers=headers
            )
            if response.status_code != 200 or response.get_json()["decision"] != "allow":
                raise RuntimeError(f"profile: {response.status_code} {response.get_data()!r}")
        return time.perf_counter() - started

    run(300)  # warm: pool, statement caches, the key cache
    plain = run(requests)
    profiler = cProfile.Profile()
    profiler.enable()
    profiled = run(requests)
    profiler.disable()
    app.extensions["leakguard"].db.dispose()
    print(
        f"\nprofile of the allow path, in-process, {requests:,} requests: "
        f"{plain / requests * 1e6:,.0f} us each ({requests / plain:,.0f}/s in one thread), "
        f"{profiled / requests * 1e6:,.0f} us under cProfile"
    )
    stats: Any = pstats.Stats(profiler)
    total = sum(entry[3] for entry in stats.stats.values() if entry[4] == {}) or profiled
    rows = [
        (cumulative, own, calls, _where(func))
        for func, (_, calls, own, cumulative, _) in stats.stats.items()
    ]
    print(f"  top 30 by inclusive time (share of {total:.2f} s profiled)")
    for cumulative, own, calls, where in sorted(rows, key=lambda row: -row[0])[:30]:
        print(f"    {cumulative / total:>6.1%} {own / total:>6.1%} self {calls:>7,}x  {where}")
    print("  top 15 by self time")
    for cumulative, own, calls, where in sorted(rows, key=lambda row: -row[1])[:15]:
        print(f"    {own / total:>6.1%} {cumulative / total:>6.1%} incl {calls:>7,}x  {where}")


def _where(func: tuple[str, int, str]) -> str:
    path, line, name = func
    for marker in ("site-packages/", str(ROOT) + "/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{name} ({path}:{line})" if line else name


# --- the baseline app ------------------------------------------------------------------------


def create_baseline_app() -> Any:
    """The least a risk check can do: one indexed read, JSON out. Built in each worker."""
    from flask import Flask, jsonify, request  # noqa: TID251  (the baseline is a web app)
    from sqlalchemy import and_, select

    from service.db import make_engine
    from service.models import Account, Exposure, ExposureState, Leak

    engine = make_engine(os.environ["LEAKGUARD_DATABASE_URL"])
    account, exposure, leak = Account.__table__, Exposure.__table__, Leak.__table__
    query = (
        select(
            account.c.id,
            account.c.security_epoch,
            leak.c.slug,
            exposure.c.kind,
            exposure.c.created_at,
        )
        .select_from(account)
        .outerjoin(
            exposure,
            and_(exposure.c.account_id == account.c.id, exposure.c.state == ExposureState.OPEN),
        )
        .outerjoin(leak, leak.c.id == exposure.c.leak_id)
        .order_by(exposure.c.created_at)
    )
    app = Flask("baseline")

    @app.get("/healthz")
    def healthz() -> Any:
        return jsonify({"status": "ok"})

    @app.post("/v1/risk/check")
    def risk_check() -> Any:
        external = request.get_json()["account_id"]
        with engine.connect() as connection:
            rows = connection.execute(query.where(account.c.external_id == external)).all()
        exposures = [
            {"leak": row.slug, "kind": row.kind, "since": row.created_at.isoformat()}
            for row in rows
            if row.slug is not None
        ]
        return jsonify({"decision": "step_up" if exposures else "allow", "exposures": exposures})

    return app


if __name__ == "__main__":
    run_bench(main)
