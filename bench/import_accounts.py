"""Benchmark ``leakguard accounts import`` on SQLite and PostgreSQL; prints figures only.

Generates a realistic accounts export (varied domains, case, +tags, Gmail spellings, a
locale, a junk column and a few broken rows), then per backend migrates a fresh database
and runs the import twice as a child process: the first run creates every account, the
second finds every one unchanged. Each run reports wall time, rows/s, the child's own CPU
seconds and peak RSS (through common.RUSAGE_WRAPPER) and, on PostgreSQL, the CPU seconds of
the server backends of the bench's database alone (sampled from /proc while it runs).
A baseline measured in the same run reads the same file with csv.reader and computes the
canonical form and keyed hash of every address without any database; the ratio
import/baseline says how much the database side costs. Two stages say where the time
goes: the start-up of a ``leakguard accounts import`` (a file with a header only), and the
import's reading alone, in this process, without a database (CSV, every check, the bare
mailbox, canonical form and key: ``jobs.account_import._chunks``). The machine is shared:
the CPU columns hold where the wall time does not, and "cpu vs base" is the baseline's CPU
over the import's own (what the wall ratio would be on a quiet machine, where the import's
process, held to about one core by the GIL, and PostgreSQL each have a core).

    .venv/bin/python bench/import_accounts.py [--rows N] [--backends sqlite,postgres]

PostgreSQL: a database ``leakguard_bench_import_<pid>`` on postgres@127.0.0.1
(``LEAKGUARD_BENCH_PG``) is created and dropped, also when the bench is interrupted.
"""

from __future__ import annotations

import csv
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from common import (
    DOMAINS,
    RUSAGE_WRAPPER,
    bench_database_name,
    child_env,
    create_pg_database,
    drop_pg_database,
)
from options import at_least, make_parser, names_of
from owned import run_bench, start

from jobs.account_import import _chunks
from jobs.sample import FIRST_NAMES, LAST_NAMES
from service.addresses import (
    AddressKeys,
    CanonicalAddress,
    CanonicalRules,
    EmailHasher,
    canonicalize_email,
)

LEAKGUARD = Path(sys.executable).with_name("leakguard")
HASH_KEY = "bench-hash-key-0123456789abcdef"
PG_DATABASE = bench_database_name("import")
BACKENDS = ("sqlite", "postgres")
TARGET_OF_BASELINE = 0.40  # issue 18, target 4
CHUNK_ROWS = 20_000  # the import's default (LEAKGUARD_IMPORT_CHUNK_ROWS)
BROKEN_EVERY = 5000  # one row in 5,000 is not an account, as in real exports

LOCALES = ("en", "en", "en", "en-GB", "de", "de", "de-AT", "fr", "es", "pt-BR", "")
PLANS = ("free", "free", "free", "pro", "team", "trial; expired", 'legacy "gold"')


@dataclass(frozen=True, slots=True)
class Run:
    wall: float
    cpu: float  # the leakguard process's own user + system seconds
    pg_cpu: float  # the bench database's server backends (0 on SQLite)
    peak_rss_mb: float
    report: dict[str, object]


@dataclass(frozen=True, slots=True)
class Baseline:
    rows: int
    wall: float
    cpu: float

    @property
    def rate(self) -> float:
        return self.rows / self.wall


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("--rows", type=at_least(1), default=1_000_000)
    parser.add_argument("--backends", type=names_of(BACKENDS), default=",".join(BACKENDS))
    parser.add_argument("--seed", type=int, default=2019)
    args = parser.parse_args()
    backends: list[str] = args.backends

    with tempfile.TemporaryDirectory(prefix="leakguard-bench-") as tmp:
        directory = Path(tmp)
        path = directory / "accounts.csv"
        started = time.perf_counter()
        generate(path, args.rows, random.Random(args.seed))
        size_mb = path.stat().st_size / 2**20
        print(
            f"generated {args.rows:,} rows ({size_mb:.1f} MiB) in "
            f"{time.perf_counter() - started:.1f} s: {path.name}"
        )
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {_load()}")

        base = baseline(path)
        print(
            f"\nbaseline (csv.reader + canonicalize_email + EmailHasher.hash, no database): "
            f"{base.rows:,} rows in {base.wall:.2f} s = {base.rate:,.0f} rows/s, "
            f"{base.cpu:.2f} CPU s"
        )
        wall, cpu, accounts = reading_alone(path)
        print(
            f"stage: the import's reading alone (CSV, checks, bare mailbox, canonical form, key; "
            f"no database): {accounts:,} accounts in {wall:.2f} s = {accounts / wall:,.0f} "
            f"rows/s, {cpu:.2f} CPU s = {cpu / base.cpu:.2f}x the baseline's CPU"
        )

        header = (
            f"\n{'backend':<9} {'run':<7} {'rows':>9} {'created':>9} {'updated':>8} "
            f"{'unchanged':>10} {'invalid':>8} {'wall s':>8} {'rows/s':>9} "
            f"{'vs base':>8} {'cpu s':>6} {'pg cpu':>6} {'cpu vs base':>11} {'peak RSS':>9}"
        )
        print(header)
        print("-" * (len(header) - 1))
        results: dict[tuple[str, str], Run] = {}
        for backend in backends:
            results.update(bench_backend(backend, directory, path, base))
        print(
            "\nwall time, CPU and RSS are the whole child process (interpreter start, imports, "
            "migration check); 'vs base' is import rows/s divided by baseline rows/s; "
            "'cpu vs base' is the baseline's CPU seconds over the import process's own; "
            "'pg cpu' is the bench database's server backends."
        )
        print_targets(results, base)
        print(f"load average at the end: {_load()}")


def generate(path: Path, rows: int, rng: random.Random) -> None:
    names, weights = zip(*DOMAINS, strict=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["external_id", "email", "plan", "locale"])
        for n in range(1, rows + 1):
            external_id = f"usr_{n:08d}"
            if n % BROKEN_EVERY == 0:
                writer.writerow([external_id, f"broken-{n}.example.com", "free", "en"])
                continue
            first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
            local = rng.choice(
                (f"{first}.{last}", f"{first}{last}", f"{first[0]}{last}", f"{first}_{last}")
            )
            local += str(n) if rng.random() < 0.7 else str(rng.randrange(100))
            if rng.random() < 0.08:
                local += "+" + rng.choice(("news", "shop", "leak-test", "2019"))
            address = f"{local}@{rng.choices(names, weights)[0]}"
            shape = rng.random()
            if shape < 0.10:
                address = address.title()
            elif shape < 0.13:
                address = address.upper()
            elif shape < 0.15:
                address = f" {address} "
            writer.writerow([external_id, address, rng.choice(PLANS), rng.choice(LOCALES)])


def baseline(path: Path) -> Baseline:
    """Time reading the file and keying every address, the work any import must do."""
    hasher = EmailHasher(HASH_KEY.encode())
    rules = CanonicalRules()
    rows = 0
    started, cpu = time.perf_counter(), time.process_time()
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = [cell.strip().lower() for cell in next(reader)]
        email_at = header.index("email")
        for record in reader:
            rows += 1
            canonical = canonicalize_email(record[email_at].strip(), rules)
            if isinstance(canonical, CanonicalAddress):
                hasher.hash(canonical.address)
    return Baseline(rows, time.perf_counter() - started, time.process_time() - cpu)


def reading_alone(path: Path) -> tuple[float, float, int]:
    """Time the import's own reading of ``path`` without a database: wall, CPU, accounts."""
    keys = AddressKeys(EmailHasher(HASH_KEY.encode()), CanonicalRules())
    runtime: Any = SimpleNamespace(keys=keys)
    accounts = 0
    started, cpu = time.perf_counter(), time.process_time()
    for chunk in _chunks(runtime, path, CHUNK_ROWS):
        accounts += len(chunk.accounts.external_ids)
    return time.perf_counter() - started, time.process_time() - cpu, accounts


def bench_backend(
    backend: str, directory: Path, path: Path, base: Baseline
) -> dict[tuple[str, str], Run]:
    runs: dict[tuple[str, str], Run] = {}
    try:  # created inside: a Ctrl-C while it is created still drops it
        if backend == "sqlite":
            database = directory / "bench.sqlite3"
            database.unlink(missing_ok=True)
            url = f"sqlite:///{database}"
        else:
            url = create_pg_database(PG_DATABASE)
        env = child_env(url, directory / f"instance-{backend}", HASH_KEY)
        upgrade = run_child(["db", "upgrade"], env)
        empty = directory / "header-only.csv"
        empty.write_text("external_id,email,plan,locale\n", encoding="utf-8")
        start_up = run_child(["accounts", "import", str(empty), "--json"], env)
        for label in ("first", "second"):
            run = run_child(["accounts", "import", str(path), "--json"], env)
            print_run(backend, label, run, base)
            runs[(backend, label)] = run
        print(
            f"{backend:<9} (start-up, a header-only file: {start_up.cpu:.2f} CPU s, "
            f"{start_up.wall:.2f} s; db upgrade alone: {upgrade.peak_rss_mb:.0f} MiB peak RSS)"
        )
    finally:
        if backend != "sqlite":
            drop_pg_database(PG_DATABASE)
    return runs


def run_child(args: list[str], env: dict[str, str]) -> Run:
    """Run ``leakguard ARGS`` in its own process; return its wall time, CPU and peak RSS."""
    database = env["LEAKGUARD_DATABASE_URL"].rsplit("/", 1)[-1]
    with tempfile.NamedTemporaryFile() as usage:
        backends: dict[int, float] = {}
        started = time.perf_counter()
        child = start(
            [sys.executable, "-c", RUSAGE_WRAPPER, usage.name, str(LEAKGUARD), *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        # The server's CPU for this database alone: its backends, sampled until the import
        # ends (a backend's last few tens of milliseconds may be missed).
        while child.poll() is None:
            for pid, seconds in _backend_cpu(database).items():
                backends[pid] = max(backends.get(pid, 0.0), seconds)
            time.sleep(0.05)
        wall = time.perf_counter() - started
        stdout, stderr = child.communicate()
        if child.returncode != 0:
            sys.exit(f"leakguard {' '.join(args)} failed ({child.returncode}): {stderr.strip()}")
        peak_kib, cpu = (float(figure) for figure in usage.read().split())
    report = json.loads(stdout) if "--json" in args else {}
    return Run(wall, cpu, sum(backends.values()), peak_kib / 1024, report)


_TICKS = os.sysconf("SC_CLK_TCK")


def _backend_cpu(database: str) -> dict[int, float]:
    """CPU seconds of each PostgreSQL backend connected to ``database`` (from /proc)."""
    found: dict[int, float] = {}
    marker = f" {database} ".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                command = handle.read()
            if not command.startswith(b"postgres: ") or marker not in command:
                continue
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        found[int(entry)] = (int(fields[11]) + int(fields[12])) / _TICKS
    return found


def print_run(backend: str, label: str, run: Run, base: Baseline) -> None:
    report = run.report
    rows = int(str(report["rows"]))
    rate = rows / run.wall
    print(
        f"{backend:<9} {label:<7} {rows:>9,} {report['created']:>9,} {report['updated']:>8,} "
        f"{report['unchanged']:>10,} {report['invalid']:>8,} {run.wall:>8.2f} "
        f"{rate:>9,.0f} {rate / base.rate:>7.0%} {run.cpu:>6.2f} {run.pg_cpu:>6.2f} "
        f"{base.cpu / run.cpu:>10.0%} {run.peak_rss_mb:>5.0f} MiB"
    )


def _load() -> str:
    return " ".join(f"{figure:.2f}" for figure in os.getloadavg())


def _verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def print_targets(results: dict[tuple[str, str], Run], base: Baseline) -> None:
    """Print issue 18's target 4 with each run's ratio to this run's baseline."""
    print(
        f"\ntarget 4 (issue 18): accounts import >= {TARGET_OF_BASELINE:.0%} of its "
        f"no-database baseline ({base.rate:,.0f} rows/s, {base.cpu:.2f} CPU s in this run):"
    )
    for (backend, label), run in results.items():
        ratio = int(str(run.report["rows"])) / run.wall / base.rate
        print(
            f"  {backend} {label} run: {ratio:.1%} of the baseline "
            f"({_verdict(ratio >= TARGET_OF_BASELINE)}); by CPU {base.cpu / run.cpu:.1%} "
            f"({_verdict(base.cpu / run.cpu >= TARGET_OF_BASELINE)})"
        )


if __name__ == "__main__":
    run_bench(main)
