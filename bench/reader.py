"""Benchmark the leak file reader alone (jobs.reader); prints figures, never pass/fail.

Generates realistic leak files (varied names and domains, case, +tags, display names, a few
broken lines; passwords for combo, CSV and JSON lines) in the formats lines, csv, combo and
jsonl, plain and gzip, then reads each one with ``open_leak(...).records()`` in a fresh
child process, so every figure has its own peak RSS (``resource.getrusage`` in the child).
Nothing is canonicalized or hashed: this is the reader's own cost. Besides wall seconds, the
child's CPU µs per line for ``records()`` (a LeakRecord each) and for ``batches()`` (the
ingest's way, parallel lists), each the best of two passes: on a shared machine CPU time is
the figure to compare.

    .venv/bin/python bench/reader.py [--lines N] [--formats lines,csv,combo,jsonl] [--no-gzip]
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from common import DOMAINS
from options import at_least, make_parser, names_of
from owned import run_bench

from jobs.reader.stream import LeakFormat, open_leak
from jobs.sample import FIRST_NAMES, LAST_NAMES

FORMATS = ("lines", "csv", "combo", "jsonl")
PASSWORDS = ("123456", "password", "qwerty", "iloveyou", "letmein", "dragon", "monkey")
BROKEN_EVERY = 1000


def addresses(rng: random.Random) -> Iterator[str]:
    """Yield leak-style addresses forever: mostly bare, some cased, tagged or broken."""
    names = [d for d, _ in DOMAINS]
    weights = [w for _, w in DOMAINS]
    count = 0
    while True:
        count += 1
        if count % BROKEN_EVERY == 0:
            yield "not-an-address"
            continue
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        domain = rng.choices(names, weights)[0]
        local = rng.choice(
            (f"{first}.{last}", f"{first}{last}{rng.randrange(100)}", f"{first[0]}{last}")
        )
        if rng.random() < 0.05:
            local += "+news"
        address = f"{local}@{domain}"
        yield address.upper() if rng.random() < 0.05 else address


def passwords(rng: random.Random) -> Iterator[str]:
    while True:
        if rng.random() < 0.3:
            yield rng.choice(PASSWORDS)
        else:
            yield "".join(
                rng.choices("abcdefghijkmnpqrstuvwxyz0123456789:!|", k=rng.randint(6, 14))
            )


def write_leak(path: Path, fmt: str, count: int, seed: int) -> None:
    rng = random.Random(seed)
    opener = gzip.open if path.suffix == ".gz" else open
    pairs = zip(addresses(rng), passwords(rng), range(count), strict=False)
    with opener(path, "wt", encoding="utf-8", newline="") as handle:
        if fmt == "lines":
            handle.writelines(f"{address}\n" for address, _, _ in pairs)
        elif fmt == "combo":
            handle.writelines(f"{address}:{password}\n" for address, password, _ in pairs)
        elif fmt == "jsonl":
            handle.writelines(
                json.dumps({"id": n, "email": address, "password": password}) + "\n"
                for address, password, n in pairs
            )
        else:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(["id", "username", "Email Address", "password", "signup"])
            writer.writerows(
                [n, address.split("@")[0], address, password, "2019-11-01"]
                for address, password, n in pairs
            )


def measure(path: Path) -> None:
    """Child side: read every record of ``path`` and print one JSON line of figures."""
    started = time.perf_counter()
    records = with_candidate = 0
    with open_leak(path) as reader:
        for record in reader.records():
            records += 1
            if record.candidate is not None:
                with_candidate += 1
        fmt = reader.source.format.value
    seconds = time.perf_counter() - started
    records_cpu = batches_cpu = float("inf")
    for _ in range(2):
        with open_leak(path) as reader:
            start = time.process_time()
            for _record in reader.records():
                pass
            records_cpu = min(records_cpu, time.process_time() - start)
            if hasattr(reader, "batches"):  # the reader of before batches had none
                start = time.process_time()
                for _batch in reader.batches():
                    pass
                batches_cpu = min(batches_cpu, time.process_time() - start)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "format": fmt,
                "records": records,
                "with_candidate": with_candidate,
                "seconds": seconds,
                "records_us": 1e6 * records_cpu / max(records, 1),
                "batches_us": 1e6 * batches_cpu / max(records, 1) if batches_cpu < 1e9 else None,
                "peak_rss_mb": peak_kib / 1024,
            }
        )
    )


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("--lines", type=at_least(1), default=2_000_000)
    parser.add_argument("--formats", type=names_of(FORMATS), default=",".join(FORMATS))
    parser.add_argument("--no-gzip", action="store_true")
    parser.add_argument("--seed", type=int, default=2019)
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure is not None:
        measure(args.measure)
        return
    formats: list[str] = args.formats
    suffixes = [""] if args.no_gzip else ["", ".gz"]

    print(f"reader benchmark: {args.lines:,} lines per file, Python {sys.version.split()[0]}")
    print(
        f"{'file':<18} {'format':<7} {'MB':>7} {'records':>10} {'s':>7} {'lines/s':>11} "
        f"{'RSS MB':>7} {'records() cpu µs':>16} {'batches() cpu µs':>16}"
    )
    with tempfile.TemporaryDirectory(prefix="leakguard-reader-") as tmp:
        for fmt in formats:
            for suffix in suffixes:
                path = Path(tmp) / f"leak-{fmt}.txt{suffix}"
                write_leak(path, fmt, args.lines, args.seed)
                child = subprocess.run(
                    [sys.executable, __file__, "--measure", str(path)],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                figures = json.loads(child.stdout)
                if figures["format"] != LeakFormat(fmt):
                    print(f"  note: {path.name} was detected as {figures['format']}")
                rate = args.lines / figures["seconds"]
                size_mb = path.stat().st_size / 1e6
                print(
                    f"{path.name:<18} {figures['format']:<7} {size_mb:>7.1f} "
                    f"{figures['records']:>10,} {figures['seconds']:>7.2f} {rate:>11,.0f} "
                    f"{figures['peak_rss_mb']:>7.1f} {figures['records_us']:>16.2f} "
                    + (
                        f"{figures['batches_us']:>16.2f}"
                        if figures["batches_us"] is not None
                        else f"{'-':>16}"
                    )
                )
                path.unlink()


if __name__ == "__main__":
    run_bench(main)
