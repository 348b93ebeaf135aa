"""Which HTTP server serves ``POST /v1/risk/check`` best on this machine; prints figures only.

One run: loads a fresh PostgreSQL database (``bench/risk.py``'s loader: 1,000,000 accounts
with real keyed address hashes, one leak, 100,000 open email exposures, an API key with the
scope ``risk:check``), then, for each server setting in turn, starts two servers on free
loopback ports with the same server and settings:

* ``risk``: the real app, ``service.app:create_app()`` in production mode, its rate limits
  counted in the real Redis, set high enough never to trigger;
* ``baseline``: ``bench/risk.py``'s bare Flask app: parse the JSON body, one indexed read of
  the same tables (account by external id, LEFT JOIN its open exposures), JSON out; no
  authentication, validation, limiter or audit.

Servers (``--servers``, comma-separated ``KIND:SETTINGS``):

* ``sync:N``: gunicorn with ``deploy/gunicorn.conf.py``, ``--worker-class sync``, N workers
  (default N = 2 x CPUs + 1), one request per worker at a time, no keep-alive;
* ``gthread:WxT``: gunicorn with ``deploy/gunicorn.conf.py`` (the deploy choice: one worker
  of 4 threads per CPU since this comparison, 2 x CPUs + 1 workers before), W workers of T
  threads;
* ``granian:WxT``: ``granian --interface wsgi`` with W workers of T blocking threads each
  (the threads that run the WSGI app; granian's own I/O runs in Rust beside them).

Access logs are off everywhere. wrk (a separate process, one thread) POSTs
``{"account_id": ...}`` with random ids of accounts without an exposure (the ``allow``
path; ``--path step_up`` for accounts with one) to both servers, back to back per
connection count, each after a warm-up; a sample of answers is checked first (status 200
and the expected decision). Printed per run: req/s, p50/p99 latency, errors (non-2xx,
connect, read, write), timeouts (no answer within ``--timeout``), wrk's own CPU share (the
load generator must not be the bottleneck), the CPU time per request of the server's
processes and of the bench database's PostgreSQL backends (from /proc: on a shared machine
req/s follows the CPU share a run got, CPU per request much less so), the load average,
then a summary with the risk check's req/s and p99 over the baseline's under the same
server, as a Markdown table.

    .venv/bin/python bench/servers.py [--accounts 1000000] [--exposures 100000]
        [--servers sync:5,gthread:2x4,gthread:4x4,gthread:5x4,granian:2x4,granian:4x4,granian:2x16]
        [--connections 16,64] [--duration 10] [--warmup 2] [--path allow] [--keep]

Needs wrk (``apt-get install wrk``) and granian (``pip install -e '.[serve]'``) for the
granian rows. The database ``leakguard_bench_servers_<pid>`` is dropped at the end unless
``--keep``; Redis is a database of its own (``LEAKGUARD_BENCH_REDIS`` if set, else a free one
claimed as the test runs claim theirs, ``bench/owned.py``), emptied at the end. Loopback
only, on ports the kernel gives out; every run is bounded by ``--duration`` and
``--timeout``, and the bench stops its servers however it ends (Ctrl-C included).
"""

from __future__ import annotations

import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import risk
from common import bench_database_name, create_pg_database, drop_pg_database
from options import at_least, counts_of, make_parser
from owned import RedisUnavailable, descendants, free_port, redis_database, run_bench, start

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
GUNICORN = BIN / "gunicorn"
GRANIAN = BIN / "granian"
WRK = shutil.which("wrk") or "wrk"
HOST = "127.0.0.1"
PG_DATABASE = bench_database_name("servers")
ENDPOINTS = ("risk", "baseline")
KINDS = ("sync", "gthread", "granian")


def default_servers() -> str:
    cpus = (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    ) or 1
    # gthread CPUs x 4 is deploy/gunicorn.conf.py's default; (2 x CPUs + 1) x 4 was, before.
    workers = 2 * cpus + 1
    return (
        f"sync:{workers},gthread:{cpus}x4,gthread:4x4,gthread:{workers}x4,"
        "granian:2x4,granian:4x4,granian:2x16"
    )


@dataclass(frozen=True, slots=True)
class Spec:
    """One server setting: ``kind`` in KINDS, ``workers`` processes of ``threads`` threads."""

    kind: str
    workers: int
    threads: int

    @property
    def server(self) -> str:
        return "granian" if self.kind == "granian" else "gunicorn"

    @property
    def settings(self) -> str:
        if self.kind == "sync":
            return f"sync, {self.workers} workers"
        if self.kind == "gthread":
            return f"gthread, {self.workers} workers x {self.threads} threads"
        return f"wsgi, {self.workers} workers x {self.threads} blocking threads"


def parse_spec(text: str) -> Spec:
    """``sync:5``, ``gthread:2x4``, ``granian:2x8``; ValueError names what is wrong."""
    kind, _, size = text.strip().partition(":")
    expected = f"{text!r}: expected sync:N, gthread:WxT or granian:WxT"
    if kind not in KINDS or not size:
        raise ValueError(expected)
    try:
        if kind == "sync":
            workers, threads = int(size), 1
        else:
            left, _, right = size.partition("x")
            workers, threads = int(left), int(right or "1")
    except ValueError:
        raise ValueError(expected) from None
    if workers < 1 or threads < 1:
        raise ValueError(f"{text!r}: workers and threads must be at least 1")
    return Spec(kind, workers, threads)


@dataclass(frozen=True, slots=True)
class Load:
    """One wrk run's figures; latencies in milliseconds, ``wrk_cpu`` in CPU-seconds/second.

    The CPU per request does not depend on how much of the shared machine the run got:
    it compares servers measured minutes apart under a changing load.
    """

    rate: float
    requests: int
    errors: int
    timeouts: int
    p50: float
    p99: float
    wrk_cpu: float
    server_cpu: float  # CPU-seconds of the server's processes per request
    pg_cpu: float  # CPU-seconds of the PostgreSQL backends of the bench database per request
    load: float  # the 1-minute load average at the end of the run


# A started server: bench/risk.py's, whose name and port ``risk.check_answers`` reads.
Running = risk.Server


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("--accounts", type=at_least(2), default=1_000_000)
    parser.add_argument("--exposures", type=at_least(1), default=100_000)
    parser.add_argument("--servers", default=default_servers(), help="KIND:SETTINGS, ...")
    parser.add_argument("--connections", type=counts_of(1), default="16,64")
    parser.add_argument("--path", choices=sorted(risk.EXPECTED), default="allow")
    parser.add_argument("--duration", type=at_least(1), default=10, help="seconds measured per run")
    parser.add_argument(
        "--warmup", type=at_least(0), default=2, help="seconds of warm-up per run (0: none)"
    )
    parser.add_argument(
        "--timeout", type=at_least(1), default=5, help="wrk's per-request timeout, s"
    )
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--seed", type=int, default=2019)
    args = parser.parse_args()
    try:
        # dict.fromkeys: each setting once, in the order given
        specs = list(
            dict.fromkeys(parse_spec(text) for text in args.servers.split(",") if text.strip())
        )
    except ValueError as exc:
        parser.error(str(exc))
    connections: list[int] = args.connections
    if not specs:
        parser.error("name at least one server")
    if not 0 < args.exposures < args.accounts:
        parser.error("--exposures must be between 0 and --accounts")
    if shutil.which(WRK) is None:
        sys.exit("wrk is needed (apt-get install wrk)")
    if any(spec.kind == "granian" for spec in specs) and not GRANIAN.is_file():
        sys.exit(f"granian is needed for the granian rows ({BIN}/pip install -e '.[serve]')")

    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average "
        + " ".join(f"{x:.2f}" for x in os.getloadavg())
        + f", {time.strftime('%Y-%m-%d %H:%M:%S')}; {server_versions()}"
    )
    print(
        f"wrk: 1 thread, {args.warmup} s warm-up + {args.duration} s measured per run, "
        f"timeout {args.timeout} s; path {args.path}; access logs off"
    )
    results: dict[tuple[Spec, str, int], Load] = {}
    # The servers (in the stack) stop before their folder is removed.
    with tempfile.TemporaryDirectory(prefix="leakguard-bench-srv-") as tmp, ExitStack() as stack:
        directory = Path(tmp)
        # Its drop is registered first: a Ctrl-C while it is created still drops it.
        if not args.keep:
            stack.callback(drop_pg_database, PG_DATABASE)
        else:
            stack.callback(print, f"kept the database {PG_DATABASE} (--keep)")
        url = create_pg_database(PG_DATABASE)
        try:
            redis_url = stack.enter_context(redis_database(risk.REDIS_URL))
        except RedisUnavailable as exc:
            sys.exit(f"no Redis database for the rate limits: {exc}")
        rng = random.Random(args.seed)
        started = time.perf_counter()
        exposed = risk.load_data(url, args.accounts, args.exposures, rng, PG_DATABASE)
        key = risk.create_key(url)
        print(
            f"loaded {args.accounts:,} accounts, 1 leak, {args.exposures:,} open email exposures "
            f"into {PG_DATABASE} in {time.perf_counter() - started:.1f} s"
        )
        ids = risk.pick_ids(args.accounts, exposed, rng)[args.path]
        script = risk.write_script(directory, args.path, ids, key)
        header = (
            f"\n{'server':<8} {'settings':<36} {'endpoint':<8} {'conns':>5} {'req/s':>7} "
            f"{'p50 ms':>7} {'p99 ms':>7} {'errors':>6} {'timeouts':>8} {'wrk cpu':>7} "
            f"{'cpu ms/req':>10} {'pg ms/req':>9} {'load':>5} {'risk/base':>9}"
        )
        print(header)
        print("-" * (len(header) - 1), flush=True)
        for number, spec in enumerate(specs):
            with ExitStack() as servers:
                running = {
                    endpoint: servers.enter_context(
                        run_server(
                            spec, endpoint, directory / f"{number}-{endpoint}", url, redis_url
                        )
                    )
                    for endpoint in ENDPOINTS
                }
                for conns in connections:
                    for endpoint, server in running.items():
                        risk.check_answers(server, args.path, ids, key, rng)
                        if args.warmup:
                            wrk(server, script, conns, args.warmup, args.timeout)
                        load = wrk(server, script, conns, args.duration, args.timeout)
                        results[(spec, endpoint, conns)] = load
                        print_load(spec, endpoint, conns, load, results)
                print_rss(spec, running)
        print_summary(specs, connections, results)
        print(
            "\nload average after: " + " ".join(f"{x:.2f}" for x in os.getloadavg()) + "; "
            "the machine may be shared: compare the ratios (risk check over the baseline, "
            "measured back to back under the same server) before the absolutes."
        )


def server_versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for name in ("gunicorn", "granian"):
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            found.append(f"{name} not installed")
    return ", ".join(found)


# --- servers ---------------------------------------------------------------------------------


def server_command(spec: Spec, endpoint: str, port: int) -> list[str]:
    """The command line that serves ``endpoint`` under ``spec`` on ``port``."""
    if spec.kind == "granian":
        target = "service.app:create_app" if endpoint == "risk" else "risk:create_baseline_app"
        return [
            str(GRANIAN),
            "--interface",
            "wsgi",
            "--factory",
            "--host",
            HOST,
            "--port",
            str(port),
            "--workers",
            str(spec.workers),
            "--blocking-threads",
            str(spec.threads),
            "--no-access-log",
            "--log-level",
            "warning",
            target,
        ]
    command = [str(GUNICORN), "-c", str(ROOT / "deploy" / "gunicorn.conf.py")]
    # Command-line settings win over the file's; sync needs threads = 1 (gunicorn turns a
    # sync worker with more threads into gthread).
    # gthread is measured as deployed: the config's worker class, gunicorn's gthread worker
    # whose own refusals are problem+json (service/ops/server.py).
    worker_class = "service.ops.server.ProblemWorker" if spec.kind == "gthread" else spec.kind
    command += ["--worker-class", worker_class, "--threads", str(spec.threads)]
    if endpoint == "risk":
        return [*command, "service.app:create_app()"]
    return [*command, "--pythonpath", str(BENCH), "risk:create_baseline_app()"]


def server_env(
    spec: Spec, endpoint: str, port: int, directory: Path, url: str, redis_url: str
) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("LEAKGUARD_")}
    metrics = directory / "metrics"
    metrics.mkdir(parents=True)
    env.update(
        # Both servers write the app's metrics to a fresh multiprocess folder, as deployed.
        PROMETHEUS_MULTIPROC_DIR=str(metrics),
        LEAKGUARD_DATABASE_URL=url,
        LEAKGUARD_INSTANCE_DIR=str(directory / "instance"),
        GUNICORN_BIND=f"{HOST}:{port}",
        GUNICORN_WORKERS=str(spec.workers),
        GUNICORN_THREADS=str(spec.threads),
        GUNICORN_ACCESSLOG="",
        PYTHONPATH=str(BENCH),  # granian imports the baseline by module name
    )
    if endpoint == "risk":
        env.update(
            LEAKGUARD_ENV="production",
            LEAKGUARD_HASH_KEY=risk.HASH_KEY,
            LEAKGUARD_SECRET_KEY=risk.SECRET_KEY,
            LEAKGUARD_REDIS_URL=redis_url,
            LEAKGUARD_RATE_LIMIT_RISK="1000000/second",
            LEAKGUARD_SERVICE_NAME=risk.BENCH_SERVICE_NAME,
            LEAKGUARD_MAIL_FROM=risk.BENCH_MAIL_FROM,
            LEAKGUARD_PUBLIC_URL=risk.BENCH_PUBLIC_URL,
            # never used: the risk check sends no mail; production wants a relay named
            LEAKGUARD_SMTP_URL="smtp://127.0.0.1:25",
        )
    return env


@contextmanager
def run_server(
    spec: Spec, endpoint: str, directory: Path, url: str, redis_url: str
) -> Iterator[Running]:
    """Start ``endpoint`` under ``spec``; stop it (and every worker) however the block ends."""
    port = free_port(HOST)
    env = server_env(spec, endpoint, port, directory, url, redis_url)
    log = directory / "server.log"
    with log.open("wb") as handle:
        # In a session of its own: Ctrl-C reaches us only; we stop the group ourselves.
        process = start(
            server_command(spec, endpoint, port),
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    server = Running(endpoint, port, process, log)
    try:
        risk.wait_ready(server)
        yield server
    finally:
        risk.stop_server(server)


def print_rss(spec: Spec, running: dict[str, Running]) -> None:
    parts = []
    for endpoint, server in running.items():
        sizes = []
        for pid in descendants(server.process.pid):
            with suppress(OSError):
                sizes.append(risk.peak_rss_mb(pid))
        if sizes:
            parts.append(f"{endpoint} {len(sizes)} processes, together {sum(sizes):.0f} MiB")
    if parts:
        print(f"{'':<8} peak RSS of the processes below each master: " + "; ".join(parts))


# --- load ------------------------------------------------------------------------------------


def wrk(server: Running, script: Path, connections: int, seconds: int, timeout: int) -> Load:
    """One wrk run against ``server``; wrk's own CPU time comes from this process's children,
    the server's and PostgreSQL's from /proc."""
    command = [
        WRK,
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        f"{timeout}s",
        "-s",
        str(script),
        f"http://{HOST}:{server.port}",
    ]
    server_before, pg_before = process_cpu(server_pids(server)), process_cpu(pg_backends())
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        command, capture_output=True, text=True, check=False, timeout=seconds + timeout + 60
    )
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_used = cpu_used(server_before, process_cpu(server_pids(server)))
    pg_used = cpu_used(pg_before, process_cpu(pg_backends()))
    found = [line for line in done.stdout.splitlines() if line.startswith("WRKJSON ")]
    if done.returncode != 0 or not found:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip()}")
    figures = json.loads(found[-1].removeprefix("WRKJSON "))
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Load(
        rate=figures["requests"] / (figures["duration_us"] / 1e6),
        requests=figures["requests"],
        errors=sum(figures[name] for name in ("status", "connect", "read", "write")),
        timeouts=figures["timeout"],
        p50=figures["p50"] / 1000,
        p99=figures["p99"] / 1000,
        wrk_cpu=cpu / elapsed,
        server_cpu=server_used / max(1, figures["requests"]),
        pg_cpu=pg_used / max(1, figures["requests"]),
        load=os.getloadavg()[0],
    )


TICKS = os.sysconf("SC_CLK_TCK")


def server_pids(server: Running) -> list[int]:
    return [server.process.pid, *descendants(server.process.pid)]


def pg_backends() -> list[int]:
    """The PostgreSQL backends connected to the bench database (by their process title)."""
    found = []
    marker = f" {PG_DATABASE} ".encode()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with suppress(OSError):
                if marker in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
    return found


def process_cpu(pids: list[int]) -> dict[int, float]:
    """User + system CPU-seconds of each process still there (fields 14 and 15 of stat)."""
    found = {}
    for pid in pids:
        with suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            found[pid] = (int(fields[11]) + int(fields[12])) / TICKS
    return found


def cpu_used(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU-seconds used between two snapshots (a process new since ``before`` counts whole)."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


def print_load(
    spec: Spec, endpoint: str, conns: int, load: Load, results: dict[tuple[Spec, str, int], Load]
) -> None:
    ratio = ""
    other = results.get((spec, "risk" if endpoint == "baseline" else "baseline", conns))
    if other is not None:
        app, base = (other, load) if endpoint == "baseline" else (load, other)
        ratio = f"{app.rate / base.rate:.0%}"
    print(
        f"{spec.server:<8} {spec.settings:<36} {endpoint:<8} {conns:>5} {load.rate:>7,.0f} "
        f"{load.p50:>7.2f} {load.p99:>7.2f} {load.errors:>6} {load.timeouts:>8} "
        f"{load.wrk_cpu:>7.0%} {load.server_cpu * 1000:>10.2f} {load.pg_cpu * 1000:>9.2f} "
        f"{load.load:>5.1f} {ratio:>9}",
        flush=True,
    )


def print_summary(
    specs: list[Spec], connections: list[int], results: dict[tuple[Spec, str, int], Load]
) -> None:
    """Per server and connection count: risk check and baseline side by side, Markdown."""
    print(
        "\n| server | settings | conns | risk req/s | baseline req/s | risk/baseline req/s "
        "| risk p50 / p99 ms | baseline p50 / p99 ms | risk/baseline p99 | errors | timeouts "
        "| server CPU ms per request, risk / baseline |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for spec in specs:
        for conns in connections:
            app, base = results[(spec, "risk", conns)], results[(spec, "baseline", conns)]
            print(
                f"| {spec.server} | {spec.settings} | {conns} | {app.rate:,.0f} | {base.rate:,.0f} "
                f"| {app.rate / base.rate:.0%} | {app.p50:.1f} / {app.p99:.1f} "
                f"| {base.p50:.1f} / {base.p99:.1f} | {app.p99 / base.p99:.2f}x "
                f"| {app.errors} / {base.errors} | {app.timeouts} / {base.timeouts} "
                f"| {app.server_cpu * 1000:.2f} / {base.server_cpu * 1000:.2f} |"
            )


if __name__ == "__main__":
    run_bench(main)
