"""The import's batch reading against row-by-row reading: the same accounts, refusals and
line numbers for every file, whatever the chunk size (no database: reading alone)."""

from __future__ import annotations

import codecs
import csv
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from hypothesis import given, settings
from hypothesis import strategies as st

from jobs.account_import import _chunks, _header_columns, _sniff
from jobs.reader.encoding import open_text
from service.accounts import (
    AccountInput,
    check_external_id,
    external_ids_plain,
    validate_account,
)
from service.addresses import AddressKeys, CanonicalRules, EmailHasher
from service.addresses.mailbox import _PLAIN_ADDR_SPEC, dressed_positions
from service.errors import ValidationFailed
from service.runtime import Runtime

KEYS = AddressKeys(EmailHasher(b"k" * 32), CanonicalRules())
RUNTIME = cast(Runtime, SimpleNamespace(keys=KEYS))

Read = tuple[list[tuple[int, str, str, bytes, str | None]], list[int], int]


def read_row_by_row(path: Path) -> Read:
    """The import's reading as it was, one ``validate_account`` per row: the reference."""
    accounts: list[tuple[int, str, str, bytes, str | None]] = []
    invalid: list[int] = []
    rows = 0
    with open_text(path) as handle:
        sample = handle.read(64 * 1024)
        handle.seek(0)
        reader: Any = csv.reader(handle, dialect=_sniff(sample))
        columns = _header_columns(reader, path)
        needed = max(columns["external_id"], columns["email"]) + 1
        end = reader.line_num
        while True:
            line = end + 1
            try:
                record = next(reader)
            except StopIteration:
                return accounts, invalid, rows
            except csv.Error:
                end = reader.line_num
                rows += 1
                invalid.append(line)
                continue
            end = reader.line_num
            if not "".join(record).strip():
                continue
            rows += 1
            if len(record) < needed:
                invalid.append(line)
                continue
            at = columns.get("locale")
            locale = record[at].strip() if at is not None and at < len(record) else None
            item = AccountInput(
                record[columns["external_id"]].strip(), record[columns["email"]], locale
            )
            try:
                account = validate_account(item, KEYS)
            except ValidationFailed:
                invalid.append(line)
                continue
            accounts.append(
                (line, account.external_id, account.email, account.email_key, account.locale)
            )


def read_in_chunks(path: Path, size: int) -> Read:
    accounts: list[tuple[int, str, str, bytes, str | None]] = []
    invalid: list[int] = []
    rows = 0
    for chunk in _chunks(RUNTIME, path, size):
        rows += chunk.read.rows
        invalid += chunk.read.invalid_lines
        assert chunk.read.invalid == len(chunk.read.invalid_lines)
        got = chunk.accounts
        count = len(got.external_ids)
        assert count == size or chunk.read.rows == 0 or count < size
        if count:
            accounts += [
                (0, *row)
                for row in zip(
                    got.external_ids, got.emails, got.email_keys, got.locales, strict=True
                )
            ]
            # Only the ends of a chunk carry a line (where it starts, how far it got).
            start = len(accounts) - count
            accounts[start] = (chunk.first_line, *accounts[start][1:])
            accounts[-1] = (chunk.last_line, *accounts[-1][1:]) if count > 1 else accounts[-1]
    return accounts, invalid, rows


def only_ends(expected: Read, size: int) -> Read:
    """``expected`` with the line kept only where a chunk of ``size`` starts and ends."""
    accounts = [(0, *row[1:]) for row in expected[0]]
    for start in range(0, len(accounts), size):
        accounts[start] = expected[0][start]
        last = min(start + size, len(accounts)) - 1
        accounts[last] = expected[0][last]
    return accounts, expected[1], expected[2]


# Cells as real exports hold them, and what breaks them: dressing, non-ASCII, invisible
# characters, encoded words, lengths at the limits, quotes, newlines inside quoted fields.
IDS = [
    "u1",
    "u2",
    "u1",
    " u3 ",
    "",
    " ",
    "ü-%_*",
    "usr\u202e1",
    "a\tb",
    "x" * 255,
    "y" * 256,
    "NULL",
    '"q""q"',
    '"a\nb"',
    "usr\x7f",
]
EMAILS = [
    "anna@example.com",
    " Anna.Schmidt+news@GMail.com ",
    "john.smith@googlemail.com",
    "Alice <alice@example.org>",
    "mailto:bob@example.org",
    "a@example.org, b@example.org",
    "jürgen@bücher.de",
    "=?utf-8?q?x?=@example.org",
    "broken.example.com",
    "",
    "a.+tag@example.com",
    "INFO@example.com",
    "x" * 310 + "@example.com",
    "a@" + "b" * 320 + ".com",
    "zero\u200bwidth@example.com",
    '"quoted local"@example.com',
    '"a@example.org\nb@example.org"',
    "a@b",
]
LOCALES = ["en", "de-AT", "", " fr ", "english!", "x" * 40, "pt-BR"]
ROW = st.one_of(
    st.tuples(st.sampled_from(IDS), st.sampled_from(EMAILS), st.sampled_from(LOCALES)).map(
        ",".join
    ),
    st.sampled_from(["", ",,", " ", "u9", 'u8,"unclosed@example.com,en', "u7,a@example.com"]),
)


def write(folder: str, rows: list[str], ending: str, prefix: bytes) -> Path:
    path = Path(folder) / "accounts.csv"
    text = ending.join(["external_id,email,locale", *rows]) + ending
    path.write_bytes(prefix + text.encode("utf-8"))
    return path


@given(
    rows=st.lists(ROW, max_size=40),
    size=st.sampled_from([1, 2, 3, 7, 1000]),
    ending=st.sampled_from(["\n", "\r\n", "\r"]),
    prefix=st.sampled_from([b"", codecs.BOM_UTF8]),
)
@settings(max_examples=300, deadline=None)
def test_batch_reading_finds_what_row_by_row_reading_finds(
    rows: list[str], size: int, ending: str, prefix: bytes
) -> None:
    with tempfile.TemporaryDirectory(prefix="leakguard-batches-") as folder:
        path = write(folder, rows, ending, prefix)
        assert read_in_chunks(path, size) == only_ends(read_row_by_row(path), size)


def test_a_windows_1252_line_and_a_crlf_split_across_blocks_read_alike(tmp_path: Path) -> None:
    # Past the first 1 MiB block, so the block cut and the per-line fallback both run.
    lines = [f"u{n},user{n}@example.com,en" for n in range(60_000)]
    lines[30_000] = "u30000,Jos\xe9@example.com,fr"
    path = tmp_path / "a.csv"
    data = "\r\n".join(["external_id,email,locale", *lines]).encode("cp1252")
    path.write_bytes(data)
    expected = read_row_by_row(path)
    assert read_in_chunks(path, 20_000) == only_ends(expected, 20_000)
    assert expected[0][30_000][2] == "Jos\xe9@example.com"


@given(st.lists(st.sampled_from([*EMAILS, "a@b.c", "x=?y@z.de", "p\nq@r.st"]), max_size=30))
@settings(max_examples=300, deadline=None)
def test_the_dressed_positions_of_a_batch_are_those_of_each_value(values: list[str]) -> None:
    expected = [
        n
        for n, value in enumerate(values)
        if "=?" in value or not _PLAIN_ADDR_SPEC.fullmatch(value)
    ]
    assert dressed_positions(values) == expected


@given(st.lists(st.sampled_from([*IDS, "ok", " a ", "\u00a0"]), max_size=20))
@settings(max_examples=300, deadline=None)
def test_plain_external_ids_all_pass_the_one_by_one_check(values: list[str]) -> None:
    if external_ids_plain(values):
        for value in values:
            check_external_id(value)
