"""The leak file reader: formats, containers, encodings, resumption and hostile input."""

from __future__ import annotations

import bz2
import codecs
import csv
import gzip
import io
import json
import lzma
import tarfile
import time
import tracemalloc
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobs.reader import formats as leakformats
from jobs.reader.formats import name_role
from jobs.reader.stream import (
    MAX_LINE_BYTES,
    LeakFileError,
    LeakFormat,
    LeakRecord,
    LeakSource,
    expanded_bytes,
    open_leak,
)
from service.addresses.canonical import canonicalize_email

PROPERTY = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
CONCRETE_FORMATS = [f for f in LeakFormat if f is not LeakFormat.AUTO]
R = LeakRecord


def write(directory: Path, name: str, data: bytes | str) -> Path:
    path = directory / name
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def read(
    path: Path, fmt: LeakFormat = LeakFormat.AUTO, *, skip: int = 0
) -> tuple[LeakSource, list[LeakRecord]]:
    with open_leak(path, fmt) as reader:
        return reader.source, list(reader.records(skip=skip))


def candidates(records: list[LeakRecord]) -> list[str | None]:
    return [record.candidate for record in records]


# --- lines ---------------------------------------------------------------------------------


def test_lines_skip_blank_lines_and_give_none_without_an_at_sign(tmp_path: Path) -> None:
    path = write(tmp_path, "leak.txt", "jane@x.org\n\n   \n  Bob@Y.com \t\nno address here\n")
    source, records = read(path)
    assert source.format is LeakFormat.LINES
    assert records == [R(1, "jane@x.org"), R(4, "Bob@Y.com"), R(5, None)]


def test_lines_that_are_not_utf8_are_read_as_windows_1252(tmp_path: Path) -> None:
    path = write(tmp_path, "leak.txt", b"jane@x.org\n\xff\xfe\x00garbage\nbob@y.com \xc3\n")
    _, records = read(path, LeakFormat.LINES)
    assert records == [R(1, "jane@x.org"), R(2, None), R(3, "bob@y.com \u00c3")]


def test_legacy_8bit_lines_are_decided_line_by_line(tmp_path: Path) -> None:
    data = (
        "josé.luis@example.org\n".encode()  # UTF-8
        + b"jos\xe9.luis@example.org\n"  # Windows-1252 (also Latin-1)
        + b"jos\xe8@example.org:pa\x80ss\n"  # the euro sign exists only in Windows-1252
        + b"odd\x81@example.org\n"  # undefined in Windows-1252: a C1 control (WHATWG)
        + "zoë@example.org\n".encode()
    )
    _, records = read(write(tmp_path, "leak.txt", data), LeakFormat.LINES)
    assert candidates(records) == [
        "josé.luis@example.org",
        "josé.luis@example.org",
        "josè@example.org:pa€ss",
        "odd\x81@example.org",
        "zoë@example.org",
    ]
    assert not any("\ufffd" in (c or "") for c in candidates(records))


LINE_FORMAT_FILES = {
    LeakFormat.LINES: ("a@x.org", "b@x.org"),
    LeakFormat.COMBO: ("a@x.org:pw", "b@x.org:pw"),
    LeakFormat.JSONL: ('{"email": "a@x.org"}', '{"email": "b@x.org"}'),
    LeakFormat.CSV: ("email,name\na@x.org,A", "b@x.org,B"),
}


@pytest.mark.parametrize("fmt", list(LINE_FORMAT_FILES))
@pytest.mark.parametrize("size", [MAX_LINE_BYTES + 1, 3 * MAX_LINE_BYTES + 5])
def test_a_line_over_the_cap_in_a_line_format_is_one_invalid_record_counted_long(
    tmp_path: Path, fmt: LeakFormat, size: int
) -> None:
    # Before, the line kept its first 64 KiB and the rest was dropped without a word.
    first, last = LINE_FORMAT_FILES[fmt]
    long_line = "é" * (size // 2 - 6) + "c@x.org" * 2  # over the cap, an address past it
    text = f"{first}\n{long_line}\n{long_line}\r\n{last}"  # the last line without an end
    before = first.count("\n")
    with open_leak(write(tmp_path, "leak.txt", text), fmt) as reader:
        records = list(reader.records())
        assert reader.long_lines == 2
    assert [(r.line, r.candidate) for r in records] == [
        (before + 1, "a@x.org"),
        (before + 2, None),
        (before + 3, None),
        (before + 4, "b@x.org"),
    ]


def test_a_line_of_exactly_the_cap_is_read_whole(tmp_path: Path) -> None:
    line = "x" * (MAX_LINE_BYTES - 7) + "@x.org"
    assert len(line) == MAX_LINE_BYTES - 1
    for text in (line, line + "y"):
        with open_leak(write(tmp_path, "leak.txt", f"{text}\nb@x.org\n"), LeakFormat.LINES) as r:
            assert [rec.candidate for rec in r.records()] == [text, "b@x.org"]
            assert r.long_lines == 0


@pytest.mark.parametrize(
    "joiner",
    [", ", ",", " ", ";", "\t", "><", "/"],
    ids=["comma-space", "comma", "space", "semicolon", "tab", "angles", "slash"],
)
def test_free_text_reads_a_long_line_whole_without_cutting_an_address(
    tmp_path: Path, joiner: str
) -> None:
    # 20,000 addresses on one line (about 400 KB), every cut in the middle of the text.
    addresses = [f"person.{n}@example{n % 7}.org" for n in range(20_000)]
    text = "first@x.org\n" + joiner.join(addresses) + "\r\nlast@x.org"
    with open_leak(write(tmp_path, "leak.txt", text), LeakFormat.TEXT) as reader:
        records = list(reader.records())
    assert [r.candidate for r in records] == ["first@x.org", *addresses, "last@x.org"]
    assert [r.line for r in records] == [1] + [2] * 20_000 + [3]
    with open_leak(tmp_path / "leak.txt", LeakFormat.TEXT) as reader:
        assert list(reader.records(skip=15_000)) == records[15_000:]


def test_free_text_cuts_a_run_without_separators_between_characters(tmp_path: Path) -> None:
    # A run longer than the cap holds no address: any cut is safe, but never inside a
    # character, and the address after the run is found.
    run = "ü" * MAX_LINE_BYTES
    text = f"{run} tail@x.org\n"
    with open_leak(write(tmp_path, "leak.txt", text), LeakFormat.TEXT) as reader:
        records = list(reader.records())
    assert records == [R(1, "tail@x.org")]


def test_a_mass_mail_with_its_to_header_unfolded_on_one_line_reads_every_recipient(
    tmp_path: Path,
) -> None:
    # The trial's case: 4,100 recipients on one ~100 KB To: line gave 2,563 records.
    to = [f'"Customer, {n}" <customer{n}@example.org>' for n in range(4_100)]
    mail = (
        "From: shop@example.com\r\nTo: " + ", ".join(to) + "\r\nCc: cc@example.org\r\n"
        "Subject: news\r\n\r\nbody with body@example.org\r\n"
    )
    source, records = read(write(tmp_path, "mass.eml", mail))
    assert source.format is LeakFormat.EML
    assert [r.candidate for r in records] == [
        *(f"customer{n}@example.org" for n in range(4_100)),
        "cc@example.org",
    ]
    assert [r.line for r in records] == [2] * 4_100 + [3]


def test_a_long_line_of_free_text_is_read_in_bounded_memory(tmp_path: Path) -> None:
    addresses = [f"p{n}@x.org" for n in range(400_000)]  # one line of about 4.4 MB
    path = write(tmp_path, "leak.txt", " ".join(addresses) + "\n")
    tracemalloc.start()
    try:
        with open_leak(path, LeakFormat.TEXT) as reader:
            count = sum(len(batch) for batch in reader.batches())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 400_000
    assert peak < 3 * 1024 * 1024


# --- csv -----------------------------------------------------------------------------------


# A stray quote at the start, middle or end of a field, in the address column, on the last
# line, several of them; the lines of the data (after the header), and the invalid ones.
STRAY_QUOTES = {
    "start-of-name": ({3: '"Mallory,m@x.org'}, [3]),
    "start-of-address": ({3: 'Mallory,"m@x.org'}, []),  # read alone: the address is whole
    "middle-and-end": ({3: 'Mal"lory,m@x.org', 4: 'Mallory",n@x.org'}, []),
    "last-line": ({201: '"Mallory,m@x.org'}, [201]),
    "several": (
        {3: '"A,a@x.org', 50: '"B,b@x.org', 51: 'C,"c@x.org', 200: '"D,d@x.org'},
        [3, 50, 200],
    ),
}


@pytest.mark.parametrize("ending", ["\n", "\r\n"], ids=["lf", "crlf"])
@pytest.mark.parametrize("case", list(STRAY_QUOTES))
def test_csv_a_stray_quote_costs_its_own_line_and_every_line_after_it_is_read(
    tmp_path: Path, case: str, ending: str
) -> None:
    lines = {n: f"U{n},u{n}@x.org" for n in range(2, 202)}
    changed, invalid = STRAY_QUOTES[case]
    lines.update(changed)
    text = ending.join(["name,email", *lines.values()]) + ending
    source, records = read(write(tmp_path, "leak.csv", text))
    assert source.format is LeakFormat.CSV
    assert [record.line for record in records] == list(range(2, 202))
    assert [record.line for record in records if record.candidate is None] == invalid
    assert records[-2].candidate == "u200@x.org" or 200 in changed


def test_csv_a_quoted_field_with_line_breaks_stays_one_row_past_a_block_boundary(
    tmp_path: Path,
) -> None:
    # The quoted note starts at the end of the first 64 KiB block and closes in the next.
    rows = [f"u{n}@x.org,note" for n in range(3000)]
    head = "email,note\n" + "\n".join(rows) + "\n"
    pad = MAX_LINE_BYTES - len(head.encode()) - 20
    assert pad > 0
    text = head + "p@x.org," + "y" * pad + '"\n'  # a stray quote mid-field: literal
    text += 'q@x.org,"one\ntwo\nthree"\nr@x.org,"x""y"\nlast@x.org,z\n'
    _, records = read(write(tmp_path, "leak.csv", text))
    assert [r.line for r in records[-4:]] == [3002, 3003, 3006, 3007]
    assert [r.candidate for r in records[-4:]] == ["p@x.org", "q@x.org", "r@x.org", "last@x.org"]
    _, resumed = read(tmp_path / "leak.csv", skip=3001)
    assert resumed == records[-3:]


@pytest.mark.parametrize(
    "name",
    [
        "email",
        "E-Mail",
        "MAIL",
        "Email Address",
        "e-mail address",
        "EmailAddress",
        "email_address",
        "user_email",
        "Login Email",
        "emailAddress",
        "E-Mail-Adresse",
    ],
)
def test_csv_finds_the_address_column_by_name_in_any_position(tmp_path: Path, name: str) -> None:
    path = write(tmp_path, "leak.csv", f"id,nick,{name},city\n1,jj,jane@x.org,Oslo\n")
    source, records = read(path)
    assert source.format is LeakFormat.CSV
    assert records == [R(2, "jane@x.org")]


@pytest.mark.parametrize(
    ("name", "role"),
    [
        ("hotmail", None),
        ("email_verified", None),
        ("mail_count", None),
        ("password_hash", None),
        ("hash", None),
        ("Password", leakformats.CREDENTIAL),
        ("pwd", leakformats.CREDENTIAL),
        ("user pass", leakformats.CREDENTIAL),
        ("recovery-mail", leakformats.ADDRESS),
        ("eMail", leakformats.ADDRESS),
        # plural names hold several addresses; "addresses" alone may be postal ones
        ("emails", leakformats.ADDRESS),
        ("E-Mails", leakformats.ADDRESS),
        ("email_addresses", leakformats.ADDRESS),
        ("addresses", None),
        ("emails_sent", None),
    ],
)
def test_column_names_are_matched_by_their_last_word(name: str, role: str | None) -> None:
    assert name_role(name) == role


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_csv_sniffs_the_delimiter_and_reads_the_password_column(
    tmp_path: Path, delimiter: str
) -> None:
    rows = [
        ["Password", "Name", "Email", "hash"],
        ["s3cret", "Jane", "jane@x.org", "ab12"],
        ["", "Bob", "bob@y.com", "cd34"],
    ]
    text = "\n".join(delimiter.join(row) for row in rows) + "\n"
    _, records = read(write(tmp_path, "leak.csv", text))
    assert records == [R(2, "jane@x.org", "s3cret"), R(3, "bob@y.com", None)]


def test_csv_hash_column_is_not_a_password(tmp_path: Path) -> None:
    path = write(tmp_path, "leak.csv", "email,password_hash,hash\njane@x.org,$2y$10$abc,ab12\n")
    _, records = read(path)
    assert records == [R(2, "jane@x.org", None)]


def test_csv_quoted_fields_hold_delimiters_and_newlines(tmp_path: Path) -> None:
    text = (
        'note,email,password\n"multi\nline, note",jane@x.org,"p,w;d"\n'
        '"plain",bob@y.com,"say ""hi"""\n\n,,\n'
    )
    _, records = read(write(tmp_path, "leak.csv", text))
    assert records == [R(2, "jane@x.org", "p,w;d"), R(4, "bob@y.com", 'say "hi"')]


def test_csv_prefers_the_plain_email_column_over_a_secondary_one(tmp_path: Path) -> None:
    # The plain column is the account's (its password goes with it); the secondary one's
    # address leaked as well, and is a record of its own, without the password.
    text = "recovery_email,email,password\nold@x.org,new@y.org,pw\n"
    _, records = read(write(tmp_path, "leak.csv", text))
    assert records == [R(2, "new@y.org", "pw"), R(2, "old@x.org")]


def test_csv_8bit_bytes_in_another_column_keep_the_address(tmp_path: Path) -> None:
    data = b"name;email;password\n\xe9\xff\xfe;jane@x.org;pa\xffss\nBob;bob@y.com;\x00\n"
    _, records = read(write(tmp_path, "leak.csv", data))
    # A line that is not UTF-8 is Windows-1252 as a whole: the password keeps its "ÿ".
    assert records == [R(2, "jane@x.org", "pa\u00ffss"), R(3, "bob@y.com", "\x00")]


def test_csv_without_a_named_column_uses_the_column_of_addresses(tmp_path: Path) -> None:
    rows = "\n".join(f"{n},user{n},user{n}@x.org,2019-11-01" for n in range(5))
    _, records = read(write(tmp_path, "headerless.csv", rows + "\n"))
    assert candidates(records) == [f"user{n}@x.org" for n in range(5)]
    assert records[0].line == 1  # the first row holds an '@': it is data, not a header
    named_otherwise = "id,login,contact,since\n" + rows + "\n"
    _, records = read(write(tmp_path, "unnamed.csv", named_otherwise), LeakFormat.CSV)
    assert candidates(records) == [f"user{n}@x.org" for n in range(5)]
    assert records[0].line == 2


def test_csv_rows_without_an_address_are_records_without_a_candidate(tmp_path: Path) -> None:
    path = write(tmp_path, "leak.csv", "email,name\njane@x.org,Jane\nnot-an-address,Bob\n,Eve\n")
    _, records = read(path)
    assert records == [R(2, "jane@x.org"), R(3, None), R(4, None)]


@pytest.mark.parametrize(
    ("above", "delimiter"),
    [
        ("sep=;\r\n", ";"),  # Excel's first line
        ("SEP=|\n", "|"),
        ("User export\n", ","),
        ("Customer list;;\nExported 2019-11-01 by admin@shop.example;;\n\n\n", ";"),
        ("sep=\t\nReport\tusers\n\n", "\t"),
    ],
)
def test_csv_header_below_titles_dates_blank_lines_and_sep(
    tmp_path: Path, above: str, delimiter: str
) -> None:
    rows = [["id", "E-Mail", "Passwort"], ["1", "jane@x.org", "pw1"], ["2", "nope", ""]]
    text = above + "".join(delimiter.join(row) + "\n" for row in rows)
    first = above.replace("\r\n", "\n").count("\n") + 2  # the line after the header
    for fmt in (LeakFormat.AUTO, LeakFormat.CSV):
        source, records = read(write(tmp_path, "export.csv", text), fmt)
        assert source.format is LeakFormat.CSV
        assert records == [R(first, "jane@x.org", "pw1"), R(first + 1, None)]


def test_csv_without_a_named_column_below_a_title_skips_the_title(tmp_path: Path) -> None:
    rows = "".join(f"{n};user{n}@x.org;2019-11-01\n" for n in range(12))
    source, records = read(write(tmp_path, "export.csv", "Leaked users\n\n" + rows))
    assert source.format is LeakFormat.CSV
    assert candidates(records) == [f"user{n}@x.org" for n in range(12)]
    assert records[0].line == 3


def test_a_data_cell_naming_an_address_is_not_a_header(tmp_path: Path) -> None:
    text = "id,contact,kind\n1,jane@x.org,email\n2,bob@y.com,mail\n"
    _, records = read(write(tmp_path, "contacts.csv", text))
    assert records == [R(2, "jane@x.org"), R(3, "bob@y.com")]


def test_csv_with_no_email_column_is_a_file_error(tmp_path: Path) -> None:
    path = write(tmp_path, "leak.csv", "id,name,city\n1,Jane,Oslo\n2,Bob,Rome\n")
    with pytest.raises(LeakFileError, match="no column of email addresses") as caught:
        open_leak(path, LeakFormat.CSV)
    assert "Jane" not in str(caught.value)


# --- combo ---------------------------------------------------------------------------------


def test_a_headerless_comma_separated_credential_list_is_a_combo_list(tmp_path: Path) -> None:
    # Read as a CSV, "alice@example.org,hunter2" lines lost every password (no header named
    # the column): a real CSV has a header; without one, address and field are a combo.
    text = (
        "alice@example.org,hunter2\n"
        "bob@example.org,pass,with,commas\n"
        "carol@example.org,p@ss\n"
        "dave@example.org,\n"
        " erin@example.org , spaced \n"
    )
    source, records = read(write(tmp_path, "combo.csv", text))
    assert source.format is LeakFormat.COMBO
    assert records == [
        R(1, "alice@example.org", "hunter2"),
        R(2, "bob@example.org", "pass,with,commas"),
        R(3, "carol@example.org", "p@ss"),
        R(4, "dave@example.org", None),
        R(5, "erin@example.org", " spaced "),
    ]


@pytest.mark.parametrize(
    ("text", "expected_format", "expected"),
    [
        # A header naming the columns: a CSV, as before.
        ("email,password\nalice@x.org,pw1\n", LeakFormat.CSV, [R(2, "alice@x.org", "pw1")]),
        # A header whose address cell is an example address: a header all the same.
        (
            "E-Mail (name@example.com),Password\nalice@x.org,pw1\nbob@y.org,pw2\n",
            LeakFormat.CSV,
            [R(2, "alice@x.org", "pw1"), R(3, "bob@y.org", "pw2")],
        ),
        (
            "Email address (e.g. user@example.com);Passwort\nalice@x.org;pw1\n",
            LeakFormat.CSV,
            [R(2, "alice@x.org", "pw1")],
        ),
        # More columns without a header: a CSV whose address column is found by its values.
        (
            "alice@x.org,pw1,Alice\nbob@y.org,pw2,Bob\n",
            LeakFormat.CSV,
            [R(1, "alice@x.org"), R(2, "bob@y.org")],
        ),
        # Two addresses a line: each is a record (a CSV read only the first).
        (
            "alice@x.org,bob@y.org\ncarol@x.org, dave@y.org\n",
            LeakFormat.LINES,
            [R(1, "alice@x.org"), R(1, "bob@y.org"), R(2, "carol@x.org"), R(2, "dave@y.org")],
        ),
        # Excel's "sep=," names the file a CSV.
        ("sep=,\nalice@x.org,pw1\n", LeakFormat.CSV, [R(2, "alice@x.org")]),
    ],
)
def test_comma_separated_files_that_stay_csv_or_lines(
    tmp_path: Path, text: str, expected_format: LeakFormat, expected: list[LeakRecord]
) -> None:
    source, records = read(write(tmp_path, "leak.csv", text))
    assert source.format is expected_format
    assert records == expected


def test_a_headerless_comma_combo_read_as_csv_when_the_operator_says_so(tmp_path: Path) -> None:
    path = write(tmp_path, "combo.csv", "alice@example.org,hunter2\nbob@example.org,secret\n")
    _, records = read(path, LeakFormat.CSV)
    assert records == [R(1, "alice@example.org"), R(2, "bob@example.org")]


def test_combo_splits_at_the_first_separator_after_the_at_sign(tmp_path: Path) -> None:
    text = (
        "jane@x.org:pass:with:colons\n"
        "bob@y.com;semi|bar\n"
        "a|b@z.com|pipe\n"
        "eve@w.net:p@ss\n"
        " pad@x.org : spaced \n"
        "nosep@q.com\n"
        "empty@pw.org:\n"
        "no at sign:pw\n"
        "\n"
    )
    source, records = read(write(tmp_path, "combo.txt", text))
    assert source.format is LeakFormat.COMBO
    assert records == [
        R(1, "jane@x.org", "pass:with:colons"),
        R(2, "bob@y.com", "semi|bar"),
        R(3, "a|b@z.com", "pipe"),
        R(4, "eve@w.net", "p@ss"),
        R(5, "pad@x.org", " spaced "),
        R(6, "nosep@q.com", None),
        R(7, "empty@pw.org", None),
        R(8, None),
    ]


def test_combo_lines_of_more_fields_take_the_field_that_is_an_address(tmp_path: Path) -> None:
    text = (
        "https://shop.example.net/login:niaj@example.com:Hunter2!\n"  # stealer log
        "android://AbC1_x==@com.example.app/:olga@example.org:pa:ss\n"
        "https://user@shop.example.net/account:pete@example.com:pw\n"  # user-info is no login
        "https://admin@shop.example.net:8443/u@x.com:quinn@example.com:pw\n"
        "https://admin@shop.example.net/nothing-else:pw\n"
        "rita:rita@example.com:secret:with:colons\n"  # login:email:password
        "sam;sam@example.com;p:w\n"
        "tina@example.com;pw\n"
        "uma@example.com|pw\n"
    )
    source, records = read(write(tmp_path, "stealer.txt", text))
    assert source.format is LeakFormat.COMBO
    assert records == [
        R(1, "niaj@example.com", "Hunter2!"),
        R(2, "olga@example.org", "pa:ss"),
        R(3, "pete@example.com", "pw"),
        R(4, "quinn@example.com", "pw"),
        R(5, None),
        R(6, "rita@example.com", "secret:with:colons"),
        R(7, "sam@example.com", "p:w"),
        R(8, "tina@example.com", "pw"),
        R(9, "uma@example.com", "pw"),
    ]


# --- jsonl ---------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["email", "Email", "e_mail", "emailAddress", "user_email", "mail"])
def test_jsonl_finds_the_address_under_any_email_like_key(tmp_path: Path, key: str) -> None:
    line = json.dumps({"id": 7, key: "jane@x.org", "Password": "pw"})
    _, records = read(write(tmp_path, "leak.jsonl", line + "\n"))
    assert records == [R(1, "jane@x.org", "pw")]


def test_jsonl_looks_one_level_down_and_tolerates_broken_lines(tmp_path: Path) -> None:
    lines = [
        json.dumps({"user": {"emailAddress": "bob@y.com", "pwd": 123456}}),
        "{not json",
        json.dumps({"name": "no address"}),
        json.dumps(["jane@x.org"]),
        "",
        json.dumps({"email": 42}),
        json.dumps({"email": "eve@w.net", "pass": "p"}) + " trailing",
        json.dumps({"email": "deep@x.org"}) + ",",
        "[" * 5000,
        '{"n": ' + "9" * 5000 + "}",
    ]
    source, records = read(write(tmp_path, "leak.jsonl", "\n".join(lines)))
    assert source.format is LeakFormat.JSONL
    assert records == [
        R(1, "bob@y.com", "123456"),
        R(2, None),
        R(3, None),
        R(4, None),
        R(6, None),
        R(7, None),
        R(8, "deep@x.org"),
        R(9, None),
        R(10, None),
    ]


@pytest.mark.parametrize("line_end", ["\n", "\r\n"])
@pytest.mark.parametrize("closing", ["]", "],", "  ]  "])
def test_jsonl_array_brackets_on_lines_of_their_own_are_no_records(
    tmp_path: Path, line_end: str, closing: str
) -> None:
    # An array written one element per line (as many exports write it): 2 objects, 2
    # records, none invalid; the bracket lines used to count as invalid records 1 and 4.
    lines = ["[", '{"email": "a@x.org"},', '{"email": "b@x.org"}', closing, "[]"]
    source, records = read(write(tmp_path, "leak.json", line_end.join(lines) + line_end))
    assert source.format is LeakFormat.JSONL
    assert records == [R(2, "a@x.org"), R(3, "b@x.org")]
    with open_leak(tmp_path / "leak.json") as reader:
        assert list(reader.records(skip=1)) == [R(3, "b@x.org")]


SEVERAL = [
    ("a@x.org, b@y.org", ["a@x.org", "b@y.org"]),
    ('Ann <a@x.org>; "Lee, Bob" <b@y.org>;', ["Ann <a@x.org>", '"Lee, Bob" <b@y.org>']),
    ("Smith, Ann <a@x.org>, b@y.org", ["Smith, Ann <a@x.org>", "b@y.org"]),
    ("a@x.org (Ann, A.), b@y.org", ["a@x.org (Ann, A.)", "b@y.org"]),
    ("a@x.org b@y.org", ["a@x.org", "b@y.org"]),
    ('"a,b"@x.org, b@y.org', ['"a,b"@x.org', "b@y.org"]),
]
ONE_WITH_TWO_AT = ['"a@x.org" <a@x.org>', "mailto:a@x.org?cc=b@y.org", "a@b@x.org"]


@pytest.mark.parametrize(("value", "mailboxes"), SEVERAL)
def test_a_value_naming_several_mailboxes_gives_a_record_each(
    value: str, mailboxes: list[str]
) -> None:
    assert leakformats.split_mailboxes(value) == mailboxes


@pytest.mark.parametrize("value", ONE_WITH_TWO_AT)
def test_one_mailbox_with_a_second_at_sign_stays_whole(value: str) -> None:
    assert leakformats.split_mailboxes(value) == [value]


LISTS_OF_SEVERAL = {
    "lines": "\n".join(["z@w.org", *(value for value, _ in SEVERAL), *ONE_WITH_TWO_AT]),
    "csv": "id,email,password\n"
    + "\n".join(
        # RFC 4180: a quote inside a quoted field is doubled
        "{},{},pw{}".format(n, '"' + value.replace('"', '""') + '"', n)
        for n, value in enumerate(["z@w.org", *(v for v, _ in SEVERAL), *ONE_WITH_TWO_AT])
    ),
    "jsonl": "\n".join(
        json.dumps({"email": value, "pass": f"pw{n}"})
        for n, value in enumerate(["z@w.org", *(v for v, _ in SEVERAL), *ONE_WITH_TWO_AT])
    ),
    "json": json.dumps(
        [
            {"email": value, "pass": f"pw{n}"}
            for n, value in enumerate(["z@w.org", *(v for v, _ in SEVERAL), *ONE_WITH_TWO_AT])
        ],
        indent=2,
    ),
}


@pytest.mark.parametrize("fmt", sorted(LISTS_OF_SEVERAL))
def test_every_format_gives_each_mailbox_of_a_value_its_own_record(
    tmp_path: Path, fmt: str
) -> None:
    # A recipients cell or line naming several people ("Ann <a@x.org>, Bob <b@y.org>") was
    # one record: invalid, or only the last mailbox read; every other person was missed.
    path = write(tmp_path, f"leak.{fmt}", LISTS_OF_SEVERAL[fmt] + "\n")
    _, records = read(path, LeakFormat(fmt))
    expected = ["z@w.org", *(m for _, mailboxes in SEVERAL for m in mailboxes), *ONE_WITH_TWO_AT]
    assert candidates(records) == expected
    if fmt != "json":  # one line each; a pretty-printed object starts a line above its value
        numbers = [record.line for record in records]
        per_line = [1, *(len(mailboxes) for _, mailboxes in SEVERAL), 1, 1, 1]
        first = 2 if fmt == "csv" else 1
        assert numbers == [first + n for n, count in enumerate(per_line) for _ in range(count)]
    if fmt != "lines":  # each mailbox keeps the password of its row
        passwords = [record.password for record in records]
        assert passwords[1:3] == ["pw1", "pw1"]
    with open_leak(path, LeakFormat(fmt)) as reader:
        for skip in range(len(records) + 1):
            assert list(reader.records(skip=skip)) == records[skip:]


@pytest.mark.parametrize("fmt", ["lines", "jsonl", "csv"])
def test_resuming_past_whole_blocks_of_several_mailboxes_lands_on_the_same_record(
    tmp_path: Path, fmt: str
) -> None:
    # Records, not lines, are what a resumed run skips: 3,000 lines of two mailboxes each
    # (many blocks) then single ones must skip to exactly the suffix.
    values = [f"a{n}@x.org; b{n}@y.org" for n in range(3000)] + [f"c{n}@z.org" for n in range(3000)]
    rows = {
        "lines": values,
        "jsonl": [json.dumps({"email": value}) for value in values],
        "csv": ["email", *(json.dumps(value) for value in values)],
    }[fmt]
    path = write(tmp_path, f"leak.{fmt}", "\n".join(rows) + "\n")
    _, records = read(path, LeakFormat(fmt))
    assert len(records) == 9000
    assert records[1].candidate == "b0@y.org"
    with open_leak(path, LeakFormat(fmt)) as reader:
        for skip in (1, 2999, 4096, 5999, 6000, 6001, 8999, 9000):
            assert list(reader.records(skip=skip)) == records[skip:]


EMAIL_LISTS = [
    {"id": 1, "emails": ["a@x.org", "Bee <b@y.org>", 7, None], "password": "p1"},
    {"id": 2, "user": {"E-Mails": ["c@x.org"]}},
    {"id": 3, "emails": []},
    {"id": 4, "email_addresses": [{"address": "no role"}, "d@x.org"]},
    {"id": 5, "email": "e@x.org"},
]


@pytest.mark.parametrize("layout", ["jsonl", "json"])
def test_json_a_list_of_addresses_gives_each_its_record(tmp_path: Path, layout: str) -> None:
    # "emails": [...] (people-search and CRM dumps): the list was no address at all, so
    # every address in it was missed and its entry counted invalid.
    if layout == "jsonl":
        text = "\n".join(json.dumps(doc) for doc in EMAIL_LISTS)
    else:
        text = json.dumps(EMAIL_LISTS, indent=2)
    path = write(tmp_path, f"leak.{layout}", text + "\n")
    _, records = read(path, LeakFormat(layout))
    assert candidates(records) == [
        "a@x.org",
        "Bee <b@y.org>",
        "c@x.org",
        None,
        "d@x.org",
        "e@x.org",
    ]
    if layout == "jsonl":
        assert [record.line for record in records] == [1, 1, 2, 3, 4, 5]
        assert [record.password for record in records][:2] == ["p1", "p1"]
    with open_leak(path, LeakFormat(layout)) as reader:
        for skip in range(len(records) + 1):
            assert list(reader.records(skip=skip)) == records[skip:]


def _with_password_last(doc: dict[str, object]) -> dict[str, object]:
    return {**{k: v for k, v in doc.items() if k != "password"}, "password": doc["password"]}


# Every form of several addresses the JSON readers take, the password key before them.
PASSWORD_FIRST = [
    {"password": "p1", "emails": ["a1@x.org", "b1@y.org"]},
    {"password": "p2", "emails": [{"email": "a2@x.org"}, {"email": "b2@y.org", "ok": True}]},
    {"password": "p3", "emails": "a3@x.org, b3@y.org"},
    {"password": "p4", "user": {"emails": ["a4@x.org", "b4@y.org"]}},
    {"password": "p5", "user": {"emails": [{"mail": "a5@x.org"}, {"mail": "b5@y.org"}]}},
    {"password": "p6", "E-Mails": ["a6@x.org"], "id": 6},
]


@pytest.mark.parametrize("password_last", [False, True])
@pytest.mark.parametrize("layout", ["jsonl", "json-indent", "json-one-line", "json-wrapped"])
def test_json_a_password_key_counts_for_a_list_of_addresses_wherever_it_stands(
    tmp_path: Path, layout: str, password_last: bool
) -> None:
    # {"emails": [...], "password": "p"} gave no password to any of its addresses in the
    # JSON reader (the array's records went out before the key was read); in JSON lines a
    # list of objects ([{"email": ...}]) gave no address at all.
    docs = [_with_password_last(doc) if password_last else doc for doc in PASSWORD_FIRST]
    if layout == "jsonl":
        text = "\n".join(json.dumps(doc) for doc in docs)
    elif layout == "json-indent":
        text = json.dumps(docs, indent=2)
    elif layout == "json-one-line":
        text = json.dumps(docs)
    else:
        text = json.dumps({"count": len(docs), "users": docs}, indent=4)
    path = write(tmp_path, "dump.json" if layout != "jsonl" else "dump.jsonl", text + "\n")
    fmt = LeakFormat.JSONL if layout == "jsonl" else LeakFormat.JSON
    _, records = read(path, fmt)
    expected = [
        (f"{who}{n}@{host}", f"p{n}")
        for n in range(1, 6)
        for who, host in (("a", "x.org"), ("b", "y.org"))
    ]
    assert [(r.candidate, r.password) for r in records] == [*expected, ("a6@x.org", "p6")]
    with open_leak(path, fmt) as reader:
        for skip in range(len(records) + 1):
            assert list(reader.records(skip=skip)) == records[skip:]


def test_json_an_address_object_s_own_password_beats_its_owner_s(tmp_path: Path) -> None:
    doc = {"emails": [{"email": "a@x.org", "pass": "own"}, {"email": "b@y.org"}], "pwd": "all"}
    path = write(tmp_path, "dump.json", json.dumps([doc], indent=2))
    _, records = read(path, LeakFormat.JSON)
    assert [(r.candidate, r.password) for r in records] == [("a@x.org", "own"), ("b@y.org", "all")]


def test_json_a_huge_list_of_addresses_is_held_only_up_to_a_bound(tmp_path: Path) -> None:
    # Held for a password key that may follow, the records of one object's array stay
    # bounded: past MAX_HELD_RECORDS they go out as read (a list, not one person's account).
    many = [f"u{n}@x.org" for n in range(3 * leakformats.MAX_HELD_RECORDS)]
    docs = [{"emails": many, "password": "list"}, {"emails": ["a@x.org"], "password": "pa"}]
    path = write(tmp_path, "dump.json", json.dumps(docs, indent=1))
    _, records = read(path, LeakFormat.JSON)
    assert candidates(records) == [*many, "a@x.org"]
    assert records[-1].password == "pa"
    assert [r.line for r in records[:-1]] == sorted(r.line for r in records[:-1])


# --- json (any other layout) ----------------------------------------------------------------

JSON_DOCS = [
    {"id": 1, "email": "a@x.org", "pwd": 1234},
    {"user": {"Email": "b@x.org"}, "password": "pb"},  # address nested, password beside it
    {"name": "no address"},
    {"profile": {"contact": {"mail": "c@x.org", "pass": "pc"}}},
    {"email": "d@x.org", "referrer": {"email": "not-this@x.org"}},
]
JSON_EXPECTED = [
    ("a@x.org", "1234"),
    ("b@x.org", "pb"),
    (None, None),
    ("c@x.org", "pc"),
    ("d@x.org", None),
]
JSON_LAYOUTS = {
    "array-one-line": json.dumps(JSON_DOCS),
    "array-indent-2": json.dumps(JSON_DOCS, indent=2),  # as json.dumps(indent=2) and jq write it
    "concatenated-pretty": "\n".join(json.dumps(doc, indent=2) for doc in JSON_DOCS) + "\n",
    "concatenated-one-line": "".join(json.dumps(doc) for doc in JSON_DOCS),
    "wrapped": json.dumps({"count": 5, "users": JSON_DOCS}, indent=4),
}


@pytest.mark.parametrize("layout", sorted(JSON_LAYOUTS))
def test_json_of_any_layout_yields_every_address_and_its_password(
    tmp_path: Path, layout: str
) -> None:
    source, records = read(write(tmp_path, "dump.json", JSON_LAYOUTS[layout]))
    assert source.format is LeakFormat.JSON
    expected = JSON_EXPECTED
    if layout == "wrapped":  # entries inside a wrapper are not entries: no empty record
        expected = [pair for pair in JSON_EXPECTED if pair[0] is not None]
    assert [(r.candidate, r.password) for r in records] == expected


def test_json_records_carry_the_line_where_their_object_starts(tmp_path: Path) -> None:
    text = JSON_LAYOUTS["array-indent-2"]
    _, records = read(write(tmp_path, "dump.json", text))
    lines = text.splitlines()
    # The object that holds the address ("user": {, "contact": {), else the entry's "{".
    assert [lines[r.line - 1].strip() for r in records] == [
        "{",
        '"user": {',
        "{",
        '"contact": {',
        "{",
    ]


def test_json_objects_keyed_by_id_and_arrays_of_strings(tmp_path: Path) -> None:
    keyed = {str(n): {"email": f"u{n}@x.org", "pw": f"p{n}"} for n in range(3)}
    _, records = read(write(tmp_path, "keyed.json", json.dumps(keyed, indent=2)))
    assert [(r.candidate, r.password) for r in records] == [
        (f"u{n}@x.org", f"p{n}") for n in range(3)
    ]
    strings = json.dumps(["a@x.org", "nope", 7, "b@y.org"], indent=1)
    source, records = read(write(tmp_path, "strings.json", strings))
    assert source.format is LeakFormat.JSON
    assert candidates(records) == ["a@x.org", None, None, "b@y.org"]


def test_json_syntax_error_ends_the_reading_with_one_empty_record(tmp_path: Path) -> None:
    text = JSON_LAYOUTS["array-indent-2"]
    _, records = read(write(tmp_path, "cut.json", text[: text.index('"c@x.org"')]))
    assert [(r.candidate, r.password) for r in records] == [*JSON_EXPECTED[:3], (None, None)]


def test_json_bytes_that_are_not_utf8_are_windows_1252(tmp_path: Path) -> None:
    data = b'[{"email": "jos\xe9@example.org"}, {"email": "zo\xc3\xab@example.org"}]'
    _, records = read(write(tmp_path, "latin.json", data))
    assert candidates(records) == ["josé@example.org", "zoë@example.org"]


def test_a_one_line_json_array_of_many_mb_streams_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    count = 150_000
    with path.open("w") as handle:  # about 9 MB on one line
        handle.write("[")
        handle.write(",".join(f'{{"email": "user{n}@x.org", "pwd": "p{n}"}}' for n in range(count)))
        handle.write("]")
    peak, records = peak_bytes_while_reading(path, LeakFormat.AUTO)
    assert len(records) == count
    assert records[-1] == R(1, f"user{count - 1}@x.org", f"p{count - 1}")
    # The records list itself is most of it: 150,000 records of about 200 bytes.
    assert peak < 60 * 1024 * 1024


# --- eml -----------------------------------------------------------------------------------

SENDERS = (
    "Return-Path: <bounce@mailer.exchange.example>\r\n"
    "From: Exchange Newsletter <news@exchange.example>\r\n"
    "Sender: relay@exchange.example\r\n"
    'Reply-To: "Support, Team" <support@exchange.example>\r\n'
)


def recipient(n: int) -> tuple[str, str]:
    """One recipient as a mass mail spells it, and its bare address."""
    address = f"user{n}@domain{n % 7}.example"
    forms = (
        address,
        f'"Doe, Jane {n}" <{address}>',
        f"=?utf-8?q?J=C3=BCrgen_M=C3=BCller_{n}?= <{address}>",
        f"=?utf-8?b?{codecs.encode(f'Zoë, {n}'.encode(), 'base64').decode().strip()}?= <{address}>",
        f'"Folded,\r\n Name {n}" <{address}>',
        f"Plain Name <{address}>",
        f"{address} (a comment, with a comma)",
    )
    return forms[n % len(forms)], address


def mass_mail(count: int) -> tuple[bytes, list[str]]:
    pairs = [recipient(n) for n in range(count)]
    to, cc, bcc = pairs[: count // 2], pairs[count // 2 : count * 5 // 6], pairs[count * 5 // 6 :]

    def field(name: str, part: list[tuple[str, str]], fold: str) -> str:
        return f"{name}: " + f",{fold}".join(form for form, _ in part) + "\r\n"

    head = (
        SENDERS
        + field("To", to, "\r\n ")
        + "Subject: Important update\r\n"
        + field("Cc", cc, "\r\n\t")
        + field("BCC", bcc, "\r\n  ")
        + "Date: Fri, 01 Nov 2019 09:12:44 +0000\r\n\r\n"
    )
    body = "Dear customer,\r\nTo: body@not-a-recipient.example\r\n"
    return (head + body).encode("utf-8"), [address for _, address in pairs]


def test_mass_mail_yields_every_recipient_and_never_the_sender(tmp_path: Path) -> None:
    data, expected = mass_mail(3000)
    source, records = read(write(tmp_path, "leak.eml", data))
    assert source.format is LeakFormat.EML
    assert candidates(records) == expected
    found = set(candidates(records))
    assert not found & {
        "news@exchange.example",
        "relay@exchange.example",
        "support@exchange.example",
        "bounce@mailer.exchange.example",
        "body@not-a-recipient.example",
    }
    # Every address carries the line where its field starts.
    lines = data.split(b"\r\n\r\n")[0].split(b"\r\n")
    starts = {n for n, text in enumerate(lines, 1) if text.startswith((b"To:", b"Cc:", b"BCC:"))}
    assert {record.line for record in records} == starts
    assert len(starts) == 3


def test_a_header_of_30000_addresses_is_parsed_in_bounded_pieces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stdlib's address parser takes time quadratic in its input: a 1.5 MB To: given
    whole took minutes. The cause is checked, not the time (tests never fail on timing): no
    piece handed to the parser is much longer than ``HEADER_FLUSH_CHARS``."""
    parse = leakformats._parse_addresses
    pieces: list[int] = []

    def measured(values: list[str]) -> list[tuple[str, str]]:
        pieces.extend(len(value) for value in values)
        return parse(values)

    monkeypatch.setattr(leakformats, "_parse_addresses", measured)
    data, expected = mass_mail(30000)
    _, records = read(write(tmp_path, "leak.eml", data))
    assert len(records) == len(expected)
    assert sum(pieces) >= len(data) // 2  # the header went through the parser
    assert len(pieces) > 1
    assert max(pieces) <= leakformats.HEADER_FLUSH_CHARS + 1000  # plus one folded line


def test_a_huge_header_is_parsed_in_pieces_without_losing_addresses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(leakformats, "HEADER_FLUSH_CHARS", 2000)
    data, expected = mass_mail(600)
    _, records = read(write(tmp_path, "leak.eml", data))
    assert candidates(records) == expected


def test_eml_groups_resent_fields_and_empty_headers(tmp_path: Path) -> None:
    text = (
        "Received: from mx by mx\n"
        "From: boss@corp.example\n"
        "To: undisclosed-recipients:;\n"
        'Cc: Friends: a@x.org, "b, c" <b@y.org>;, d@z.org\n'
        "Resent-To: r@x.org\n"
        "Resent-Cc: =?iso-8859-1?q?Andr=E9?= <s@x.org>\n"
        "Resent-From: never@x.org\n"
        "Bcc:\n"
        "\n"
        "To: body@x.org\n"
    )
    source, records = read(write(tmp_path, "leak.eml", text))
    assert source.format is LeakFormat.EML
    assert records == [
        R(4, "a@x.org"),
        R(4, "b@y.org"),
        R(4, "d@z.org"),
        R(5, "r@x.org"),
        R(6, "s@x.org"),
    ]


def test_mbox_yields_the_recipients_of_each_message_and_skips_bodies(tmp_path: Path) -> None:
    text = (
        "From sender@x.org Fri Nov  1 09:12:44 2019\n"  # 1
        "From: sender@x.org\n"
        "To: one@x.org\n"  # 3
        "\n"
        "To: in-body@x.org\n"
        ">From the body, escaped\n"
        "\n"
        "From other@y.org Fri Nov  1 10:00:00 2019\n"  # 8
        "Subject: second\n"
        "Cc: two@y.org,\n"  # 10
        " three@y.org\n"
        "\n"
        "body\n"
        "From third@z.org Fri Nov  1 11:00:00 2019\n"  # 14
        "To: four@z.org\n"  # 15
        "\n"
    )
    source, records = read(write(tmp_path, "leak.mbox", text))
    assert source.format is LeakFormat.EML
    assert records == [
        R(3, "one@x.org"),
        R(10, "two@y.org"),
        R(10, "three@y.org"),
        R(15, "four@z.org"),
    ]


def test_eml_an_address_as_its_own_display_name_is_one_recipient(tmp_path: Path) -> None:
    # Outlook writes "bob@y.org <bob@y.org>": read as two recipients, one person counted
    # twice (records, duplicates); a stale address in the name is no recipient either.
    text = (
        "From: news@exchange.example\n"
        "To: bob@y.org <bob@y.org>, a@x.org,\n"
        ' old@x.org <c@x.org>, team: d@x.org <d@x.org>;, "e@x.org" <e@x.org>\n'
        "\n"
    )
    _, records = read(write(tmp_path, "leak.eml", text))
    assert candidates(records) == ["bob@y.org", "a@x.org", "c@x.org", "d@x.org", "e@x.org"]


def test_eml_a_mailbox_written_as_one_encoded_word_is_a_recipient(tmp_path: Path) -> None:
    # Broken mailers encode the whole mailbox (RFC 2047 forbids it; readers decode it): the
    # address had no "@" before decoding, so it was dropped without even counting invalid.
    text = (
        "From: news@exchange.example\n"
        "To: =?utf-8?B?YWxpY2VAZXhhbXBsZS5jb20=?=, b@x.org,\n"
        " =?utf-8?B?IkFsaWNlIiA8Y0B4Lm9yZz4=?=, =?iso-8859-1?q?d=40x.org?=,\n"
        " =?utf-8?q?J=C3=BCrgen?= <e@x.org>, =?utf-8?q?no_address?=\n"
        "\n"
    )
    _, records = read(write(tmp_path, "leak.eml", text))
    assert candidates(records) == [
        "alice@example.com",
        "b@x.org",
        '"Alice" <c@x.org>',
        "d@x.org",
        "e@x.org",
    ]


FORWARDED = (
    "From: Some User <user@elsewhere.example>\n"  # 1
    "To: security@ours.example\n"  # 2
    "Subject: Fwd: Your monthly update\n"
    "MIME-Version: 1.0\n"
    "Content-Type: multipart/mixed;\n"
    ' boundary="outer=_1"\n'
    "\n"
    "This is a multi-part message in MIME format.\n"
    "--outer=_1\n"  # 9
    "Content-Type: text/plain; charset=utf-8\n"
    "To: part-header@not-a-recipient.example\n"  # a MIME part's header holds no recipients
    "\n"
    "They sent this to everyone, see below.\n"
    "To: body@not-a-recipient.example\n"
    "--outer=_1 \n"  # 15, transport padding after the boundary
    "Content-Type: message/rfc822\n"
    "Content-Disposition: attachment\n"
    "\n"
    "From: news@exchange.example\n"  # 19: the forwarded mass mail
    'To: a@x.org, "Smith, Bob" <b@x.org>,\n'  # 20
    " c@x.org\n"
    "Cc: d@x.org\n"  # 22
    "Subject: Your monthly update\n"
    "Content-Type: multipart/alternative; boundary=inner\n"
    "\n"
    "--inner\n"
    "Content-Type: text/plain\n"
    "\n"
    "Cc: inner-body@not-a-recipient.example\n"
    "--inner--\n"
    "\n"
    "--outer=_1\n"  # 32
    "Content-Type: text/rfc822-headers\n"
    "\n"
    "To: e@x.org\n"  # 35: a bounce's copy of the original header
    "Subject: returned\n"
    "\n"
    "Bcc: after-the-headers@not-a-recipient.example\n"
    "--outer=_1\n"  # 39
    "Content-Type: multipart/digest; boundary=dig\n"
    "\n"
    "--dig\n"
    "\n"  # a digest part without a Content-Type is a message
    "To: f@x.org\n"  # 44
    "\n"
    "--dig--\n"
    "--outer=_1\n"
    "Content-Type: message/rfc822\n"
    "Content-Transfer-Encoding: base64\n"  # RFC 2046 forbids it, mail programs send it
    "\n"
    "VG86IGdAeC5vcmcNCg==\n"
    "--outer=_1--\n"
    "\n"
    "To: epilogue@not-a-recipient.example\n"
)


@pytest.mark.parametrize("line_end", ["\n", "\r\n"])
def test_eml_reads_the_recipients_of_a_mail_forwarded_as_an_attachment(
    tmp_path: Path, line_end: str
) -> None:
    # A leak often reaches the operator forwarded: the mass mail is a message/rfc822 part.
    # Only the outer To: (the forwarder's recipient) was read, none of the leaked addresses.
    source, records = read(write(tmp_path, "fwd.eml", FORWARDED.replace("\n", line_end)))
    assert source.format is LeakFormat.EML
    assert records == [
        R(2, "security@ours.example"),
        R(20, "a@x.org"),
        R(20, "b@x.org"),
        R(20, "c@x.org"),
        R(22, "d@x.org"),
        R(35, "e@x.org"),
        R(44, "f@x.org"),
        R(51, "g@x.org"),  # decoded: it was skipped
    ]
    with open_leak(tmp_path / "fwd.eml") as reader:
        assert list(reader.records(skip=4)) == records[4:]


def test_mbox_of_forwarded_mails_reads_each_message_and_its_attachment(tmp_path: Path) -> None:
    one = FORWARDED.split("--outer=_1\nContent-Type: text/rfc822-headers")[0] + "--outer=_1--\n"
    text = (
        "From user@elsewhere.example Fri Nov  1 09:12:44 2019\n"
        + one
        + "\nFrom other@y.org Fri Nov  1 10:00:00 2019\n"
        + "Content-Type: multipart/mixed; boundary=never-closed\n"
        + "To: g@x.org\n"
        + "\n--never-closed\nContent-Type: text/plain\n\nbody\n"
        + "From third@z.org Fri Nov  1 11:00:00 2019\n"  # a new message ends the open parts
        + "To: h@x.org\n\n--never-closed\n\nTo: not-a-part@not-a-recipient.example\n"
    )
    _, records = read(write(tmp_path, "leak.mbox", text))
    assert candidates(records) == [
        "security@ours.example",
        "a@x.org",
        "b@x.org",
        "c@x.org",
        "d@x.org",
        "g@x.org",
        "h@x.org",
    ]


# --- text ----------------------------------------------------------------------------------


def test_text_finds_every_address_shaped_token_in_prose(tmp_path: Path) -> None:
    text = (
        "Leaked by 'jane@x.org', see ...bob@y.com.\n"
        "nothing here\n"
        "o'brien@bücher.de, <mailto:Z.Z+tag@mail.example.io>; user@localhost\n"
    )
    path = write(tmp_path, "paste.txt", text)
    assert read(path)[0].format is LeakFormat.LINES  # free text is never guessed
    _, records = read(path, LeakFormat.TEXT)
    assert records == [
        R(1, "jane@x.org"),
        R(1, "bob@y.com"),
        R(3, "o'brien@bücher.de"),
        R(3, "Z.Z+tag@mail.example.io"),
    ]


def test_text_is_linear_on_hostile_lines(tmp_path: Path) -> None:
    hostile = ("a." * (MAX_LINE_BYTES // 4)) + " " + ("b'" * (MAX_LINE_BYTES // 4)) + "\n"
    started = time.perf_counter()
    _, records = read(write(tmp_path, "paste.txt", hostile * 4 + "x@y.org\n"), LeakFormat.TEXT)
    # A hang guard, not a timing test: linear scanning takes well under a second; quadratic
    # backtracking over these half-megabyte runs would take hours, so a loaded machine's
    # slowness never reaches the bound.
    assert time.perf_counter() - started < 60
    assert records == [R(5, "x@y.org")]


# --- auto-detection ------------------------------------------------------------------------

DETECTED = [
    ("mass-mail", mass_mail(20)[0], LeakFormat.EML),
    ("mbox", b"From a@b.c Mon Jan  1 00:00:00 2024\nTo: x@y.org\n\n", LeakFormat.EML),
    ("headers", b"Message-ID: <1@x>\nSubject: hi\nTo: x@y.org\n\nbody\n", LeakFormat.EML),
    ("jsonl", b'\n{"email": "x@y.org"}\n', LeakFormat.JSONL),
    ("json-array", b'[\n{"email": "x@y.org"},\n{"email": "z@y.org"}\n]\n', LeakFormat.JSONL),
    ("json-array-one-line", b'[{"email": "x@y.org"}, {"email": "z@y.org"}]', LeakFormat.JSON),
    ("json-pretty", b'[\n  {\n    "email": "x@y.org"\n  }\n]\n', LeakFormat.JSON),
    ("json-stream", b'{\n  "user": {"mail": "x@y.org"}\n}\n{\n  "id": 2\n}\n', LeakFormat.JSON),
    ("json-strings", b'["x@y.org", "z@y.org"]', LeakFormat.JSON),
    ("csv", b"id;E-mail;pw\n1;x@y.org;a\n", LeakFormat.CSV),
    ("tsv-headerless", b"1\tx@y.org\tJ\n2\tz@y.org\tK\n", LeakFormat.CSV),
    ("csv-sep-line", b"sep=;\nmail;pw\nx@y.org;a\n", LeakFormat.CSV),
    ("csv-under-title", b"Users\n2024-01-02\n\nid,email\n1,x@y.org\n", LeakFormat.CSV),
    ("combo-colon", b"x@y.org:pw1\nz@y.org:pw2\n", LeakFormat.COMBO),
    ("combo-comma", b"x@y.org,pw1\nz@y.org,pw2\n", LeakFormat.COMBO),
    ("combo-semicolon", b"x@y.org;pw1\nz@y.org;pw2\n", LeakFormat.COMBO),
    ("combo-bar", b"x@y.org|pw1\nz@y.org|p|w2\n", LeakFormat.COMBO),
    (
        "combo-stealer",
        b"https://shop.example.net/login:x@y.org:pw1\nandroid://k==@com.a.b/:z@y.org:pw2\n",
        LeakFormat.COMBO,
    ),
    ("combo-login-first", b"x:x@y.org:pw1\nz:z@y.org:pw2\n", LeakFormat.COMBO),
    ("combo-under-subject", b"Subject: dump\nx@y.org:pw1\nz@y.org:pw2\n", LeakFormat.COMBO),
    ("lines", b"x@y.org\nJane <z@y.org>\n", LeakFormat.LINES),
    ("prose", b"Dear all, write to x@y.org: thanks.\nBye\n", LeakFormat.LINES),
    ("empty", b"", LeakFormat.LINES),
]


@pytest.mark.parametrize(("name", "data", "expected"), DETECTED, ids=[d[0] for d in DETECTED])
def test_auto_detection_picks_the_format_and_says_so(
    tmp_path: Path, name: str, data: bytes, expected: LeakFormat
) -> None:
    source, records = read(write(tmp_path, name, data))
    assert source.format is expected
    assert source.compression is None
    if data:
        assert any(record.candidate for record in records)


# --- containers and encodings --------------------------------------------------------------

COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress,
    "bz2": bz2.compress,
    "xz": lzma.compress,
}


@pytest.mark.parametrize("compression", sorted(COMPRESSORS))
def test_compressed_files_are_detected_by_magic_and_streamed(
    tmp_path: Path, compression: str
) -> None:
    rows = "".join(f"user{n}@x.org:pw{n}\n" for n in range(30000))  # several blocks
    path = write(tmp_path, "leak.txt", COMPRESSORS[compression](rows.encode()))
    source, records = read(path)
    assert (source.format, source.compression, source.encoding) == (
        LeakFormat.COMBO,
        compression,
        "utf-8",
    )
    assert source.size == path.stat().st_size
    assert records[-1] == R(30000, "user29999@x.org", "pw29999")
    assert len(records) == 30000


def test_a_gz_name_on_plain_text_is_read_as_plain_text(tmp_path: Path) -> None:
    source, records = read(write(tmp_path, "leak.txt.gz", "jane@x.org\n"))
    assert source.compression is None
    assert records == [R(1, "jane@x.org")]


@pytest.mark.parametrize(
    ("encoded", "encoding"),
    [
        (codecs.BOM_UTF8 + "email\nJürgen@bücher.de\r\nb@x.org\rc@x.org".encode(), "utf-8"),
        ("\ufeffemail\nJürgen@bücher.de\r\nb@x.org\rc@x.org".encode("utf-16-le"), "utf-16"),
        ("\ufeffemail\nJürgen@bücher.de\r\nb@x.org\rc@x.org".encode("utf-16-be"), "utf-16"),
        ("\ufeffemail\nJürgen@bücher.de\r\nb@x.org\rc@x.org".encode("utf-32"), "utf-32"),
        ("email\nJürgen@bücher.de\r\nb@x.org\rc@x.org".encode("utf-16-le"), "utf-16-le"),
    ],
)
def test_boms_utf16_and_every_line_end_are_read(
    tmp_path: Path, encoded: bytes, encoding: str
) -> None:
    for name, data in (("plain", encoded), ("gzipped", gzip.compress(encoded))):
        source, records = read(write(tmp_path, name, data))
        assert source.encoding == encoding
        assert records == [R(1, None), R(2, "Jürgen@bücher.de"), R(3, "b@x.org"), R(4, "c@x.org")]


def test_a_crlf_split_across_blocks_is_one_line_end(tmp_path: Path) -> None:
    first = b"a@x.org\n" * ((MAX_LINE_BYTES - 9) // 8) + b"b@x.org"
    first += b"-" * (MAX_LINE_BYTES - 1 - len(first)) + b"\r"
    path = write(tmp_path, "leak.txt", first + b"\nc@x.org\r\n")
    _, records = read(path, LeakFormat.LINES)
    assert records[-1] == R(len(records), "c@x.org")
    assert len(records) == first.count(b"\n") + 2


# --- resumption and the reader's life cycle ------------------------------------------------

SAMPLES: dict[LeakFormat, bytes] = {
    LeakFormat.LINES: b"a@x.org\n\nno at\n  b@x.org  \n\xff\n",
    LeakFormat.CSV: b'email;password\na@x.org;1\n\n"b@x.org";"2\n2"\nnone;3\nc@x.org;\n',
    LeakFormat.COMBO: b"a@x.org:1\n\nb@x.org;2\nno at\nc@x.org\n",
    LeakFormat.JSONL: b'{"email": "a@x.org"}\n\n{bad\n{"mail": "b@x.org", "pwd": "p"}\n[1]\n',
    LeakFormat.JSON: (
        b'[\n {"email": "a@x.org"},\n {"x": 1},\n {"u": {"mail": "b@x.org"}},\n "c@x.org"\n]'
    ),
    LeakFormat.EML: b"From x Mon\nTo: a@x.org, b@x.org\nCc: c@x.org\n\nFrom y Tue\nTo: d@x.org\n",
    LeakFormat.TEXT: b"see a@x.org and b@x.org\nnone\nc@x.org\n(d@x.org)",
}


@pytest.mark.parametrize("fmt", sorted(SAMPLES))
def test_skip_yields_exactly_the_suffix_of_the_full_sequence(
    tmp_path: Path, fmt: LeakFormat
) -> None:
    path = write(tmp_path, f"sample-{fmt}", SAMPLES[fmt])
    _, everything = read(path, fmt)
    assert len(everything) >= 4
    for skip in range(len(everything) + 2):
        assert read(path, fmt, skip=skip)[1] == everything[skip:]


@pytest.mark.parametrize("fmt", [LeakFormat.LINES, LeakFormat.COMBO, LeakFormat.JSONL])
def test_skip_over_whole_blocks_matches_the_full_sequence(tmp_path: Path, fmt: LeakFormat) -> None:
    line = {
        LeakFormat.LINES: "u{n}@x.org",
        LeakFormat.COMBO: "u{n}@x.org:p{n}",
        LeakFormat.JSONL: '{{"email": "u{n}@x.org"}}',
    }[fmt]
    text = "".join(line.format(n=n) + ("\n\n \n" if n % 3 else "\nnope\n") for n in range(40000))
    path = write(tmp_path, "big.txt", gzip.compress(text.encode()))
    _, everything = read(path, fmt)
    for skip in (0, 1, 9999, 20000, 33333, len(everything) - 1, len(everything)):
        assert read(path, fmt, skip=skip)[1] == everything[skip:]


def test_records_can_be_read_twice_and_close_ends_an_open_iteration(tmp_path: Path) -> None:
    path = write(tmp_path, "leak.txt", "a@x.org\nb@x.org\n")
    with open_leak(path) as reader:
        assert list(reader.records()) == list(reader.records())
        iterator = reader.records()
        assert next(iterator) == R(1, "a@x.org")
    assert list(iterator) == []
    with pytest.raises(ValueError, match="closed"):
        reader.records()


def test_a_file_replaced_after_opening_is_a_file_error(tmp_path: Path) -> None:
    path = write(tmp_path, "leak.txt", "a@x.org\n")
    with open_leak(path) as reader:
        path.write_text("a@x.org\nb@x.org\n")
        with pytest.raises(LeakFileError, match="changed"):
            list(reader.records())


# --- unreadable files ----------------------------------------------------------------------


def test_missing_file_and_directory_are_file_errors(tmp_path: Path) -> None:
    with pytest.raises(LeakFileError, match="no such file"):
        open_leak(tmp_path / "missing.txt")
    with pytest.raises(LeakFileError, match="directory"):
        open_leak(tmp_path)


def test_an_archive_is_a_file_error_that_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(LeakFileError, match="zip archive; extract"):
        open_leak(write(tmp_path, "leak.zip", b"PK\x03\x04" + b"\x00" * 40))


def tar_of(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.mark.parametrize("kind", [None, "gzip", "bz2", "xz"])
@pytest.mark.parametrize("fmt", [LeakFormat.AUTO, LeakFormat.LINES, LeakFormat.TEXT])
def test_a_tar_archive_is_a_file_error_not_its_files_run_together(
    tmp_path: Path, kind: str | None, fmt: LeakFormat
) -> None:
    # leak.tar.gz of a CSV and a list was read as one text: the tar headers and both files'
    # lines as records of one format (the list's lines as CSV rows), with no word of it.
    data = tar_of({"dump/users.csv": b"id,email\n1,a@x.org\n", "dump/b.txt": b"b@y.org\n"})
    if kind is not None:
        data = {"gzip": gzip.compress, "bz2": bz2.compress, "xz": lzma.compress}[kind](data)
    path = write(tmp_path, "leak.tar" + ("" if kind is None else f".{kind}"), data)
    what = "a tar archive" if kind is None else f"a {kind}-compressed tar"
    with pytest.raises(LeakFileError, match=f"{what}; extract it first and ingest each file"):
        open_leak(path, fmt)


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (
            b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + "a@x.org".encode("utf-16-le"),
            "save the mail as .eml",
        ),
        (b"%PDF-1.7\n(a@x.org)\n", "extract its text first"),
    ],
)
def test_a_mail_program_file_or_pdf_is_a_file_error_saying_what_to_do(
    tmp_path: Path, data: bytes, says: str
) -> None:
    # An Outlook .msg (a mass mail saved from Outlook) read as text gave "no valid address",
    # or the strings its binary structure happened to hold.
    with pytest.raises(LeakFileError, match=says):
        open_leak(write(tmp_path, "leak.bin", data))


COMPRESSORS = {"gzip": gzip.compress, "bz2": bz2.compress, "xz": lzma.compress}


@pytest.mark.parametrize("kind", list(COMPRESSORS))
@pytest.mark.parametrize("fmt", [LeakFormat.LINES, LeakFormat.CSV, LeakFormat.TEXT])
def test_a_truncated_stream_yields_every_complete_line_before_the_cut_and_ends(
    tmp_path: Path, kind: str, fmt: LeakFormat
) -> None:
    # Before: LeakFileError "truncated" after some records, a little further at each pass
    # (read() lost the text it had decompressed in the call that hit the cut).
    header = "email\n" if fmt is LeakFormat.CSV else ""
    text = header + "".join(f"user{n}@x.org\n" for n in range(100_000))
    whole = COMPRESSORS[kind](text.encode())
    cut = whole[: len(whole) * 9 // 10]
    path = write(tmp_path, f"leak.{kind}", cut)
    with open_leak(path, fmt) as reader:
        got = list(reader.records())
        assert reader.truncated_at == len(cut)
        again = list(reader.records())
    first = 2 if header else 1
    assert got == [R(n + first, f"user{n}@x.org") for n in range(len(got))]
    assert again == got
    # Every complete line the stream holds before the cut, and not the cut one.
    decompressor = {
        "gzip": lambda: zlib.decompressobj(31),
        "bz2": bz2.BZ2Decompressor,
        "xz": lzma.LZMADecompressor,
    }[kind]()
    readable = decompressor.decompress(cut).decode()
    assert len(got) == readable.count("\n") - header.count("\n")
    with open_leak(path, fmt) as reader:
        assert list(reader.records(skip=len(got) - 3)) == got[-3:]


def test_a_whole_stream_is_not_truncated(tmp_path: Path) -> None:
    path = write(tmp_path, "leak.gz", gzip.compress(b"a@x.org\n" * 10))
    with open_leak(path) as reader:
        assert len(list(reader.records())) == 10
        assert reader.truncated_at is None


def test_a_corrupt_gzip_is_a_file_error(tmp_path: Path) -> None:
    whole = bytearray(gzip.compress(b"a@x.org\n" * 1000))
    whole[20:40] = b"\xff" * 20
    with (
        open_leak(write(tmp_path, "leak.gz", bytes(whole))) as reader,
        pytest.raises(LeakFileError, match="corrupt"),
    ):
        list(reader.records())


# --- bounded memory ------------------------------------------------------------------------


def peak_bytes_while_reading(path: Path, fmt: LeakFormat) -> tuple[int, list[LeakRecord]]:
    tracemalloc.start()
    try:
        _, records = read(path, fmt)
        return tracemalloc.get_traced_memory()[1], records
    finally:
        tracemalloc.stop()


def test_a_50_mb_line_without_newline_stays_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "one-line.txt"
    chunk = b"x@y.org " * (1024 * 1024 // 8)
    with path.open("wb") as handle:
        for _ in range(50):
            handle.write(chunk)
    peak, records = peak_bytes_while_reading(path, LeakFormat.LINES)
    assert peak < 20 * 1024 * 1024
    assert len(records) == 1
    assert len(records[0].candidate or "") <= MAX_LINE_BYTES


@pytest.mark.parametrize("fmt", [LeakFormat.AUTO, LeakFormat.EML, LeakFormat.TEXT])
def test_a_gzip_bomb_of_one_endless_line_stays_in_bounded_memory(
    tmp_path_factory: pytest.TempPathFactory, fmt: LeakFormat
) -> None:
    path = tmp_path_factory.getbasetemp() / "bomb.gz"
    if not path.exists():
        zeros = bytes(1024 * 1024)
        with gzip.open(path, "wb", compresslevel=1) as handle:
            for _ in range(200):
                handle.write(zeros)
    peak, records = peak_bytes_while_reading(path, fmt)
    assert peak < 20 * 1024 * 1024
    assert len(records) <= 1


def test_an_endless_folded_header_stays_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "endless.eml"
    with path.open("wb") as handle:
        handle.write(b'To: "unclosed quote <a@x.org>,\n')
        for _ in range(8):  # eight times the cap on one field
            handle.write(b" b@x.org\n" * (1024 * 1024 // 9))
        handle.write(b"Cc: after@x.org\n")
    peak, records = peak_bytes_while_reading(path, LeakFormat.EML)
    assert peak < 20 * 1024 * 1024
    assert records[-1] == R(8 * (1024 * 1024 // 9) + 2, "after@x.org")


# --- properties ----------------------------------------------------------------------------

PREFIXES = [
    b"",
    codecs.BOM_UTF8,
    codecs.BOM_UTF16_LE,
    codecs.BOM_UTF16_BE,
    b"\x1f\x8b\x08\x00",
    b"BZh9",
    b"\xfd7zXZ\x00",
    b"From ",
    b"{",
    b"[\n  {\n",
    b'[{"email": "a@x.org"}, ',
    b"\x00" * 64,
    b"To: ",
    b"email,password\n",
    b"sep=;\ntitle\n\nemail;pw\n",
    b"https://u@h.example/p:",
    b"login:",
]
TOKENS = [b"@", b":", b";", b"|", b",", b"\t", b"\n", b"\r", b'"', b"<", b">", b"(", b"{"]
HOSTILE = st.one_of(
    st.binary(max_size=600),
    st.lists(st.sampled_from([*TOKENS, b"a", b"x.org", b"\xff", b" ", b"\x00"]), max_size=200).map(
        b"".join
    ),
)


@pytest.mark.parametrize("fmt", list(LeakFormat))
@PROPERTY
@given(prefix=st.sampled_from(PREFIXES), body=HOSTILE, compress=st.booleans())
def test_arbitrary_bytes_never_raise_anything_but_a_file_error(
    tmp_path: Path, fmt: LeakFormat, prefix: bytes, body: bytes, compress: bool
) -> None:
    data = prefix + body
    if compress:
        data = gzip.compress(data)[: len(data) + 10]  # sometimes whole, sometimes truncated
    path = write(tmp_path, "fuzz.bin", data)
    error = ""
    try:
        with open_leak(path, fmt) as reader:
            first = list(reader.records())
            assert list(reader.records(skip=len(first) // 2)) == first[len(first) // 2 :]
    except LeakFileError as exc:
        error = str(exc)
    assert "\n" not in error


LOCAL = st.from_regex(r"[a-z0-9]{1,8}(\.[a-z0-9_+-]{1,8}){0,2}", fullmatch=True)
DOMAIN = st.from_regex(r"[a-z0-9]{1,10}(\.[a-z0-9]{1,8}){0,2}\.[a-z]{2,6}", fullmatch=True)
ADDRESS = st.builds("{}@{}".format, LOCAL, DOMAIN)
PASSWORD = st.text(
    st.characters(blacklist_categories=["Cs"], blacklist_characters="\r\n"), min_size=1
)
# Each address with its password: only as many passwords drawn as there are rows.
ROWS = st.lists(st.tuples(ADDRESS, PASSWORD), min_size=1, max_size=30)


def encode_leak(fmt: LeakFormat, rows: list[tuple[str, str]], delimiter: str) -> str:
    if fmt is LeakFormat.LINES:
        return "".join(f"  {address}\n\n" for address, _ in rows)
    if fmt is LeakFormat.COMBO:
        return "".join(f"{address}{delimiter}{password}\r\n" for address, password in rows)
    if fmt is LeakFormat.JSONL:
        return "".join(
            json.dumps({"Email": address, "pass": password}, ensure_ascii=False) + "\n"
            for address, password in rows
        )
    if fmt is LeakFormat.CSV:
        out = io.StringIO()
        writer = csv.writer(out, delimiter=delimiter)
        writer.writerow(["password", "e-mail"])
        writer.writerows((password, address) for address, password in rows)
        return out.getvalue()
    if fmt is LeakFormat.JSON:  # pretty-printed, the address one level down
        documents = [{"user": {"Email": address}, "pass": password} for address, password in rows]
        return json.dumps(documents, indent=2, ensure_ascii=False)
    if fmt is LeakFormat.EML:
        return "From: x@sender.example\nTo: " + ",\n ".join(a for a, _ in rows) + "\n\nbody\n"
    return "".join(f"Write to {address}, now.\n" for address, _ in rows)


@PROPERTY
@given(
    rows=ROWS,
    login=LOCAL,
    separator=st.sampled_from([":", ";"]),
    url=st.sampled_from(["", "https://{login}@shop.example.net/login", "android://k==@com.x.y/"]),
)
def test_combo_lines_of_more_fields_read_back_exactly(
    tmp_path: Path, rows: list[tuple[str, str]], login: str, separator: str, url: str
) -> None:
    prefix = url.format(login=login) + separator if url else ""
    text = "".join(
        f"{prefix}{login}{separator}{address}{separator}{password}\n" for address, password in rows
    )
    _, records = read(write(tmp_path, "combo.txt", text), LeakFormat.COMBO)
    assert [(r.candidate, r.password) for r in records] == rows


@pytest.mark.parametrize("fmt", CONCRETE_FORMATS)
@PROPERTY
@given(
    rows=ROWS,
    delimiter=st.sampled_from([",", ";", "\t", "|", ":"]),
    compression=st.sampled_from([None, *sorted(COMPRESSORS)]),
)
def test_written_leaks_read_back_exactly(
    tmp_path: Path,
    fmt: LeakFormat,
    rows: list[tuple[str, str]],
    delimiter: str,
    compression: str | None,
) -> None:
    if fmt is LeakFormat.CSV and delimiter == ":":
        delimiter = ","
    if fmt is LeakFormat.COMBO and delimiter in ",\t":
        delimiter = ":"
    addresses = [address for address, _ in rows]
    data = encode_leak(fmt, rows, delimiter).encode("utf-8")
    if compression is not None:
        data = COMPRESSORS[compression](data)
    source, records = read(write(tmp_path, "leak.bin", data), fmt)
    assert source.compression == compression
    assert candidates(records) == addresses
    if fmt in (LeakFormat.COMBO, LeakFormat.JSONL, LeakFormat.JSON, LeakFormat.CSV):
        assert [record.password for record in records] == [password for _, password in rows]


def test_expanded_bytes_counts_a_compressed_file_and_stops_past_the_limit(
    tmp_path: Path,
) -> None:
    text = b"ann@example.org\n" * 10_000
    plain = tmp_path / "plain.txt"
    plain.write_bytes(text)
    assert expanded_bytes(plain, limit=10) is None
    for name, compress in (
        ("a.gz", gzip.compress),
        ("a.bz2", bz2.compress),
        ("a.xz", lzma.compress),
    ):
        path = tmp_path / name
        path.write_bytes(compress(text))
        assert expanded_bytes(path, limit=len(text)) == len(text)
        assert len(text) // 2 < expanded_bytes(path, limit=len(text) // 2)  # type: ignore[operator]
    bomb = tmp_path / "bomb.gz"
    bomb.write_bytes(gzip.compress(b"\n" * (20 * 1024 * 1024)))
    # Read only to just past the limit: a block of the 20 MiB.
    assert 1024 < (expanded_bytes(bomb, limit=1024) or 0) <= 1024 + MAX_LINE_BYTES
    cut = tmp_path / "cut.gz"
    cut.write_bytes(gzip.compress(text)[:-20])
    assert 0 < (expanded_bytes(cut, limit=len(text)) or 0) <= len(text)


# --- several recipients a line, several address columns ------------------------------------

# Recipients as people paste them, two lines each: every separator a combo line may use.
# Before, each was read as a combo list with b@y.org as a's password (tab: as one address).
RECIPIENT_LINES = {
    "semicolon": ("a@x.org;b@y.org", "c@x.org;d@y.org"),
    "semicolon-spaced-trailing": ("a@x.org; b@y.org;", "c@x.org; d@y.org;"),
    "outlook-named": ('"Ann" <a@x.org>; "Bob" <b@y.org>', '"Cy" <c@x.org>; "Di" <d@y.org>'),
    "colon": ("a@x.org:b@y.org", "c@x.org:d@y.org"),
    "pipe": ("a@x.org|b@y.org", "c@x.org|d@y.org"),
    "tab": ("a@x.org\tb@y.org", "c@x.org\td@y.org"),
    "comma": ("a@x.org,b@y.org", "c@x.org,d@y.org"),
}


@pytest.mark.parametrize("fmt", [LeakFormat.AUTO, LeakFormat.COMBO])
@pytest.mark.parametrize("case", list(RECIPIENT_LINES))
def test_a_line_of_several_recipients_is_a_record_each_without_a_password(
    tmp_path: Path, case: str, fmt: LeakFormat
) -> None:
    path = write(tmp_path, "leak.txt", "\n".join(RECIPIENT_LINES[case]) + "\n")
    source, records = read(path, fmt)
    if fmt is LeakFormat.AUTO:
        assert source.format is LeakFormat.LINES  # not a combo list: no password in it
    assert [(r.line, r.password) for r in records] == [(1, None), (1, None), (2, None), (2, None)]
    found = [canonicalize_email(c or "") for c in candidates(records)]
    assert [getattr(f, "address", None) for f in found] == [
        "a@x.org",
        "b@y.org",
        "c@x.org",
        "d@y.org",
    ]


def test_combo_a_line_of_three_recipients_and_real_passwords_beside_it(tmp_path: Path) -> None:
    text = (
        "a@x.org;b@y.org;e@z.org\nc@x.org:p@ss\nf@x.org:hunter2 g@y.org\nh@x.org|pw\n"
        "no address\n"  # a line without an "@" beside one with two
    )
    for fmt in (LeakFormat.AUTO, LeakFormat.COMBO):
        source, records = read(write(tmp_path, "leak.txt", text), fmt)
        assert source.format is LeakFormat.COMBO
        assert records == [
            R(1, "a@x.org"),
            R(1, "b@y.org"),
            R(1, "e@z.org"),
            R(2, "c@x.org", "p@ss"),  # no address: a password with an '@' stays one
            R(3, "f@x.org", "hunter2 g@y.org"),  # not only mailboxes: the password
            R(4, "h@x.org", "pw"),
            R(5, None),
        ]
        # Resuming counts the split records: the same record, whatever the skip.
        with open_leak(write(tmp_path, "leak.txt", text), fmt) as reader:
            assert list(reader.records(skip=2)) == records[2:]


def test_combo_detection_is_not_fooled_by_recipient_lines_among_combos(tmp_path: Path) -> None:
    text = "a@x.org;b@y.org\nc@x.org;d@y.org\ne@x.org;pw\n"
    source, records = read(write(tmp_path, "leak.txt", text))
    assert source.format is LeakFormat.LINES
    assert candidates(records)[:4] == ["a@x.org", "b@y.org", "c@x.org", "d@y.org"]


CSV_ADDRESS_COLUMNS = {
    "id-email-cc": "id,email,cc\n1,a@x.org,b@y.org\n2,c@x.org,\n3,,d@y.org\n",
    "headerless": "1,a@x.org,b@y.org\n2,c@x.org,\n3,,d@y.org\n",
    "secondary": "name,email,secondary_email\nA,a@x.org,b@y.org\nC,c@x.org,\nD,,d@y.org\n",
    "to-cc-bcc": "to,cc,bcc\na@x.org,b@y.org,\nc@x.org,,\n,d@y.org,\n",
}


@pytest.mark.parametrize("case", list(CSV_ADDRESS_COLUMNS))
def test_csv_reads_every_address_column_each_at_its_line(tmp_path: Path, case: str) -> None:
    # Before, only the first address column was read: b@y.org and d@y.org were lost.
    text = CSV_ADDRESS_COLUMNS[case]
    first = 1 if case == "headerless" else 2
    source, records = read(write(tmp_path, "leak.csv", text))
    assert source.format is LeakFormat.CSV
    assert records == [
        R(first, "a@x.org"),
        R(first, "b@y.org"),
        R(first + 1, "c@x.org"),
        R(first + 2, "d@y.org"),
    ]


def test_csv_other_address_columns_get_no_password_and_no_sender(tmp_path: Path) -> None:
    text = "from,to,cc,password\nboss@corp.org,a@x.org,b@y.org,pw\n,,,\nboss@corp.org,,,\n"
    with open_leak(write(tmp_path, "leak.csv", text)) as reader:
        records = list(reader.records())
        assert (
            reader.read_as
            == "csv ','-separated, address column 2 and 3, password column 4, from line 2"
        )
    # The sender is the leaker, never a record; a row with no recipient is one invalid record.
    assert records == [R(2, "a@x.org", "pw"), R(2, "b@y.org"), R(4, None)]


def test_csv_of_one_address_column_keeps_its_identity(tmp_path: Path) -> None:
    # Files recorded before several columns were read stay the same file.
    with open_leak(write(tmp_path, "leak.csv", "name,email\nA,a@x.org\n")) as reader:
        assert reader.read_as == "csv ','-separated, address column 2, from line 2"


# --- mails forwarded inline, and attached messages sent encoded ----------------------------


def _inline(marker: str, block: str, *, intro: str = "FYI, see below.\n") -> str:
    return (
        "From: Forwarder <fwd@ours.example>\n"  # 1
        "To: security@ours.example\n"  # 2
        "Subject: Fwd: Your monthly update\n"
        "Content-Type: text/plain; charset=utf-8\n"
        "\n"
        f"{intro}"  # 6
        "To: not-a-block@not-a-recipient.example\n"  # a body line with no marker above it
        f"{marker}\n"  # 8
        f"{block}"
        "\n"
        "Hello all,\n"
        "To: in-the-body@not-a-recipient.example\n"  # the forwarded mail's body
    )


GMAIL_BLOCK = (
    "From: News <news@exchange.example>\n"  # 9
    "Date: Mon, 4 Nov 2019 at 09:00\n"
    "Subject: Your monthly update\n"
    'To: a@x.org, "Smith, Bob" <b@x.org>,\n'  # 12
    " c@x.org\n"
    "Cc: <d@x.org>\n"  # 14
    "Reply-To: leaker-reply@not-a-recipient.example\n"
)
INLINE_FORWARDS = {
    "gmail": ("---------- Forwarded message ---------", GMAIL_BLOCK),
    "thunderbird": ("-------- Forwarded Message --------", GMAIL_BLOCK),
    "outlook": ("-----Original Message-----", GMAIL_BLOCK),
    "outlook-rule": ("_" * 32, GMAIL_BLOCK),
    "apple": ("Begin forwarded message:", GMAIL_BLOCK),
}
INLINE_RECORDS = [
    R(2, "security@ours.example"),
    R(12, "a@x.org"),
    R(12, "b@x.org"),
    R(12, "c@x.org"),
    R(14, "d@x.org"),
]


@pytest.mark.parametrize("case", list(INLINE_FORWARDS))
def test_eml_reads_the_recipients_of_a_mail_forwarded_inline(tmp_path: Path, case: str) -> None:
    # Before, only the forwarder's recipient (line 2) was read: the body was skipped.
    marker, block = INLINE_FORWARDS[case]
    source, records = read(write(tmp_path, "fwd.eml", _inline(marker, block)))
    assert source.format is LeakFormat.EML
    assert records == INLINE_RECORDS
    with open_leak(tmp_path / "fwd.eml") as reader:
        assert list(reader.records(skip=2)) == records[2:]


def test_eml_apple_mail_blank_line_below_the_marker_and_quoted_forward(tmp_path: Path) -> None:
    text = _inline("Begin forwarded message:\n", GMAIL_BLOCK)  # a blank line after it
    _, records = read(write(tmp_path, "apple.eml", text))
    assert [(r.line - 1 if r.line > 2 else r.line, r.candidate) for r in records] == [
        (r.line, r.candidate) for r in INLINE_RECORDS
    ]
    quoted = "".join(f"> {line}\n" for line in GMAIL_BLOCK.splitlines())
    _, records = read(
        write(tmp_path, "quoted.eml", _inline("> -----Original Message-----", quoted))
    )
    assert records == INLINE_RECORDS


def test_eml_an_inline_forward_in_an_encoded_text_part_of_a_multipart(tmp_path: Path) -> None:
    import base64
    import quopri

    forwarded = "---------- Forwarded message ---------\r\n" + GMAIL_BLOCK.replace("\n", "\r\n")
    long_to = "To: " + ", ".join(f"u{n}@x.org" for n in range(40)) + "\r\n"
    qp = quopri.encodestring((forwarded + long_to).encode()).decode()  # soft line breaks
    b64 = base64.encodebytes(forwarded.encode()).decode()
    text = (
        "To: security@ours.example\n"
        "Content-Type: multipart/alternative; boundary=b\n"
        "\n"
        "--b\n"
        "Content-Type: text/plain; charset=utf-8\n"
        "Content-Transfer-Encoding: quoted-printable\n"
        "\n"
        f"{qp}\n"
        "--b\n"
        "Content-Type: text/plain; charset=utf-8\n"
        "Content-Transfer-Encoding: base64\n"
        "\n"
        f"{b64}"
        "--b\n"
        "Content-Type: text/html\n"
        "\n"
        "<p>To: html@not-a-recipient.example</p>\n"
        "--b--\n"
    )
    _, records = read(write(tmp_path, "enc.eml", text))
    got = candidates(records)
    assert got[0] == "security@ours.example"
    assert got[1:5] == ["a@x.org", "b@x.org", "c@x.org", "d@x.org"]
    assert got[5:45] == [f"u{n}@x.org" for n in range(40)]  # one To: over soft line breaks
    assert got[45:] == ["a@x.org", "b@x.org", "c@x.org", "d@x.org"]
    assert not any("not-a-recipient" in (c or "") for c in got)


@pytest.mark.parametrize("encoding", ["base64", "quoted-printable"])
def test_eml_an_attached_message_sent_encoded_is_decoded(tmp_path: Path, encoding: str) -> None:
    import base64
    import quopri

    inner = (
        "From: news@exchange.example\r\n"
        "To: " + ", ".join(f"r{n}@x.org" for n in range(300)) + "\r\n"
        "Cc: last@x.org\r\n"
        "Subject: update\r\n"
        "\r\n"
        "To: inner-body@not-a-recipient.example\r\n"
    ).encode()
    body = (
        base64.encodebytes(inner) if encoding == "base64" else quopri.encodestring(inner)
    ).decode()
    text = (
        "To: security@ours.example\n"
        "Content-Type: multipart/mixed; boundary=o\n"
        "\n"
        "--o\n"
        "Content-Type: message/rfc822\n"
        f"Content-Transfer-Encoding: {encoding}\n"
        "\n"
        f"{body}"
        "--o\n"
        "Content-Type: text/plain\n"
        "\n"
        "To: after@not-a-recipient.example\n"
        "--o--\n"
    )
    _, records = read(write(tmp_path, "att.eml", text))
    assert candidates(records) == [
        "security@ours.example",
        *(f"r{n}@x.org" for n in range(300)),
        "last@x.org",
    ]
    assert all(8 <= r.line <= 8 + body.count("\n") for r in records[1:])  # in the part


@pytest.mark.parametrize("encoding", ["base64", "quoted-printable"])
def test_eml_an_encoded_attached_mass_mail_is_read_in_bounded_memory(
    tmp_path: Path, encoding: str
) -> None:
    import base64
    import quopri

    recipients = [f"p{n}@x.org" for n in range(100_000)]  # a To: of about 1.2 MB, one line
    inner = (
        "From: news@exchange.example\r\nTo: " + ", ".join(recipients) + "\r\n\r\n"
    ).encode() + b"body line\r\n" * 200_000
    body = base64.encodebytes(inner) if encoding == "base64" else quopri.encodestring(inner)
    head = (
        "To: security@ours.example\nContent-Type: multipart/mixed; boundary=o\n\n--o\n"
        f"Content-Type: message/rfc822\nContent-Transfer-Encoding: {encoding}\n\n"
    ).encode()
    path = write(tmp_path, "big.eml", head + body + b"--o--\n")
    tracemalloc.start()
    try:
        with open_leak(path) as reader:
            count = sum(len(batch) for batch in reader.batches())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 100_001
    # The same mail attached unencoded peaks at about 8.3 MiB; decoded at 1 MiB lines, 24.
    assert peak < 12 * 1024 * 1024


def test_combo_splits_recipients_beside_a_line_without_an_address(tmp_path: Path) -> None:
    # As many "@" as records in the batch: one line's second "@" is still found.
    path = write(tmp_path, "leak.txt", "a@x.org;b@y.org\nno address here\n")
    _, records = read(path, LeakFormat.COMBO)
    assert records == [R(1, "a@x.org"), R(1, "b@y.org"), R(2, None)]
