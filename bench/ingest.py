"""Benchmark ``leakguard ingest`` on SQLite and PostgreSQL; prints figures, never pass/fail.

Generates an accounts export and one realistic leak in the formats lines, csv (4 columns,
the address second), combo (``email:password``) and jsonl. The same address sequence goes
into every format: about 5 % of the lines are our accounts in varied surface forms (case,
``+tags``, googlemail.com and Gmail dots, display names, encoded words, ``mailto:``,
brackets), about 1 % are not addresses, about 5 % repeat an earlier line and the rest are
strangers. Smaller sizes of each file are byte prefixes of the largest one.

Per backend: a fresh database is migrated and the accounts are imported with
``leakguard accounts import`` (timed, but not as ingest), then every file is ingested by
``leakguard ingest FILE --leak bench-<fmt> --format <fmt> --json`` in its own child
process, with the leak tables emptied before each run so that every run starts from the
same state. Each run reports the child's counters, wall time (the whole process: interpreter
start, imports, SHA-256 fingerprint, ingest), lines/s, its own peak RSS and CPU seconds
(``os.wait4`` in a small fork wrapper, so that this process's memory is not inherited into
the figure), the PostgreSQL server's CPU seconds, and how many cores other processes on
the machine kept busy meanwhile (``/proc/stat``): the machine is shared, so read the
figures next to that column.

The baseline, measured in the same run (before and after; the faster one is the
reference): a bare Python loop over the plain-lines file that reads, strips, lowercases
and keyed-BLAKE2b-hashes each line, with no canonical form and no database.

If ``leakguard ingest`` has ``--enqueue``, the largest plain-lines file is also ingested that
way: enqueued with ``--no-wait`` on a real Redis, then run by one and then two ``leakguard
worker --burst`` processes pinned to as many cores; the counters come from ``leaks show``.
The Redis database is ``LEAKGUARD_BENCH_REDIS`` if set, else a free one of 1-15 claimed as
the test runs claim theirs (``bench/owned.py``); either way one no other run holds, used
only if empty and emptied at the end.

``--profile`` also runs one ingest (each backend, lines, the prefix size) under py-spy, once
on-CPU and once with idle samples, and prints the top functions by self and inclusive time;
then the same ingest in-process with every psycopg call timed (where the writer's time goes),
and the CPU stages alone in this process: the reader per format, ``canonicalize_email`` (fast
path and the rest) and the keyed hash.

    .venv/bin/python bench/ingest.py [--lines 10000000] [--accounts 1000000]
        [--backends sqlite,postgres] [--formats lines,csv,combo,jsonl]
        [--format-lines N] [--prefix-lines 1000000] [--profile | --profile-only]

PostgreSQL: a database ``leakguard_bench_ingest_<pid>`` on postgres@127.0.0.1
(``LEAKGUARD_BENCH_PG``) is created and dropped. The generated files live in a temporary
directory, deleted at the end. Ctrl-C stops the bench's processes and removes all of it.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from common import (
    DOMAINS,
    RUSAGE_WRAPPER,
    bench_database_name,
    child_env,
    create_pg_database,
    drop_pg_database,
    pg_url,
)
from options import at_least, make_parser, names_of
from owned import RedisUnavailable, redis_database, run_bench, start
from redis import Redis

from jobs.sample import FIRST_NAMES, LAST_NAMES
from service.leaks.passwords import hash_leaked_password

BIN = Path(sys.executable).parent
LEAKGUARD = BIN / "leakguard"
PY_SPY = BIN / "py-spy"
HASH_KEY = "bench-hash-key-0123456789abcdef"
PG_DATABASE = bench_database_name("ingest")
# --enqueue's Redis database: this one if set, else a free one claimed as the test runs
# claim theirs (bench/owned.py); either way one no other run holds, emptied at the end.
REDIS_URL = os.environ.get("LEAKGUARD_BENCH_REDIS")
BACKENDS = ("sqlite", "postgres")
FORMATS = ("lines", "csv", "combo", "jsonl")
# --enqueue: 1 worker pinned to core 0, then 2 workers pinned to cores 0 and 1 (taskset), so
# that the figure says how the ingest grows with cores whatever else runs on the machine.
WORKER_COUNTS = (1, 2)
KEPT_TABLES = frozenset({"account", "api_client", "alembic_version"})  # the rest is reset
WATCHED_CODE = (
    "jobs/ingest/pipeline.py",
    "jobs/ingest/parts.py",
    "service/db/bulk.py",
    "jobs/reader/stream.py",
    "jobs/reader/formats.py",
    "service/addresses/canonical.py",
    "service/leaks/exposures.py",
    "service/leaks/progress.py",
    "service/notices/outbox.py",
    "service/leaks/passwords.py",
    "service/config.py",
)
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
MB = 2**20

# Shares of the leak's lines; the rest are strangers.
ACCOUNT_SHARE = 0.05
INVALID_SHARE = 0.01
DUPLICATE_SHARE = 0.05
RECENT_LINES = 200_000  # duplicates repeat one of the last this many lines
WRITE_BLOCK = 10_000  # lines per write; sizes are cut at block ends

GMAIL = ("gmail.com", "googlemail.com")
TAGS = ("news", "shop", "leak-test", "2019", "spam")
PASSWORDS = ("123456", "password", "qwerty", "iloveyou", "letmein", "dragon", "monkey")
CHARSET = "abcdefghijkmnpqrstuvwxyz0123456789:!|"
LOCALES = ("en", "en", "en", "en-GB", "de", "de", "fr", "es", "pt-BR", "")


@dataclass(frozen=True, slots=True)
class Usage:
    """Machine-wide CPU counters at one moment, in seconds."""

    at: float
    busy: float  # all CPUs, all processes
    postgres: float  # every postgres process, plus the backends it has reaped

    @staticmethod
    def now() -> Usage:
        return Usage(time.perf_counter(), _busy_seconds(), _postgres_seconds())


@dataclass(frozen=True, slots=True)
class Run:
    wall: float
    cpu: float  # the child's own user + system seconds, all threads
    peak_rss_mb: float
    pg_cpu: float
    others: float  # cores busy with neither the child nor PostgreSQL, on average
    report: dict[str, Any]


@dataclass(slots=True)
class LeakSet:
    """The generated leak files: (format, lines) -> path, and what went into them."""

    paths: dict[tuple[str, int], Path] = field(default_factory=dict)
    kinds: Counter[str] = field(default_factory=Counter)


def main() -> None:
    parser = make_parser(__doc__)
    lines_help = f"lines, in whole blocks of {WRITE_BLOCK:,} (rounded down)"
    parser.add_argument("--lines", type=at_least(WRITE_BLOCK), default=10_000_000, help=lines_help)
    parser.add_argument("--accounts", type=at_least(1), default=1_000_000)
    parser.add_argument("--backends", type=names_of(BACKENDS), default=",".join(BACKENDS))
    parser.add_argument("--formats", type=names_of(FORMATS), default=",".join(FORMATS))
    parser.add_argument(
        "--format-lines",
        type=at_least(WRITE_BLOCK),
        help="cap csv/combo/jsonl at this many lines (plain lines is then run at this size "
        "too, for the ratio); default: --lines",
    )
    parser.add_argument(
        "--prefix-lines",
        type=at_least(0),
        default=1_000_000,
        help="also ingest this prefix of every file, to compare peak RSS (0: off)",
    )
    parser.add_argument("--chunk-records", type=at_least(1), help="passed to leakguard ingest")
    parser.add_argument("--profile", action="store_true", help="also profile one ingest (py-spy)")
    parser.add_argument("--profile-only", action="store_true", help="only the profile")
    parser.add_argument("--profile-rate", type=at_least(1), default=200, help="py-spy samples/s")
    parser.add_argument("--seed", type=int, default=2019)
    parser.add_argument("--sql-profile", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sql_profile is not None:
        sql_profile_child(args.sql_profile)
        return
    backends: list[str] = args.backends
    formats: list[str] = args.formats
    profile = args.profile or args.profile_only
    if profile and not PY_SPY.is_file():
        parser.error(f"--profile needs py-spy: {BIN}/pip install py-spy")
    if args.profile_only:
        formats = []
    sizes = plan_sizes(args, formats, profile=profile)
    for flag in ("lines", "format_lines", "prefix_lines"):
        asked = getattr(args, flag)
        if asked and asked % WRITE_BLOCK:
            print(f"note: --{flag.replace('_', '-')} {asked:,} runs as {_block(asked):,} lines")

    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average "
        + " ".join(f"{x:.2f}" for x in os.getloadavg())
        + f", {time.strftime('%Y-%m-%d %H:%M:%S')}"
    )
    root = Path(__file__).resolve().parent.parent
    print(
        "code: "
        + ", ".join(
            f"{name} {hashlib.sha256((root / name).read_bytes()).hexdigest()[:8]} "
            f"{time.strftime('%H:%M:%S', time.localtime((root / name).stat().st_mtime))}"
            for name in WATCHED_CODE
            if (root / name).exists()
        )
    )
    with tempfile.TemporaryDirectory(prefix="leakguard-bench-ingest-") as tmp:
        directory = Path(tmp)
        print(f"data in {directory} ({shutil.disk_usage(directory).free / 2**30:.0f} GiB free)")
        started = time.perf_counter()
        accounts_csv = directory / "accounts.csv"
        addresses = generate_accounts(accounts_csv, args.accounts, random.Random(args.seed))
        print(
            f"generated {args.accounts:,} accounts ({accounts_csv.stat().st_size / MB:.1f} MiB) "
            f"in {time.perf_counter() - started:.1f} s"
        )
        started = time.perf_counter()
        leaks = generate_leak(directory, sizes, addresses, random.Random(args.seed + 1))
        del addresses
        total = sum(leaks.kinds.values())
        print(
            f"generated the leak in {time.perf_counter() - started:.1f} s: {total:,} lines = "
            + ", ".join(f"{kind} {n / total:.1%}" for kind, n in sorted(leaks.kinds.items()))
        )
        for (fmt, lines), path in sorted(leaks.paths.items()):
            print(
                f"  {path.name:<22} {fmt:<6} {lines:>11,} lines "
                f"{path.stat().st_size / MB:>8.1f} MiB"
            )

        lines_file = leaks.paths[("lines", max(n for f, n in leaks.paths if f == "lines"))]
        base_first = baseline(lines_file)
        print(
            "\nbaseline (read, strip, lower, keyed BLAKE2b per line; no canonical form, no "
            f"database) on {lines_file.name}: {base_first:,.0f} lines/s"
        )
        argon2_ms = argon2_cost()
        print(f"argon2id of one leaked password (service.leaked_passwords): {argon2_ms:.1f} ms")
        enqueue = enqueue_support()
        print(f"--enqueue: {enqueue}")

        results: dict[tuple[str, str, int], Run] = {}
        for backend in backends:
            runs = [(fmt, n) for fmt in formats for n in sorted(sizes[fmt])]
            bench_backend(
                backend,
                directory,
                accounts_csv,
                leaks,
                runs,
                results,
                base_first,
                args,
                profile=profile,
                enqueue=enqueue == "available",
            )

        if results:
            base_last = baseline(lines_file)
            base = max(base_first, base_last)
            print(
                f"\nbaseline again: {base_last:,.0f} lines/s; reference = the faster of the two, "
                f"{base:,.0f} lines/s (load average "
                + " ".join(f"{x:.2f}" for x in os.getloadavg())
                + ")"
            )
            print_summary(results, base, argon2_ms)
            print_targets(results, base)


# --- data ------------------------------------------------------------------------------------


def plan_sizes(
    args: argparse.Namespace, formats: list[str], *, profile: bool
) -> dict[str, set[int]]:
    """Which line counts to write and ingest for each format."""
    cap = min(args.format_lines or args.lines, args.lines)
    sizes: dict[str, set[int]] = {fmt: set() for fmt in FORMATS}
    for fmt in formats:
        top = args.lines if fmt == "lines" else cap
        sizes[fmt].add(top)
        if 0 < args.prefix_lines < top:
            sizes[fmt].add(args.prefix_lines)
    if cap < args.lines and set(formats) - {"lines"} and "lines" in formats:
        sizes["lines"].add(cap)  # plain lines at the other formats' size, for the ratio
    if profile:
        sizes["lines"].add(min(args.prefix_lines or args.lines, args.lines))
    if formats and not sizes["lines"]:
        sizes["lines"].add(cap)  # not ingested: the bare loop's file, for every ratio
    return {fmt: {_block(n) for n in ns} for fmt, ns in sizes.items() if ns}


def _block(lines: int) -> int:
    return max(WRITE_BLOCK, lines - lines % WRITE_BLOCK)


def _name(rng: random.Random) -> tuple[str, str]:
    return rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)


def _local(first: str, last: str, rng: random.Random) -> str:
    return rng.choice((f"{first}.{last}", f"{first}{last}", f"{first[0]}{last}", f"{first}_{last}"))


def generate_accounts(path: Path, count: int, rng: random.Random) -> list[str]:
    """Write the accounts export; return every account's address as exported."""
    names, weights = zip(*DOMAINS, strict=True)
    cum = _cumulative(weights)
    addresses: list[str] = []
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["external_id", "email", "locale"])
        for n in range(1, count + 1):
            first, last = _name(rng)
            local = _local(first, last, rng)
            local += str(n) if rng.random() < 0.7 else str(rng.randrange(100))
            if rng.random() < 0.05:
                local += "+" + rng.choice(TAGS)
            address = f"{local}@{rng.choices(names, cum_weights=cum)[0]}"
            if rng.random() < 0.08:
                address = address.title() if rng.random() < 0.7 else address.upper()
            addresses.append(address)
            writer.writerow([f"usr_{n:08d}", address, rng.choice(LOCALES)])
    return addresses


def _cumulative(weights: tuple[int, ...]) -> list[int]:
    total, out = 0, []
    for weight in weights:
        total += weight
        out.append(total)
    return out


def leak_addresses(rng: random.Random, accounts: list[str], kinds: Counter[str]) -> Iterator[str]:
    """Yield leak lines (address texts) forever, in the mix described at the top."""
    names, weights = zip(*DOMAINS, strict=True)
    cum = _cumulative(weights)
    recent: list[str] = []
    slot = 0
    account_at = INVALID_SHARE + ACCOUNT_SHARE
    duplicate_at = account_at + DUPLICATE_SHARE
    while True:
        draw = rng.random()
        if draw < INVALID_SHARE:
            kinds["invalid"] += 1
            yield invalid_line(rng, names)
            continue
        if draw < account_at:
            kinds["account"] += 1
            text = surface(rng.choice(accounts), rng, 1.0)
        elif draw < duplicate_at and recent:
            kinds["duplicate"] += 1
            yield rng.choice(recent)
            continue
        else:
            kinds["stranger"] += 1
            first, last = _name(rng)
            local = _local(first, last, rng)
            # Numbers outside the accounts' own (1..1M and 0..99), so strangers stay strangers.
            if rng.random() < 0.7:
                local += str(rng.randrange(1_000_001, 100_000_000))
            else:
                local += "." + str(rng.randrange(1000, 10_000))
            text = surface(f"{local}@{rng.choices(names, cum_weights=cum)[0]}", rng, 0.3)
        if len(recent) < RECENT_LINES:
            recent.append(text)
        else:
            recent[slot] = text
            slot = (slot + 1) % RECENT_LINES
        yield text


def surface(address: str, rng: random.Random, rate: float) -> str:
    """Dress ``address`` in the forms leaks use; ``rate`` scales how often."""
    local, _, domain = address.rpartition("@")
    if rng.random() < 0.10 * rate and "+" not in local:
        local += "+" + rng.choice(TAGS)
    if domain.lower() in GMAIL and rng.random() < 0.5 * rate:
        if rng.random() < 0.5:
            domain = "googlemail.com" if domain.lower() == "gmail.com" else "gmail.com"
        else:
            cut = rng.randrange(1, len(local)) if len(local) > 1 else 1
            local = local.replace(".", "") if "." in local else f"{local[:cut]}.{local[cut:]}"
    text = f"{local}@{domain}"
    draw = rng.random()
    if draw < 0.12 * rate:
        text = text.upper()
    elif draw < 0.20 * rate:
        text = text.title()
    draw = rng.random() / rate
    if draw < 0.08:
        first, last = _name(rng)
        text = f"{first.title()} {last.title()} <{text}>"
    elif draw < 0.10:
        first, last = _name(rng)
        text = f'"{last.title()}, {first.title()}" <{text}>'
    elif draw < 0.11:
        text = f"=?utf-8?q?J=C3=BCrgen_{rng.choice(LAST_NAMES).title()}?= <{text}>"
    elif draw < 0.13:
        text = f"mailto:{text}"
    elif draw < 0.15:
        text = rng.choice((f"<{text}>", f"{text},", f"'{text}'", f"{text};", f"{text}."))
    return text


def invalid_line(rng: random.Random, domains: tuple[str, ...]) -> str:
    first, last = _name(rng)
    domain = rng.choice(domains)
    return rng.choice(
        (
            "not-an-address",
            f"{first} {last}",
            f"{first}.{last} at {domain.replace('.', ' dot ')}",
            f"{first}.{last}@",
            f"@{domain}",
            f"{first}..{last}@{domain}",
            f"{first}@{domain.split('.')[0]}",
            f"{first} {last}@{domain}",
            f"{first}@@{domain}",
            f"{first}@-{domain}",
        )
    )


def password(rng: random.Random) -> str:
    if rng.random() < 0.3:
        return rng.choice(PASSWORDS)
    return "".join(rng.choices(CHARSET, k=rng.randint(6, 14)))


def generate_leak(
    directory: Path, sizes: dict[str, set[int]], accounts: list[str], rng: random.Random
) -> LeakSet:
    """Write every format up to its largest size in one pass; cut the smaller sizes as byte
    prefixes of the largest file."""
    leaks = LeakSet()
    tops = {fmt: max(ns) for fmt, ns in sizes.items()}
    longest = max(tops.values())
    files = {fmt: (directory / f"leak-{fmt}-{tops[fmt]}.txt").open("wb") for fmt in tops}
    offsets: dict[tuple[str, int], int] = {}
    pending: dict[str, list[str]] = {fmt: [] for fmt in tops}
    if "csv" in files:
        files["csv"].write(b"id,email,username,password\n")
    cut_at = {n for ns in sizes.values() for n in ns}
    csv_text = io.StringIO()
    csv_writer = csv.writer(csv_text, lineterminator="\n")
    dumps = json.JSONEncoder(ensure_ascii=False).encode
    addresses = leak_addresses(rng, accounts, leaks.kinds)
    try:
        for n in range(1, longest + 1):
            address = next(addresses)
            secret = password(rng)
            for fmt, buffer in pending.items():
                if n > tops[fmt]:
                    continue
                if fmt == "lines":
                    buffer.append(f"{address}\n")
                elif fmt == "combo":
                    buffer.append(f"{address}:{secret}\n")
                elif fmt == "jsonl":
                    buffer.append(dumps({"id": n, "email": address, "password": secret}) + "\n")
                else:
                    csv_writer.writerow((n, address, f"user{n}", secret))
            if n % WRITE_BLOCK == 0 or n == longest:
                if "csv" in pending and n <= tops["csv"]:
                    pending["csv"].append(csv_text.getvalue())
                    csv_text.seek(0)
                    csv_text.truncate()
                for fmt, buffer in pending.items():
                    if buffer:
                        files[fmt].write("".join(buffer).encode("utf-8"))
                        buffer.clear()
                    if n in cut_at and n in sizes[fmt]:
                        offsets[(fmt, n)] = files[fmt].tell()
    finally:
        for handle in files.values():
            handle.close()
    for (fmt, n), offset in offsets.items():
        full = directory / f"leak-{fmt}-{tops[fmt]}.txt"
        if n == tops[fmt]:
            leaks.paths[(fmt, n)] = full
            continue
        prefix = directory / f"leak-{fmt}-{n}.txt"
        with full.open("rb") as source, prefix.open("wb") as target:
            remaining = offset
            while remaining:
                block = source.read(min(remaining, 1 << 22))
                target.write(block)
                remaining -= len(block)
        leaks.paths[(fmt, n)] = prefix
    return leaks


# --- reference figures -----------------------------------------------------------------------


def baseline(path: Path) -> float:
    """Lines/s of the least work any ingest must do: read, strip, lowercase, keyed hash."""
    key = hashlib.sha256(HASH_KEY.encode()).digest()  # 32 bytes
    blake2b = hashlib.blake2b
    lines = 0
    started = time.perf_counter()
    with path.open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            blake2b(line.strip().lower().encode(), key=key, digest_size=16).digest()
            lines += 1
    return lines / (time.perf_counter() - started)


def argon2_cost() -> float:
    """Milliseconds per leaked-password hash, as the ingest computes it."""
    hash_leaked_password("warm-up")
    started = time.perf_counter()
    for n in range(50):
        hash_leaked_password(f"password-{n}")
    return (time.perf_counter() - started) / 50 * 1000


def enqueue_support() -> str:
    """Say whether this tree's ``leakguard ingest`` has --enqueue (and a worker command)."""
    ingest_help = subprocess.run(
        [str(LEAKGUARD), "ingest", "--help"], capture_output=True, text=True, check=False
    ).stdout
    if "--enqueue" not in ingest_help:
        return "not in this tree (`leakguard ingest --help` has no --enqueue); not measured"
    top_help = subprocess.run(
        [str(LEAKGUARD), "--help"], capture_output=True, text=True, check=False
    ).stdout
    if not any(line.split()[:1] == ["worker"] for line in top_help.splitlines()):
        return "--enqueue exists but no `leakguard worker` command; not measured"
    return "available"


# --- running ---------------------------------------------------------------------------------


def bench_backend(
    backend: str,
    directory: Path,
    accounts_csv: Path,
    leaks: LeakSet,
    runs: list[tuple[str, int]],
    results: dict[tuple[str, str, int], Run],
    base: float,
    args: argparse.Namespace,
    *,
    profile: bool,
    enqueue: bool,
) -> None:
    try:  # created inside: a Ctrl-C while it is created still drops it
        if backend == "sqlite":
            url = f"sqlite:///{directory / 'bench.sqlite3'}"
        else:
            url = create_pg_database(PG_DATABASE)
        env = child_env(url, directory / f"instance-{backend}", HASH_KEY)
        upgrade = run_child(["db", "upgrade"], env)
        imported = run_child(["accounts", "import", str(accounts_csv), "--json"], env)
        report = imported.report
        print(
            f"\n{backend}: accounts import {report['rows']:,} rows ({report['created']:,} "
            f"created, {report['invalid']:,} invalid) in {imported.wall:.1f} s = "
            f"{report['rows'] / imported.wall:,.0f} rows/s, peak RSS {imported.peak_rss_mb:.0f} "
            f"MiB, others busy {imported.others:.2f} cores; `db upgrade` alone: peak RSS "
            f"{upgrade.peak_rss_mb:.0f} MiB (the floor of any leakguard command)"
        )
        analyze(backend, url)
        if runs:
            print(HEADER)
            print("-" * len(HEADER))
        for fmt, lines in runs:
            reset_leaks(backend, url)
            command = ["ingest", str(leaks.paths[(fmt, lines)]), "--leak", f"bench-{fmt}"]
            command += ["--format", fmt, "--json"]
            if args.chunk_records:
                command += ["--chunk-records", str(args.chunk_records)]
            run = run_child(command, env)
            results[(backend, fmt, lines)] = run
            lines_run = results.get((backend, "lines", lines))
            print_run(backend, fmt, lines, run, base, lines_run)
        if enqueue and any(fmt == "lines" for fmt, _ in runs):
            size = max(n for f, n in leaks.paths if f == "lines")
            bench_enqueue(backend, url, leaks.paths[("lines", size)], size, env, results, base)
        if profile:
            size = min(n for f, n in leaks.paths if f == "lines")
            profile_ingest(directory, leaks.paths[("lines", size)], env, backend, url, args)
            if backend == "postgres":  # psycopg's calls, timed one by one
                print_statements(leaks.paths[("lines", size)], env, backend, url)
            print_stages({f: path for (f, n), path in leaks.paths.items() if n == size})
    finally:
        if backend == "postgres":
            drop_pg_database(PG_DATABASE)


def run_child(
    args: list[str],
    env: dict[str, str],
    program: list[str] | None = None,
    *,
    parallel: int = 1,
    check: bool = True,
) -> Run:
    """Run ``leakguard ARGS`` (``parallel`` copies at once) and return their figures.

    CPU seconds are summed over the copies, peak RSS is the largest one's, the report is
    the first copy's JSON. A failure ends the benchmark, or with ``check=False`` comes back
    as ``{"error": ...}`` in the report.
    """
    command = [*(program or []), str(LEAKGUARD), *args]
    with ExitStack() as stack:
        outputs = [
            (
                stack.enter_context(tempfile.TemporaryFile()),
                stack.enter_context(tempfile.TemporaryFile()),
            )
            for _ in range(parallel)
        ]
        usages = [stack.enter_context(tempfile.NamedTemporaryFile()) for _ in range(parallel)]
        before = Usage.now()
        children = [
            start(
                [sys.executable, "-c", RUSAGE_WRAPPER, usage.name, *command],
                env=env,
                stdout=out,
                stderr=err,
            )
            for (out, err), usage in zip(outputs, usages, strict=True)
        ]
        cpu = peak_kib = 0.0
        failures: list[str] = []
        for child, usage in zip(children, usages, strict=True):
            child.wait()
            usage.seek(0)
            figures = usage.read().split()
            if len(figures) == 2:
                peak_kib = max(peak_kib, float(figures[0]))
                cpu += float(figures[1])
        after = Usage.now()
        texts = []
        for child, (out, err) in zip(children, outputs, strict=True):
            out.seek(0)
            err.seek(0)
            texts.append(out.read().decode(errors="replace"))
            if child.returncode != 0:
                tail = err.read().decode(errors="replace").strip().splitlines()[-3:]
                failures.append(f"exit {child.returncode}: {' | '.join(tail)}")
    wall = after.at - before.at
    pg_cpu = after.postgres - before.postgres
    others = max(0.0, (after.busy - before.busy - cpu - pg_cpu) / wall)
    if failures:
        message = f"leakguard {' '.join(args)} failed: {failures[0]}"
        if check:
            sys.exit(message)
        return Run(wall, cpu, peak_kib / 1024, pg_cpu, others, {"error": message})
    # The JSON summary is the last line that starts with "{" (py-spy may write around it).
    found = [line for line in texts[0].splitlines() if line.startswith("{")]
    report = json.loads(found[-1]) if "--json" in args and found else {}
    return Run(wall, cpu, peak_kib / 1024, pg_cpu, others, report)


HEADER = (
    f"{'backend':<8} {'format':<6} {'file':>6} {'lines':>10} {'valid':>10} {'dup':>8} "
    f"{'matched':>7} {'notices':>7} {'wall s':>7} {'lines/s':>8} {'vs base':>7} "
    f"{'vs lines':>8} {'RSS MiB':>7} {'cpu s':>6} {'pg cpu':>6} {'others':>6}"
)


def _short(lines: int) -> str:
    if lines % 1_000_000 == 0:
        return f"{lines // 1_000_000}M"
    if lines % 1000 == 0:
        return f"{lines // 1000}k"
    return str(lines)


def print_run(
    backend: str, fmt: str, size: int, run: Run, base: float, lines_run: Run | None
) -> None:
    report = run.report
    rate = run_rate(run)
    versus_lines = ""
    if fmt != "lines" and lines_run is not None:
        versus_lines = f"{rate / run_rate(lines_run):.0%}"
    if "format" in report and report["format"] != fmt:
        print(f"  note: detected as {report.get('format')}")
    print(
        f"{backend:<8} {fmt:<6} {_short(size):>6} {report['lines']:>10,} {report['valid']:>10,} "
        f"{report['duplicates']:>8,} {report['matched']:>7,} {report['notices']:>7,} "
        f"{run.wall:>7.1f} {rate:>8,.0f} {rate / base:>7.0%} {versus_lines:>8} "
        f"{run.peak_rss_mb:>7.0f} {run.cpu:>6.1f} {run.pg_cpu:>6.1f} {run.others:>6.2f}"
    )


def run_rate(run: Run) -> float:
    return float(run.report["lines"]) / run.wall


def print_summary(results: dict[tuple[str, str, int], Run], base: float, argon2_ms: float) -> None:
    print(
        "\nsummary (lines/s on wall time of the whole child; 'vs base' against the reference "
        "baseline):"
    )
    for (backend, fmt, size), run in sorted(results.items()):
        rate = run_rate(run)
        lines_run = results.get((backend, "lines", size))
        line = (
            f"  {backend:<8} {fmt:<6} {_short(size):>4}: {rate:>9,.0f} lines/s = "
            f"{rate / base:>4.0%} of baseline"
        )
        if fmt != "lines" and lines_run is not None:
            line += f", {rate / run_rate(lines_run):>4.0%} of plain lines"
        line += f", peak RSS {run.peak_rss_mb:.0f} MiB, {run.cpu / run.wall:.2f} cores in the child"
        if fmt in ("csv", "combo", "jsonl"):
            estimate = run.report["matched"] * argon2_ms / 1000
            line += f", argon2 ~{estimate:.0f} CPU s"
        print(line)
    print(
        "\ncolumns: 'dup' lines whose key the leak already had; 'cpu s' user+system of the "
        "ingest process; 'pg cpu' every PostgreSQL process in that time (other users of the "
        "server included); 'others' cores kept busy by anything else, i.e. the load from other "
        "engineers; 'argon2 ~' matched accounts x one argon2id hash, the CPU that credential "
        "formats spend on leaked passwords. The leak tables are emptied before each run."
    )


# Issue 18's targets, each read against a figure of the same run.
TARGET_LINES = {"postgres": 0.25, "sqlite": 0.15}  # plain lines, one process, of the bare loop
TARGET_PG_US_PER_LINE = 3.0
TARGET_FORMAT_OF_LINES = 0.60  # csv, combo and jsonl, of plain lines at the same size
TARGET_RSS_MB = 150  # every format, decimal megabytes
TARGET_TWO_WORKERS = 1.6  # --enqueue with 2 workers, of one process


def _verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def print_targets(results: dict[tuple[str, str, int], Run], base: float) -> None:
    """Print each target of issue 18 with the figure and ratio this run measured."""
    print(f"\ntargets (issue 18), against the bare loop of this run ({base:,.0f} lines/s):")
    for backend in sorted({backend for backend, _, _ in results}):
        sizes = [n for b, f, n in results if b == backend and f == "lines"]
        size = max(sizes, default=0)
        one = results.get((backend, "lines", size))
        if one is not None:
            print_target_one(backend, size, one, base)
        else:
            print(f"  1. {backend}: plain lines not run (--formats), no figure")
        for (b, fmt, n), run in sorted(results.items()):
            if b != backend:
                continue
            rss_mb = run.peak_rss_mb * MB / 1e6
            line = (
                f"  2. {backend} {fmt} {_short(n)}: peak RSS {rss_mb:.0f} MB "
                f"(target <= {TARGET_RSS_MB} MB: {_verdict(rss_mb <= TARGET_RSS_MB)})"
            )
            same = results.get((backend, "lines", n))
            if fmt in ("csv", "combo", "jsonl") and same is not None:
                of_lines = run_rate(run) / run_rate(same)
                line += (
                    f"; {of_lines:.0%} of plain lines (target >= {TARGET_FORMAT_OF_LINES:.0%}: "
                    f"{_verdict(of_lines >= TARGET_FORMAT_OF_LINES)}), "
                    f"{run_rate(run) / base:.1%} of the bare loop"
                )
            print(line)
        if one is None:
            continue
        scaled = {
            workers: results[(backend, f"lines+{workers}w", size)]
            for workers in WORKER_COUNTS
            if (backend, f"lines+{workers}w", size) in results
        }
        for workers, run in scaled.items():
            line = (
                f"  3. {backend} --enqueue, {workers} worker(s) pinned to {workers} core(s): "
                f"{run_rate(run):,.0f} lines/s = {run_rate(run) / base:.1%} of the bare loop, "
                f"{run_rate(run) / run_rate(one):.2f}x one process"
            )
            if workers == 2:
                x = run_rate(run) / run_rate(one)
                line += f" (target >= {TARGET_TWO_WORKERS}x: {_verdict(x >= TARGET_TWO_WORKERS)})"
                if 1 in scaled:
                    line += f", {run_rate(run) / run_rate(scaled[1]):.2f}x one pinned worker"
            print(line)


def print_target_one(backend: str, size: int, one: Run, base: float) -> None:
    """Target 1: plain lines in one process, of the bare loop (and PostgreSQL's CPU)."""
    lines = one.report["lines"]
    ratio = run_rate(one) / base
    goal = TARGET_LINES[backend]
    line = (
        f"  1. {backend} plain lines {_short(size)}, one process: {run_rate(one):,.0f} "
        f"lines/s = {ratio:.1%} of the bare loop (target >= {goal:.0%}: "
        f"{_verdict(ratio >= goal)}); CPU per line ours {one.cpu / lines * 1e6:.1f} us"
    )
    if backend == "postgres":
        pg_us = one.pg_cpu / lines * 1e6
        line += (
            f", PostgreSQL {pg_us:.1f} us (target <= {TARGET_PG_US_PER_LINE:.0f} us: "
            f"{_verdict(pg_us <= TARGET_PG_US_PER_LINE)}; includes other users of the server)"
        )
    print(line)


def bench_enqueue(
    backend: str,
    url: str,
    path: Path,
    size: int,
    env: dict[str, str],
    results: dict[tuple[str, str, int], Run],
    base: float,
) -> None:
    """``ingest --enqueue`` then burst workers, once per count in WORKER_COUNTS, on a Redis
    database of this run's own (given back empty)."""
    try:
        with redis_database(REDIS_URL) as redis_url:
            for workers in WORKER_COUNTS:
                queued = {**env, "LEAKGUARD_REDIS_URL": redis_url}
                bench_enqueue_once(backend, url, path, size, queued, results, base, workers)
    except RedisUnavailable as exc:
        print(f"  --enqueue: {exc}; not measured")


def bench_enqueue_once(
    backend: str,
    url: str,
    path: Path,
    size: int,
    env: dict[str, str],
    results: dict[tuple[str, str, int], Run],
    base: float,
    workers: int,
) -> None:
    """``ingest --enqueue`` and then ``workers`` burst workers pinned to as many cores
    (``taskset -c 0..workers-1``), on a real Redis; one figure.

    Written against the interface DESIGN.md announces (``--enqueue`` cuts the file into
    rq jobs, ``leakguard worker`` runs them); the counters come from ``leaks show``.
    """
    redis = Redis.from_url(env["LEAKGUARD_REDIS_URL"], socket_connect_timeout=5)
    try:
        reset_leaks(backend, url)
        slug = "bench-lines-enqueue"
        command = ["ingest", str(path), "--leak", slug, "--format", "lines", "--enqueue"]
        # Enqueue and return, then burst workers: workers started with the submit could find
        # the queue still empty (it fingerprints the file first) and stop at once.
        submit = run_child([*command, "--no-wait", "--json"], env, check=False)
        work = submit
        if "error" not in submit.report:
            # The warnings wait in the outbox, as a one-process ingest leaves them: a burst
            # worker relays what its jobs queued and would deliver them too, and the figure
            # is the ingest's.
            run_child(["notices", "pause", "--leak", slug], env, check=False)
            worker = ["worker", "--burst", "--queue", "default"]
            cores = ",".join(str(core) for core in range(workers))
            taskset = shutil.which("taskset")  # a full path: the rusage wrapper uses execv
            pin = [taskset, "-c", cores] if taskset else []
            work = run_child(worker, env, pin, parallel=workers, check=False)
        if "error" in work.report:
            print(f"{backend:<8} enqueue: {work.report['error']}")
            return
        counters = run_child(["leaks", "show", slug, "--json"], env, check=False).report
    finally:
        stale = list(redis.scan_iter("rq:*"))  # this count's queue, job and worker keys
        if stale:
            redis.delete(*stale)
        redis.close()
    wall = submit.wall + work.wall
    run = Run(
        wall,
        submit.cpu + work.cpu,
        max(submit.peak_rss_mb, work.peak_rss_mb),
        submit.pg_cpu + work.pg_cpu,
        (submit.others * submit.wall + work.others * work.wall) / wall,
        {
            key: counters.get(key, 0)
            for key in ("lines", "valid", "duplicates", "matched", "notices")
        },
    )
    results[(backend, f"lines+{workers}w", size)] = run
    print(
        f"  --enqueue ({submit.report.get('parts')} parts): submit {submit.wall:.1f} s, then "
        f"{workers} burst workers on {workers} pinned core(s) {work.wall:.1f} s; RSS is the "
        "largest worker or job process"
    )
    print_run(backend, f"lines+{workers}w", size, run, base, results.get((backend, "lines", size)))


def analyze(backend: str, url: str) -> None:
    """Give the planner statistics for the freshly imported accounts, as production has."""
    if backend == "sqlite":
        with sqlite3.connect(url.removeprefix("sqlite:///")) as connection:
            connection.execute("ANALYZE")
        return
    with psycopg.connect(pg_url(PG_DATABASE), autocommit=True) as pg:
        pg.execute("VACUUM ANALYZE")


def reset_leaks(backend: str, url: str) -> None:
    """Empty every table but the accounts (and keys, and the schema version), so that every
    run starts from the same state: accounts imported, no leak."""
    if backend == "sqlite":
        connection = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            names = connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
            for (table,) in names.fetchall():
                if table not in KEPT_TABLES:
                    connection.execute(f'DELETE FROM "{table}"')
            connection.commit()
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            connection.close()
        return
    with psycopg.connect(pg_url(PG_DATABASE), autocommit=True) as pg:
        rows = pg.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        tables = [f'"{table}"' for (table,) in rows.fetchall() if table not in KEPT_TABLES]
        if tables:
            pg.execute(f"TRUNCATE {', '.join(tables)}")
        pg.execute("CHECKPOINT")


def _busy_seconds() -> float:
    with open("/proc/stat") as handle:
        fields = [int(x) for x in handle.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / CLOCK_TICKS


def _postgres_seconds() -> float:
    """CPU seconds of every postgres process, with the exited backends the postmaster reaped."""
    ticks = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as handle:
                stat = handle.read()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        if name != "postgres":
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        ticks += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return ticks / CLOCK_TICKS


# --- profile ---------------------------------------------------------------------------------


def profile_ingest(
    directory: Path,
    path: Path,
    env: dict[str, str],
    backend: str,
    url: str,
    args: argparse.Namespace,
) -> None:
    """Ingest ``path`` under py-spy, on-CPU then with idle samples; print the top functions."""
    lines = sum(1 for _ in path.open("rb"))
    for mode, extra in (("on-CPU", []), ("wall (idle samples too)", ["--idle"])):
        reset_leaks(backend, url)
        out = directory / f"profile-{len(extra)}.txt"
        spy = [str(PY_SPY), "record", "--format", "raw", "--threads", *extra]
        spy += ["--rate", str(args.profile_rate), "-o", str(out), "--"]
        command = ["ingest", str(path), "--leak", "bench-profile", "--format", "lines", "--json"]
        run = run_child(command, env, program=spy)
        print(
            f"\nprofile, {mode}: {backend}, lines, {lines:,} lines, py-spy at "
            f"{args.profile_rate}/s; wall {run.wall:.1f} s under py-spy "
            f"({lines / run.wall:,.0f} lines/s), pg cpu {run.pg_cpu:.1f} s, "
            f"others {run.others:.2f} cores"
        )
        stacks = read_raw(out)
        print_profile(stacks, idle=bool(extra))
        out.unlink()


def print_statements(path: Path, env: dict[str, str], backend: str, url: str) -> None:
    """Ingest ``path`` in a child that times every database call; print them by total time."""
    reset_leaks(backend, url)
    child = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--sql-profile", str(path)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    found = [line for line in child.stdout.splitlines() if line.startswith(SQL_MARK)]
    if child.returncode != 0 or not found:
        print(f"\nstatement profile failed: {child.stderr.strip().splitlines()[-3:]}")
        return
    figures = json.loads(found[-1].removeprefix(SQL_MARK))
    wall, lines = figures["wall"], figures["lines"]
    statements = sorted(figures["statements"].items(), key=lambda item: -item[1][1])
    total = sum(seconds for _, (_, seconds, _) in statements)
    server = sum(cpu for _, (_, _, cpu) in statements)
    print(
        f"\ndatabase calls of one ingest ({backend}, lines, {lines:,} lines, in-process, "
        f"{wall:.1f} s wall): {total:.1f} s in the driver, on the writer thread unless noted; "
        f"the server backend's own CPU {server:.1f} s = {server / lines * 1e6:.1f} us per line "
        "(its /proc entry: other users of the server not counted)"
    )
    for key, (calls, seconds, cpu) in statements[:14]:
        print(
            f"  {seconds:>6.2f} s {seconds / wall:>5.0%} of wall {calls:>5} calls, server CPU "
            f"{cpu / lines * 1e6:>5.2f} us/line  {key}"
        )


SQL_MARK = "SQLPROFILE "


def sql_profile_child(path: Path) -> None:
    """Child side of ``print_statements``: run the ingest with psycopg's calls timed."""
    import threading
    from collections.abc import Callable
    from contextlib import contextmanager

    from jobs.ingest.pipeline import ingest_leak
    from jobs.reader.stream import LeakFormat
    from service.app import create_app

    totals: dict[str, list[float]] = {}
    lock = threading.Lock()

    tick = os.sysconf("SC_CLK_TCK")

    def server_cpu(connection: Any) -> float:
        """CPU seconds of the connection's server backend so far (its /proc entry)."""
        try:
            with open(f"/proc/{connection.info.backend_pid}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / tick

    def record(label: str, query: object, seconds: float, server: float = 0.0) -> None:
        text = query.decode() if isinstance(query, bytes) else str(query)
        key = f"{label} {' '.join(text.split())[:90]}"
        with lock:
            entry = totals.setdefault(key, [0, 0.0, 0.0])
            entry[0] += 1
            entry[1] += seconds
            entry[2] += server

    def timed(label: str, method: Callable[..., Any]) -> Callable[..., Any]:
        def call(self: Any, query: object, *args: Any, **kwargs: Any) -> Any:
            started, server = time.perf_counter(), server_cpu(self.connection)
            try:
                return method(self, query, *args, **kwargs)
            finally:
                spent = server_cpu(self.connection) - server
                record(label, query, time.perf_counter() - started, spent)

        return call

    cursor: Any = psycopg.Cursor
    cursor.execute = timed("execute", cursor.execute)
    cursor.executemany = timed("executemany", cursor.executemany)
    original_copy = cursor.copy

    @contextmanager
    def copy(self: Any, statement: object, *args: Any, **kwargs: Any) -> Iterator[Any]:
        started, server = time.perf_counter(), server_cpu(self.connection)
        with original_copy(self, statement, *args, **kwargs) as block:
            yield block
        spent = server_cpu(self.connection) - server
        record("copy", statement, time.perf_counter() - started, spent)

    cursor.copy = copy
    original_fetchall = cursor.fetchall

    def fetchall(self: Any) -> Any:
        started = time.perf_counter()
        try:
            return original_fetchall(self)
        finally:
            record("fetchall", "(rows of the statement before)", time.perf_counter() - started)

    cursor.fetchall = fetchall
    connection: Any = psycopg.Connection
    original_commit = connection.commit

    def commit(self: Any) -> None:
        started, server = time.perf_counter(), server_cpu(self)
        try:
            original_commit(self)
        finally:
            record("commit", "", time.perf_counter() - started, server_cpu(self) - server)

    connection.commit = commit
    # The app's statement timeout bounds HTTP requests only: an ingest (a CLI command) is
    # never bounded by it, and the merge of a big file under load took longer than 5 s.
    os.environ["LEAKGUARD_DB_REQUEST_TIMEOUT_SECONDS"] = "0"
    app = create_app()
    with app.app_context():
        runtime = app.extensions["leakguard"]
        started = time.perf_counter()
        report = ingest_leak(runtime, path, slug="bench-sql", fmt=LeakFormat.LINES)
        wall = time.perf_counter() - started
    figures = {"wall": wall, "lines": report.run.lines, "statements": totals}
    print(SQL_MARK + json.dumps(figures))


def print_stages(paths: dict[str, Path]) -> None:
    """In this process, no database: the reader alone per format, then the lines file through
    the reader, ``canonicalize_email`` and the keyed hash, the CPU part of ``read_chunks``."""
    from jobs.reader.stream import LeakFormat, open_leak
    from service.addresses import (
        CanonicalRules,
        EmailHasher,
        InvalidAddress,
        canonicalize_email,
        clean_address,
    )
    from service.addresses import canonical as emails
    from service.addresses.canonical import _canonicalize_fast as fast

    def cold() -> None:
        """Empty the module's memo caches (if any), so every timing starts cold."""
        for value in vars(emails).values():
            if callable(getattr(value, "cache_clear", None)):
                value.cache_clear()

    print("\nstages in one thread, no database (lines/s and microseconds per line):")
    for fmt, path in sorted(paths.items()):
        started = time.perf_counter()
        with open_leak(path, LeakFormat(fmt)) as reader:
            count = sum(1 for _ in reader.records())
        seconds = time.perf_counter() - started
        print(
            f"  reader alone, {fmt:<6} {count / seconds:>11,.0f} lines/s "
            f"{seconds / count * 1e6:>6.2f} us"
        )
    print_batched_stages(paths["lines"])
    path = paths["lines"]
    rules, hasher = CanonicalRules(), EmailHasher(HASH_KEY.encode())
    with open_leak(path, LeakFormat.LINES) as reader:
        candidates = [record.candidate for record in reader.records()]
    count = len(candidates)
    steps: list[tuple[str, float]] = []
    started = time.perf_counter()
    for text in candidates:
        if text is not None:
            clean_address(text)
    steps.append(("clean_address", time.perf_counter() - started))
    cold()
    started = time.perf_counter()
    results = [canonicalize_email(text, rules) for text in candidates if text is not None]
    steps.append(("canonicalize_email (whole)", time.perf_counter() - started))
    started = time.perf_counter()
    for result in results:
        if not isinstance(result, InvalidAddress):
            hasher.hash(result.address)
    steps.append(("EmailHasher.hash", time.perf_counter() - started))
    for name, seconds in steps:
        print(f"  {name:<28} {count / seconds:>11,.0f} lines/s {seconds / count * 1e6:>6.2f} us")
    declined = [
        text for text in candidates if text is not None and fast(clean_address(text), rules) is None
    ]
    slow = set(declined)
    taken = [text for text in candidates if text is not None and text not in slow]
    for name, group in (("fast path", taken), ("declined by the fast path", declined)):
        cold()
        started = time.perf_counter()
        for text in group:
            canonicalize_email(text, rules)
        seconds = time.perf_counter() - started
        print(
            f"  canonicalize_email, {name}: {len(group) / count:.2%} of records, "
            f"{seconds / max(1, len(group)) * 1e6:.1f} us each = "
            f"{seconds / count * 1e6:.2f} us per line (memo caches cold at the start)"
        )


def print_batched_stages(path: Path) -> None:
    """The ingest's own way through the lines file: ``batches()``, ``canonical_texts``,
    ``EmailHasher.hash_all``; CPU seconds (``time.process_time``), memo caches cold."""
    from jobs.reader.stream import LeakFormat, open_leak
    from service.addresses import CanonicalRules, EmailHasher, canonical_texts
    from service.addresses import canonical as emails

    for value in vars(emails).values():
        if callable(getattr(value, "cache_clear", None)):
            value.cache_clear()
    rules, hasher = CanonicalRules(), EmailHasher(HASH_KEY.encode())
    started = time.process_time()
    with open_leak(path, LeakFormat.LINES) as reader:
        batches = [
            [text for text in batch.candidates if text is not None] for batch in reader.batches()
        ]
    steps = [("batches() (ingest's reader)", time.process_time() - started)]
    count = sum(map(len, batches))
    started = time.process_time()
    found = [canonical_texts(texts, rules) for texts in batches]
    steps.append(("canonical_texts (batched)", time.process_time() - started))
    valid = [[address for address in addresses if address is not None] for addresses in found]
    started = time.process_time()
    for addresses in valid:
        hasher.hash_all(addresses)
    steps.append(("EmailHasher.hash_all", time.process_time() - started))
    for name, seconds in steps:
        rate = count / seconds
        print(f"  {name:<28} {rate:>11,.0f} lines/s {seconds / count * 1e6:>6.2f} us CPU")


def read_raw(path: Path) -> list[tuple[str, list[str], int]]:
    """Parse py-spy's raw output into (thread name, frames root first, samples)."""
    stacks = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        frames_text, _, count = line.rpartition(" ")
        if not frames_text or not count.isdigit():
            continue
        frames = frames_text.split(";")
        thread = "?"
        if frames[0].startswith("thread ("):
            thread = _thread_name(frames.pop(0))
        stacks.append((thread, [_function(frame) for frame in frames], int(count)))
    return stacks


def _thread_name(frame: str) -> str:
    name = frame.partition("): ")[2] or frame
    return name.rstrip("0123456789").rstrip("_") if name.startswith("ThreadPool") else name


def _function(frame: str) -> str:
    """'name (path:line)' -> 'name (short path)'."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rpartition(":")[0] or where.rstrip(")")
    for marker in ("site-packages/", "/work/main/"):
        if marker in where:
            where = where.split(marker, 1)[1]
            break
    else:
        if "/lib/python3" in where:
            where = where.split("/lib/python3", 1)[1].partition("/")[2]
    return f"{name} ({where})"


def print_profile(stacks: list[tuple[str, list[str], int]], *, idle: bool, top: int = 15) -> None:
    total = sum(count for _, _, count in stacks)
    if not total:
        print("  no samples")
        return
    threads: Counter[str] = Counter()
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    by_thread: dict[str, Counter[str]] = {}
    for thread, frames, count in stacks:
        threads[thread] += count
        if not frames:
            continue
        own[frames[-1]] += count
        by_thread.setdefault(thread, Counter())[frames[-1]] += count
        for function in set(frames):
            inclusive[function] += count
    print(
        f"  {total:,} samples; by thread: "
        + ", ".join(f"{name} {n / total:.0%}" for name, n in threads.most_common())
    )
    if idle:
        for thread, _ in threads.most_common(3):
            counts = by_thread.get(thread, Counter())
            part = sum(counts.values()) or 1
            print(f"  {thread}: top leaf functions (its share of this thread's samples)")
            for function, n in counts.most_common(8):
                print(f"    {n / part:>6.1%}  {function}")
        return
    print(f"  top {top} by self time (share of all samples)")
    for function, n in own.most_common(top):
        print(f"    {n / total:>6.1%}  {function}")
    print(f"  top {top + 5} by inclusive time")
    for function, n in inclusive.most_common(top + 5):
        print(f"    {n / total:>6.1%}  {function}")


if __name__ == "__main__":
    run_bench(main)
