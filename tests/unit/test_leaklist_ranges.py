"""Byte ranges of a leak file, read by parallel workers, cover every record exactly once."""

from __future__ import annotations

import gzip
import itertools
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobs.reader.stream import LeakFormat, open_leak

LINE_FORMATS = {
    "lines": lambda i: f"user{i}@example.com",
    "combo": lambda i: f"user{i}@example.com:pa:ss|{i}",
    "jsonl": lambda i: f'{{"Email": "u{i}@x.org", "pwd": "p{i}"}}',
    # several mailboxes on some lines: records, not lines, are what the ranges must cover
    "lines-several": lambda i: f"u{i}@x.org; Vee <v{i}@y.org>" if i % 3 else f"u{i}@x.org",
    "jsonl-several": lambda i: f'{{"emails": ["u{i}@x.org", "v{i}@y.org"], "pwd": "p{i}"}},',
}


# Lines above a CSV header: Excel's sep= line, a title with an address in it, a blank line,
# a date line with the delimiter in it.
PREAMBLES = {
    "csv": "",
    "csv-sep": "sep=;\r\n",
    "csv-preamble": "sep=;\r\nExport of admin@example.com\r\n\r\nExported;2024-01-02\r\n",
}


def write(path: Path, fmt: str, count: int, *, bom: bool, blank_every: int) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        if bom:
            handle.write("\ufeff")
        csv = fmt.startswith("csv")
        if csv:
            handle.write(PREAMBLES[fmt] + "name;email;password\r\n")
        elif fmt == "jsonl-several":
            handle.write("[\n")  # an array written one element per line
        for i in range(count):
            row = f"n{i};user{i}@example.com;p{i}" if csv else LINE_FORMATS[fmt](i)
            handle.write(row + ("\r\n" if csv else "\n"))
            if blank_every and i % blank_every == 0:
                handle.write("\n")


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    fmt=st.sampled_from([*LINE_FORMATS, *PREAMBLES]),
    count=st.integers(min_value=0, max_value=400),
    bom=st.booleans(),
    blank_every=st.integers(min_value=0, max_value=9),
    cuts=st.lists(st.floats(min_value=0, max_value=1), max_size=12),
)
def test_any_cut_into_ranges_reads_each_record_once_in_order(
    tmp_path: Path, fmt: str, count: int, bom: bool, blank_every: int, cuts: list[float]
) -> None:
    path = tmp_path / f"leak.{fmt}"
    write(path, fmt, count, bom=bom, blank_every=blank_every)
    fmt_asked = LeakFormat.CSV if fmt.startswith("csv") else LeakFormat(fmt.split("-")[0])
    with open_leak(path, fmt_asked) as reader:
        assert reader.splittable
        size = reader.source.size
        whole = [(r.candidate, r.password) for r in reader.records()]
        points = sorted({int(c * size) for c in cuts} - {0, size})
        ranges = list(zip([0, *points], [*points, size], strict=True))
        pieces = [
            (r.candidate, r.password) for rng in ranges for r in reader.records(byte_range=rng)
        ]
    assert pieces == whole
    if fmt.endswith("-several"):
        assert len(whole) == count + sum(1 for i in range(count) if i % 3 or "json" in fmt)
    if fmt.startswith("csv"):
        assert whole == [(f"user{i}@example.com", f"p{i}") for i in range(count)]


def test_a_compressed_file_is_one_range(tmp_path: Path) -> None:
    path = tmp_path / "leak.txt.gz"
    with gzip.open(path, "wt") as handle:
        handle.writelines(f"u{i}@example.com\n" for i in range(100))
    with open_leak(path) as reader:
        assert not reader.splittable
        assert reader.byte_ranges(8) == [(0, reader.source.size)]
        with pytest.raises(ValueError, match="byte ranges"):
            next(reader.records(byte_range=(0, 10)))


def test_byte_ranges_cover_the_file_without_gaps(tmp_path: Path) -> None:
    path = tmp_path / "leak.txt"
    write(path, "lines", 1000, bom=False, blank_every=0)
    with open_leak(path) as reader:
        ranges = reader.byte_ranges(7)
    assert ranges[0][0] == 0
    assert ranges[-1][1] == path.stat().st_size
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
    assert len(ranges) == 7
