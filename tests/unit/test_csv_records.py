"""Cutting a CSV into records (``jobs.reader.csv_records``): a stray quote costs its own line,
a quoted field with a line break inside stays one record, and the quote check agrees with
the csv module."""

from __future__ import annotations

import csv

from hypothesis import given, settings
from hypothesis import strategies as st

from jobs.reader.csv_records import MAX_RECORD_LINES, CsvShape, cut_records

DIALECTS = st.sampled_from(
    [
        {},
        {"delimiter": ";"},
        {"delimiter": "\t"},
        {"skipinitialspace": True},
        {"quotechar": "'"},
    ]
)
TEXT = st.text(alphabet="a,;\t'\" ", max_size=12)


def ends_inside_quotes(text: str, options: dict[str, object]) -> bool:
    """Whether the csv module, after ``text``, reads on into the next line."""
    reader = csv.reader([text, "next"], **options)  # type: ignore[call-overload]
    next(reader)
    return bool(reader.line_num > 1)


@given(text=TEXT, ending=st.sampled_from(["", "\n", "\r\n", "\r"]), options=DIALECTS)
@settings(max_examples=3000, deadline=None)
def test_a_line_is_closed_exactly_when_the_csv_module_ends_its_record_there(
    text: str, ending: str, options: dict[str, object]
) -> None:
    shape = CsvShape.of("excel", **options)
    assert shape.closed(text + ending) is not ends_inside_quotes(text, options)


def records(lines: list[str], *, columns: int, size: int = 3, **options: object) -> list[tuple]:
    shape = CsvShape.of("excel", **options)
    batches = [lines[start : start + size] for start in range(0, len(lines), size)]
    out = []
    for texts, starts in cut_records(batches, shape, columns=columns, first_line=2):
        assert len(texts) == len(starts)
        for text, line in zip(texts, starts, strict=True):
            (row,) = csv.reader([text], shape.dialect)
            out.append((line, row))
    return out


@given(
    lines=st.lists(st.text(alphabet='a,"  ', max_size=6), min_size=1, max_size=15),
    size=st.integers(1, 6),
)
@settings(max_examples=1000, deadline=None)
def test_records_that_close_are_those_the_csv_module_reads(lines: list[str], size: int) -> None:
    # Every quoted field closes before the end (and within the bounds): the csv module's
    # rows, each at the line it starts on, whatever the batch size.
    shape = CsvShape.of("excel")
    if not shape.closed("\n".join(lines)) or len(lines) > MAX_RECORD_LINES:
        return
    expected = []
    reader = csv.reader(lines)
    start = 1
    for row in reader:
        expected.append((start + 1, row))
        start = reader.line_num + 1
    got = [
        (line, [cell.replace("\n", "") for cell in row])
        for line, row in records(lines, columns=0, size=size)
    ]
    assert got == expected


def test_a_stray_quote_costs_its_own_line_and_every_line_after_it_is_read() -> None:
    lines = ["a,b@x.org,Bob", 'c,d@x.org,"Mallory', *(f"u{n},u{n}@x.org,X" for n in range(500))]
    got = records(lines, columns=3)
    assert len(got) == 502
    assert got[1] == (3, ["c", "d@x.org", "Mallory"])  # the open field read to its line's end
    assert got[2] == (4, ["u0", "u0@x.org", "X"])
    assert got[-1] == (503, ["u499", "u499@x.org", "X"])


def test_a_quoted_field_with_a_line_break_inside_stays_one_record() -> None:
    lines = ['a,b@x.org,"one', "two", 'three"', "c,d@x.org,e"]
    for size in (1, 2, 10):
        assert records(lines, columns=3, size=size) == [
            (2, ["a", "b@x.org", "one\ntwo\nthree"]),
            (5, ["c", "d@x.org", "e"]),
        ]


def test_a_span_that_closes_into_another_column_count_is_a_stray_quote() -> None:
    # The quote "closes" two lines down, but the joined row has 4 columns, not 3.
    lines = ['a,"b@x.org,X', "c,d@x.org,Y", 'e,f@x.org",Z,Z', "g,h@x.org,W"]
    assert [line for line, _ in records(lines, columns=3)] == [2, 3, 4, 5]
    assert records(lines, columns=3)[1] == (3, ["c", "d@x.org", "Y"])


def test_a_quote_that_never_closes_within_the_bounds_is_a_stray_quote() -> None:
    lines = ['a,b@x.org,"X', *(["c,d@x.org,Y"] * MAX_RECORD_LINES), 'e",f,g']
    got = records(lines, columns=0, size=7)
    assert [line for line, _ in got] == list(range(2, len(lines) + 2))


def test_a_stray_quote_on_the_last_line_and_several_stray_quotes() -> None:
    lines = ['"a,b@x.org,X', "c,d@x.org,Y", 'e,"f@x.org,Z', "g,h@x.org,W", 'i,j@x.org,"']
    got = records(lines, columns=3, size=2)
    assert got == [
        (2, ["a,b@x.org,X"]),
        (3, ["c", "d@x.org", "Y"]),
        (4, ["e", "f@x.org,Z"]),
        (5, ["g", "h@x.org", "W"]),
        (6, ["i", "j@x.org", ""]),
    ]


def test_lines_with_their_ends_join_with_their_ends() -> None:
    shape = CsvShape.of("excel")
    lines = ['a,b@x.org,"one\r\n', 'two"\r\n', 'c,"d@x.org,e\r\n', "f,g@x.org,h\r\n"]
    cut = list(cut_records([lines], shape, columns=3, with_ends=True))
    texts = [text for batch, _ in cut for text in batch]
    starts = [line for _, batch in cut for line in batch]
    assert list(starts) == [1, 3, 4]
    assert texts[0] == 'a,b@x.org,"one\r\ntwo"\r\n'
    assert next(csv.reader([texts[1]])) == ["c", "d@x.org,e"]
