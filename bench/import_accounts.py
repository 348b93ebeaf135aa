"""Benchmark ``leakguard accounts import`` on SQLite and PostgreSQL; prints figures only.

Generates a realistic accounts export (varied domains, case, +tags, Gmail spellings, a
locale, a junk column and a few broken rows), then per backend migrates a fresh database
and runs the import twice as a child process: the first run creates every account, the
second finds every one unchanged. Each run reports wall time, rows/s and the child's peak
RSS (from os.wait4). A baseline measured in the same run reads the same file with
csv.reader and computes the canonical form and keyed hash of every address without any
database; the ratio import/baseline says how much the database side costs.

    .venv/bin/python bench/import_accounts.py [--rows N] [--backends sqlite,postgres]

PostgreSQL: a database ``leakguard_bench`` on postgres@127.0.0.1 is created and dropped.
"""

from __future__ import annotations

import argparse
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

from common import DOMAINS, child_env, create_pg_database, drop_pg_database

from jobs.sample import FIRST_NAMES, LAST_NAMES
from service.addresses import CanonicalAddress, CanonicalRules, EmailHasher, canonicalize_email

LEAKGUARD = Path(sys.executable).with_name("leakguard")
HASH_KEY = "bench-hash-key-0123456789abcdef"
PG_DATABASE = "leakguard_bench"
BROKEN_EVERY = 5000  # one row in 5,000 is not an account, as in real exports

LOCALES = ("en", "en", "en", "en-GB", "de", "de", "de-AT", "fr", "es", "pt-BR", "")
PLANS = ("free", "free", "free", "pro", "team", "trial; expired", 'legacy "gold"')


@dataclass(frozen=True, slots=True)
class Run:
    wall: float
    peak_rss_mb: float
    report: dict[str, object]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--seed", type=int, default=2019)
    args = parser.parse_args()
    backends = [name.strip() for name in args.backends.split(",") if name.strip()]
    unknown = set(backends) - {"sqlite", "postgres"}
    if unknown:
        parser.error(f"unknown backends: {', '.join(sorted(unknown))}")

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
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")

        base_wall, base_rows = baseline(path)
        base_rate = base_rows / base_wall
        print(
            f"\nbaseline (csv.reader + canonicalize_email + EmailHasher.hash, no database): "
            f"{base_rows:,} rows in {base_wall:.2f} s = {base_rate:,.0f} rows/s"
        )

        header = (
            f"\n{'backend':<9} {'run':<7} {'rows':>9} {'created':>9} {'updated':>8} "
            f"{'unchanged':>10} {'invalid':>8} {'wall s':>8} {'rows/s':>9} "
            f"{'vs base':>8} {'peak RSS':>9}"
        )
        print(header)
        print("-" * (len(header) - 1))
        for backend in backends:
            bench_backend(backend, directory, path, base_rate)
        print(
            "\nwall time and RSS are the whole child process (interpreter start, imports, "
            "migration check); 'vs base' is import rows/s divided by baseline rows/s."
        )


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


def baseline(path: Path) -> tuple[float, int]:
    """Time reading the file and keying every address, the work any import must do."""
    hasher = EmailHasher(HASH_KEY.encode())
    rules = CanonicalRules()
    rows = 0
    started = time.perf_counter()
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = [cell.strip().lower() for cell in next(reader)]
        email_at = header.index("email")
        for record in reader:
            rows += 1
            canonical = canonicalize_email(record[email_at].strip(), rules)
            if isinstance(canonical, CanonicalAddress):
                hasher.hash(canonical.address)
    return time.perf_counter() - started, rows


def bench_backend(backend: str, directory: Path, path: Path, base_rate: float) -> None:
    if backend == "sqlite":
        database = directory / "bench.sqlite3"
        database.unlink(missing_ok=True)
        url = f"sqlite:///{database}"
    else:
        url = create_pg_database(PG_DATABASE)
    try:
        env = child_env(url, directory / f"instance-{backend}", HASH_KEY)
        upgrade = run_child(["db", "upgrade"], env)
        for label in ("first", "second"):
            run = run_child(["accounts", "import", str(path), "--json"], env)
            print_run(backend, label, run, base_rate)
        print(f"{backend:<9} (db upgrade alone: {upgrade.peak_rss_mb:.0f} MiB peak RSS)")
    finally:
        if backend != "sqlite":
            drop_pg_database(PG_DATABASE)


def run_child(args: list[str], env: dict[str, str]) -> Run:
    """Run ``leakguard ARGS`` in its own process; return wall time and its own peak RSS."""
    started = time.perf_counter()
    child = subprocess.Popen(
        [str(LEAKGUARD), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # wait4 (not Popen.wait) returns this child's own rusage; the outputs are a few lines,
    # well under a pipe buffer, so reading them afterwards cannot deadlock.
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    stdout, stderr = child.communicate()
    if child.returncode != 0:
        sys.exit(f"leakguard {' '.join(args)} failed ({child.returncode}): {stderr.strip()}")
    report = json.loads(stdout) if "--json" in args else {}
    return Run(wall=wall, peak_rss_mb=usage.ru_maxrss / 1024, report=report)


def print_run(backend: str, label: str, run: Run, base_rate: float) -> None:
    report = run.report
    rows = int(str(report["rows"]))
    rate = rows / run.wall
    print(
        f"{backend:<9} {label:<7} {rows:>9,} {report['created']:>9,} {report['updated']:>8,} "
        f"{report['unchanged']:>10,} {report['invalid']:>8,} {run.wall:>8.2f} "
        f"{rate:>9,.0f} {rate / base_rate:>7.0%} {run.peak_rss_mb:>5.0f} MiB"
    )


if __name__ == "__main__":
    main()
