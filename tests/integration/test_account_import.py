"""The accounts CSV import, on SQLite and PostgreSQL: the job itself, its CLI contract, and
the one account upsert it shares with the API (the watch list flags alike)."""

from __future__ import annotations

import codecs
import json
import re
import signal
import subprocess
import threading
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy import select

from jobs.account_import import ImportAborted, ImportFileError, ImportInterrupted, import_accounts
from jobs.ingest.pipeline import ingest_leak
from service.config import Settings
from service.models import Account
from service.runtime import Runtime
from tests.support.cli import LEAKGUARD, cli_env, invoke, json_output, one_error_line
from tests.support.db import all_rows, exposures, notices
from tests.support.leakfiles import write_lines
from tests.support.processes import wait_for

# Eight chunks of 5,000 rows. Under tracemalloc the import runs about four times slower,
# so the file stays small; its 40,000 rows held at once take over 50 MiB, a streaming
# import stays far below the bound. (The 1,000,000-row figure is bench/import_accounts.py.)
MEMORY_ROWS = 40_000
MEMORY_CHUNK_ROWS = 5_000
MEMORY_BOUND_BYTES = 30 * 1024 * 1024


class Stored(NamedTuple):
    email: str
    email_key: bytes
    locale: str | None


def stored_accounts(runtime: Runtime) -> dict[str, Stored]:
    with runtime.db.read_session() as session:
        rows = session.execute(
            select(Account.external_id, Account.email, Account.email_key, Account.locale)
        )
        return {
            external_id: Stored(email, email_key, locale)
            for external_id, email, email_key, locale in rows
        }


def import_json(runner: FlaskCliRunner, path: Path) -> dict[str, object]:
    payload = json_output(invoke(runner, "accounts", "import", str(path), "--json"))
    assert isinstance(payload, dict)
    return payload


def assert_one_line(text: str) -> None:
    assert text.strip(), "expected a message"
    assert text.strip().count("\n") == 0, text


# --- the CLI contract -----------------------------------------------------------------


def test_cli_reports_counts_as_json_and_a_second_run_changes_nothing(
    runtime: Runtime, runner: FlaskCliRunner, tmp_path: Path
) -> None:
    lines = ["external_id,email,locale"] + [f"u{n},user{n}@example.com,en" for n in range(5)]
    first = import_json(runner, write_lines(tmp_path / "a.csv", lines))
    assert first["rows"] == 5
    assert first["created"] == 5
    assert first["updated"] == 0
    assert first["invalid"] == 0

    second = import_json(runner, tmp_path / "a.csv")
    assert (second["rows"], second["created"], second["updated"]) == (5, 0, 0)
    assert second["unchanged"] == 5

    lines[3] = "u2,someone-new@example.com,en"
    third = import_json(runner, write_lines(tmp_path / "b.csv", lines))
    assert (third["created"], third["updated"], third["unchanged"]) == (0, 1, 4)
    assert stored_accounts(runtime)["u2"].email == "someone-new@example.com"


def test_cli_never_prints_the_content_of_an_invalid_row(
    runtime: Runtime, runner: FlaskCliRunner, tmp_path: Path
) -> None:
    secret = "private-not-an-address-7f3a9"
    path = write_lines(
        tmp_path / "a.csv",
        ["external_id,email", "u1,ok@example.com", f"u2,{secret}", f"{secret}-only-field"],
    )
    as_json = invoke(runner, "accounts", "import", str(path), "--json")
    as_text = invoke(runner, "accounts", "import", str(path))
    for result in (as_json, as_text):
        assert result.exit_code == 0, result.stderr
        assert secret not in result.stdout
        assert secret not in result.stderr
    # The line numbers are what it reports instead.
    assert json.loads(as_json.stdout)["invalid_lines"] == [3, 4]
    assert "lines 3, 4" in as_text.stdout
    assert set(stored_accounts(runtime)) == {"u1"}


def test_cli_rejects_a_file_without_the_needed_columns_without_echoing_its_first_line(
    runtime: Runtime, runner: FlaskCliRunner, tmp_path: Path
) -> None:
    path = write_lines(
        tmp_path / "a.csv", ["u1,first-person-9b2c@example.com,en", "u2,b@example.com,de"]
    )
    result = invoke(runner, "accounts", "import", str(path), "--json")
    assert result.exit_code == 1
    assert result.stdout == ""
    line = one_error_line(result)
    assert "external_id" in line
    assert "email" in line
    assert "first-person-9b2c" not in line
    assert stored_accounts(runtime) == {}


@pytest.mark.parametrize(
    "kind",
    [
        "missing",
        "directory",
        "empty",
    ],
)
def test_cli_fails_with_one_line_for_a_file_it_cannot_import(
    runtime: Runtime, runner: FlaskCliRunner, tmp_path: Path, kind: str
) -> None:
    path = tmp_path / kind
    if kind == "directory":
        path.mkdir()
    elif kind == "empty":
        path.write_bytes(b"")
    result = invoke(runner, "accounts", "import", str(path), "--json")
    assert result.stdout == ""
    one_error_line(result)


@pytest.mark.parametrize("kind", ["missing", "directory", "empty"])
def test_a_file_it_cannot_import_raises_import_file_error(
    runtime: Runtime, tmp_path: Path, kind: str
) -> None:
    path = tmp_path / kind
    if kind == "directory":
        path.mkdir()
    elif kind == "empty":
        path.write_bytes(b"")
    with pytest.raises(ImportFileError) as caught:
        import_accounts(runtime, path)
    assert_one_line(str(caught.value))


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"", "is empty: no header and no accounts"),
        (b"\xef\xbb\xbf", "holds only a byte-order mark: no header and no accounts"),
        (b"\xff\xfe", "holds only a byte-order mark: no header and no accounts"),
        (b"sep=;", "holds only Excel's 'sep=;' line: no header and no accounts"),
        (b"sep=;\r\n", "holds only Excel's 'sep=;' line: no header and no accounts"),
        (b"\xef\xbb\xbfsep=|\n", "holds only Excel's 'sep=|' line: no header and no accounts"),
        (b"sep=;\r\n\r\n", "holds no header: line 2 (below Excel's sep= line) is blank"),
        (
            b"sep=;\n\nexternal_id;email\nu1;anna@example.com\n",
            "holds no header: line 2 (below Excel's sep= line) is blank",
        ),
        (b" \n\n", "holds no header: line 1 (the first line) is blank"),
    ],
    ids=[
        "empty",
        "utf8-bom",
        "utf16-bom",
        "sep",
        "sep-newline",
        "bom-sep",
        "sep-blank",
        "sep-blank-header",
        "blank",
    ],
)
def test_a_file_without_a_header_says_what_it_holds(
    runner: FlaskCliRunner, runtime: Runtime, tmp_path: Path, content: bytes, says: str
) -> None:
    """A file of Excel's "sep=;" line alone (Excel writes one for an empty sheet) was
    "empty", and one with a blank line below it "missing: external_id, email": neither
    was true. Each degenerate form now says what the file holds, in one line."""
    path = tmp_path / "accounts.csv"
    path.write_bytes(content)
    line = one_error_line(invoke(runner, "accounts", "import", str(path)))
    assert line.startswith(f"Error: {path} {says}"), line
    if "blank" in says:  # what a header must be, never what the file's lines hold
        assert line.endswith("name the columns external_id and email"), line
    else:
        assert line == f"Error: {path} {says}"
    assert "anna" not in line
    assert stored_accounts(runtime) == {}


@pytest.mark.parametrize(
    "content", [b"external_id,email\n", b"sep=,\nexternal_id,email\n", b"external_id,email\n\n"]
)
def test_a_header_alone_imports_nothing_and_says_so(
    runner: FlaskCliRunner, runtime: Runtime, tmp_path: Path, content: bytes
) -> None:
    """A header with no row below it is a file with nothing to import, not an error (an
    export of no accounts); the summary says so instead of a row of zeros."""
    path = tmp_path / "accounts.csv"
    path.write_bytes(content)
    result = invoke(runner, "accounts", "import", str(path))
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == (
        "0 rows: the file holds a header and no account rows below it; nothing changed"
    )
    assert import_json(runner, path)["rows"] == 0
    assert stored_accounts(runtime) == {}


# --- reading the file -----------------------------------------------------------------


def test_header_is_matched_case_insensitively_in_any_order_and_other_columns_are_ignored(
    runtime: Runtime, tmp_path: Path
) -> None:
    path = write_lines(
        tmp_path / "a.csv",
        [
            "Plan, EMAIL ,Signup Date,Locale,External_ID",
            "pro,anna@example.com,2019-11-02,de-AT,u1",
            "free,ben@example.com,2020-01-15,,u2",
            "free,carla@example.com,2020-01-16,not a locale!,u3",
        ],
    )
    report = import_accounts(runtime, path)
    assert (report.rows, report.created, report.invalid) == (3, 2, 1)
    accounts = stored_accounts(runtime)
    assert accounts["u1"].email == "anna@example.com"
    assert accounts["u1"].locale == "de-AT"
    assert accounts["u2"].email == "ben@example.com"
    assert accounts["u2"].locale is None
    assert "u3" not in accounts  # a bad locale is refused by line, as the API refuses it
    assert report.invalid_lines == [4]


@pytest.mark.parametrize(
    ("header", "column", "where"),
    [
        ("external_id,email,email", "email", "2, 3"),
        ("external_id,Email,E-Mail,plan", "email", "2, 3"),
        ("id,email_address,external_id,mail", "email", "2, 4"),
        ("external_id,email,External ID", "external_id", "1, 3"),
        ("external_id,email,locale,language", "locale", "3, 4"),
    ],
)
def test_a_header_naming_a_column_twice_is_refused_in_one_line(
    runtime: Runtime, runner: FlaskCliRunner, tmp_path: Path, header: str, column: str, where: str
) -> None:
    """Two columns for one field (an export with the old and the new address side by
    side) were read by taking the first one silently: every account could be filed under
    the wrong address. Which one is meant is the operator's to say."""
    cells = len(header.split(","))
    row = ",".join(["u1", "anna@example.com", "ben@example.com", "en"][:cells])
    path = write_lines(tmp_path / "a.csv", [header, row])
    result = invoke(runner, "accounts", "import", str(path))
    line = one_error_line(result)
    assert f"names {column} more than once (columns {where})" in line
    assert "anna" not in line
    assert stored_accounts(runtime) == {}


@pytest.mark.parametrize(
    "first", ["sep=;", "SEP=;", "\ufeffsep=;", "sep=; "], ids=["plain", "upper", "bom", "space"]
)
def test_excels_sep_line_names_the_delimiter_above_the_header(
    runtime: Runtime, tmp_path: Path, first: str
) -> None:
    """Excel writes "sep=;" above the header for ';' locales, and an ingest reads it; the
    import refused such a file ("missing: external_id, email")."""
    lines = [
        first,
        "External_ID;Name;Email",
        'u1;"Doe, Jane";jane@example.com',
        "u2;x;not-an-address",
    ]
    path = tmp_path / "a.csv"
    path.write_bytes("\r\n".join(lines).encode() + b"\r\n")
    report = import_accounts(runtime, path)
    assert (report.rows, report.created, report.invalid) == (2, 1, 1)
    assert report.invalid_lines == [4]  # line numbers count the sep= line
    assert stored_accounts(runtime)["u1"].email == "jane@example.com"


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"], ids=["comma", "semi", "tab", "pipe"])
def test_delimiter_is_sniffed_and_quoted_fields_may_contain_it(
    runtime: Runtime, tmp_path: Path, delimiter: str
) -> None:
    d = delimiter
    lines = [f"external_id{d}name{d}email{d}locale"]
    lines += [f'u{n}{d}"Last{d} First"{d}user{n}@example.com{d}en' for n in range(6)]
    lines.append(f'"v-1"{d}"Quoted{d} {d}Name"{d}"quoted@example.com"{d}fr')
    report = import_accounts(runtime, write_lines(tmp_path / "a.csv", lines))
    assert (report.created, report.invalid) == (7, 0)
    accounts = stored_accounts(runtime)
    assert accounts["u5"] == Stored("user5@example.com", accounts["u5"].email_key, "en")
    assert accounts["v-1"].email == "quoted@example.com"
    assert accounts["v-1"].locale == "fr"


def test_doubled_quotes_after_the_sniffed_lines_do_not_shift_columns(
    runtime: Runtime, tmp_path: Path
) -> None:
    # The sniffer sees only the first lines; a name written "Smith, ""JJ"", Jr" further down
    # is still one field (RFC 4180), so the email column stays where the header says.
    lines = ["external_id,name,email"]
    lines += [f"u{n},Plain Name,user{n}@example.com" for n in range(40)]
    lines.append('u-q,"Smith, ""JJ"", Jr",quoted@example.com')
    report = import_accounts(runtime, write_lines(tmp_path / "a.csv", lines))
    assert report.invalid_lines == []
    assert stored_accounts(runtime)["u-q"].email == "quoted@example.com"


@pytest.mark.parametrize(
    ("bom", "codec"),
    [
        (codecs.BOM_UTF8, "utf-8"),
        (codecs.BOM_UTF16_LE, "utf-16-le"),
        (codecs.BOM_UTF16_BE, "utf-16-be"),
    ],
    ids=["utf-8-bom", "utf-16-le", "utf-16-be"],
)
def test_byte_order_marks_and_crlf_line_ends_are_read(
    runtime: Runtime, tmp_path: Path, bom: bytes, codec: str
) -> None:
    # external_id comes first, so a BOM left in the text would hide that header cell.
    text = "external_id,email,locale\r\nü-1,jürgen@bücher.de,de\r\nu-2,zoe@example.com,\r\n"
    path = tmp_path / "a.csv"
    path.write_bytes(bom + text.encode(codec))
    report = import_accounts(runtime, path)
    assert (report.rows, report.created, report.invalid) == (2, 2, 0)
    accounts = stored_accounts(runtime)
    assert accounts["ü-1"].email == "jürgen@bücher.de"
    assert accounts["ü-1"].locale == "de"
    assert accounts["ü-1"].email_key == runtime.keys.key("jürgen@xn--bcher-kva.de")
    assert accounts["u-2"] == Stored("zoe@example.com", accounts["u-2"].email_key, None)


def test_a_latin1_byte_in_another_column_does_not_lose_the_row(
    runtime: Runtime, tmp_path: Path
) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes(
        b"external_id,name,email\n"
        b"u1,Fran\xe7ois M\xfcller,francois@example.com\n"
        b"u2,Zo\xe9,zoe@example.com\n"
    )
    report = import_accounts(runtime, path)
    assert (report.rows, report.created, report.invalid) == (2, 2, 0)
    assert stored_accounts(runtime)["u1"].email == "francois@example.com"


def test_a_windows_1252_file_imports_accented_addresses_as_themselves(
    runtime: Runtime, runner: FlaskCliRunner, tmp_path: Path
) -> None:
    # Per line, like the leak reader: a UTF-8 row among 8-bit rows stays UTF-8, and a
    # lone-CR line end still ends a row.
    path = tmp_path / "latin1.csv"
    path.write_bytes(
        b"external_id;email\r\n"
        b"u-acute;jos\xe9@example.org\r\n"
        b"u-grave;jos\xe8@example.org\r"
        + "u-utf8;zoë@example.org\n".encode()
        + b"u-euro;\x80uro@example.org\n"
    )
    report = import_json(runner, path)
    assert (report["rows"], report["created"], report["invalid"]) == (4, 4, 0)
    accounts = stored_accounts(runtime)
    assert accounts["u-acute"].email == "josé@example.org"
    assert accounts["u-grave"].email == "josè@example.org"
    assert accounts["u-utf8"].email == "zoë@example.org"
    assert accounts["u-euro"].email == "€uro@example.org"
    assert accounts["u-acute"].email_key != accounts["u-grave"].email_key


# --- invalid rows ---------------------------------------------------------------------


def test_invalid_rows_are_counted_and_reported_by_line_number(
    runtime: Runtime, tmp_path: Path
) -> None:
    lines = [
        "external_id,email,note",  # line 1
        "u1,ok1@example.com,",  # 2
        "u2,not-an-address,",  # 3: bad email
        ",nobody@example.com,",  # 4: empty external_id
        "u4",  # 5: too few columns
        "x" * 256 + ",long@example.com,",  # 6: external_id over 255 characters
        "u6,big@example.com," + "Z" * 200_000,  # 7: a 200 KB field
        "",  # 8: blank, neither a row nor invalid
        'u7,ok7@example.com,"two',  # 9
        'lines"',  # 10: the rest of row 9's quoted note
        "u8,@example.com,",  # 11: bad email
        'u9,"not an',  # 12: bad email, reported where it starts
        'address",',  # 13
        "u10,ok10@example.com,",  # 14
    ]
    report = import_accounts(runtime, write_lines(tmp_path / "a.csv", lines))
    assert report.invalid_lines == [3, 4, 5, 6, 7, 11, 12]
    assert report.invalid == 7
    assert report.rows == 10
    assert report.created == 3
    assert set(stored_accounts(runtime)) == {"u1", "u7", "u10"}


# Stray quotes (accounts CSV: external_id,email,name): the changed lines, and the lines
# then invalid. A stray quote in the name is read alone, the account whole.
ACCOUNT_STRAY_QUOTES = {
    "start-of-name": ({3: 'aq-3,aq3@example.net,"Mallory'}, []),
    "start-of-address": ({3: 'aq-3,"aq3@example.net,Mallory'}, [3]),
    # A quote inside a field, or after it, is only a character (the address then loses it).
    "middle-and-end": ({3: 'aq-3,aq3@example.net,Mal"lory', 4: 'aq-4,aq4@example.net",X'}, []),
    "last-line": ({501: 'aq-501,aq501@example.net,"Mallory'}, []),
    "several": (
        {
            3: 'aq-3,"aq3@example.net,X',
            50: 'aq-50,aq50@example.net,"B',
            51: '"aq-51,aq51@example.net,C',
            500: 'aq-500,"aq500@example.net,D',
        },
        [3, 51, 500],
    ),
}


@pytest.mark.parametrize("chunk_rows", [None, 7], ids=["one-chunk", "chunks-of-7"])
@pytest.mark.parametrize("ending", ["\n", "\r\n"], ids=["lf", "crlf"])
@pytest.mark.parametrize("case", list(ACCOUNT_STRAY_QUOTES))
def test_a_stray_quote_costs_at_most_its_own_line_and_every_row_after_it_is_read(
    runtime: Runtime, tmp_path: Path, case: str, ending: str, chunk_rows: int | None
) -> None:
    # Before: the quote swallowed the lines up to the next quote or the end of the file,
    # and those accounts were neither imported nor counted.
    lines = {n: f"aq-{n},aq{n}@example.net,X" for n in range(2, 502)}
    changed, invalid = ACCOUNT_STRAY_QUOTES[case]
    lines.update(changed)
    path = tmp_path / "a.csv"
    path.write_bytes((ending.join(["external_id,email,name", *lines.values()]) + ending).encode())
    report = import_accounts(runtime, path, chunk_rows=chunk_rows)
    assert (report.rows, report.invalid, report.invalid_lines) == (500, len(invalid), invalid)
    assert report.created == 500 - len(invalid)
    assert report.committed_through_line == max(set(range(2, 502)) - set(invalid))
    stored = stored_accounts(runtime)
    assert set(stored) == {f"aq-{n}" for n in range(2, 502) if n not in invalid}


@pytest.mark.parametrize("chunk_rows", [None, 1, 2], ids=["one-chunk", "chunks-of-1", "of-2"])
def test_a_quoted_note_with_line_breaks_stays_one_row(
    runtime: Runtime, tmp_path: Path, chunk_rows: int | None
) -> None:
    lines = [
        "external_id,email,note",
        'u1,u1@example.com,"first\r\nsecond, with a comma"',
        "u2,u2@example.com,plain",
        'u3,u3@example.com,"x""y',
        'z"',
        'u4,"u4@example.com,broken',
        "u5,u5@example.com,",
    ]
    path = tmp_path / "a.csv"
    path.write_bytes("\r\n".join(lines).encode())
    report = import_accounts(runtime, path, chunk_rows=chunk_rows)
    # Physical lines: the note spans 2-3, u3's value 5-6; u4's stray quote is line 7.
    assert (report.rows, report.created, report.invalid_lines) == (5, 4, [7])
    assert set(stored_accounts(runtime)) == {"u1", "u2", "u3", "u5"}


def test_two_rows_with_one_canonical_address_are_both_imported_with_one_email_key(
    runtime: Runtime, tmp_path: Path
) -> None:
    path = write_lines(
        tmp_path / "a.csv",
        ["external_id,email", "u1,John.Smith@gmail.com", "u2,johnsmith@googlemail.com"],
    )
    report = import_accounts(runtime, path)
    assert (report.created, report.invalid) == (2, 0)
    accounts = stored_accounts(runtime)
    assert accounts["u1"].email == "John.Smith@gmail.com"
    assert accounts["u2"].email == "johnsmith@googlemail.com"
    assert accounts["u1"].email_key == accounts["u2"].email_key
    assert accounts["u1"].email_key == runtime.keys.key("johnsmith@gmail.com")


def test_imported_timestamps_are_stored_as_every_other_write_stores_them(
    runtime: Runtime, tmp_path: Path
) -> None:
    # The import's insert bypasses the ORM on both backends; SQLite keeps a timestamp as
    # text, so a different spelling ("+00:00") would compare wrongly in SQL.
    with runtime.db.transaction() as session:
        session.add(Account(external_id="api", email="api@example.com", email_key=b"k" * 16))
    import_accounts(runtime, write_lines(tmp_path / "a.csv", ["external_id,email", "u1,a@b.de"]))
    with runtime.db.engine.connect() as connection:
        stored: dict[str, str] = dict(
            connection.exec_driver_sql(
                "SELECT external_id, CAST(created_at AS TEXT) FROM account"
            ).all()
        )
    zone = {key: TIMESTAMP.fullmatch(value) for key, value in stored.items()}
    assert zone["u1"], stored
    assert zone["api"], stored
    assert zone["u1"].group(1) == zone["api"].group(1), stored


TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?(.*)")


def test_a_chunk_mixing_new_unchanged_and_changed_rows_gets_each_outcome(
    runtime: Runtime, tmp_path: Path
) -> None:
    first = ["external_id,email,locale", "u1,a1@x.de,en", "u2,a2@x.de,en", "u3,a3@x.de,"]
    first += ["u4,a4@x.de,de", "u5,a5@x.de,de", "\u00fc6,a6@x.de,"]
    import_accounts(runtime, write_lines(tmp_path / "a.csv", first))
    second = ["external_id,email,locale", "u1,a1@x.de,en", "u2,a2@x.de,", "u3,a3@x.de,fr"]
    second += ["u4,b4@x.de,de", "u5,B5@x.de,pt-BR", "\u00fc6,a6@x.de,", "u7,a7@x.de,en"]
    report = import_accounts(runtime, write_lines(tmp_path / "b.csv", second))
    assert (report.created, report.updated, report.unchanged) == (1, 4, 2)
    accounts = stored_accounts(runtime)
    assert [accounts[f"u{n}"].locale for n in range(1, 6)] == ["en", None, "fr", "de", "pt-BR"]
    assert (accounts["u4"].email, accounts["u5"].email) == ("b4@x.de", "B5@x.de")
    assert accounts["u5"].email_key == runtime.keys.key("b5@x.de")
    assert accounts["u7"].email == "a7@x.de"


@pytest.mark.parametrize("chunk_rows", [1, 2, 3, None], ids=["1", "2", "3", "one-chunk"])
def test_a_repeated_external_id_keeps_the_first_row_whatever_the_chunk_size(
    runtime: Runtime, tmp_path: Path, chunk_rows: int | None
) -> None:
    # u1 is stored already; the file names it three times, u2 twice with its address
    # unchanged, u3 twice with another address, once after an invalid row. Before, the
    # counts and the stored address depended on whether the repeats shared a chunk.
    import_accounts(
        runtime, write_lines(tmp_path / "before.csv", ["external_id,email", "u1,old@x.org"])
    )
    lines = [
        "external_id,email,locale",
        "u1,first@example.com,en",  # line 2: applied
        "u2,two@example.com,en",
        "u1,second@example.com,de",  # line 4: duplicate
        "u3,three@example.com,en",
        "u3,not an address,en",  # line 6: invalid, not a duplicate
        "u2,two@example.com,en",  # line 7: duplicate
        "u4,four@example.com,en",
        "u3,other@example.com,fr",  # line 9: duplicate
        "u1,last@example.com,fr",  # line 10: duplicate
    ]
    path = write_lines(tmp_path / "a.csv", lines)

    first = import_accounts(runtime, path, chunk_rows=chunk_rows).to_json()
    second = import_accounts(runtime, path, chunk_rows=chunk_rows).to_json()

    common = {"rows": 9, "invalid": 1, "invalid_lines": [6], "flagged": 0}
    duplicates = {"duplicates": 4, "duplicate_lines": [4, 7, 9, 10]}
    assert first == {"created": 3, "updated": 1, "unchanged": 0, **common, **duplicates}
    assert second == {"created": 0, "updated": 0, "unchanged": 4, **common, **duplicates}
    accounts = stored_accounts(runtime)
    assert {external_id: (a.email, a.locale) for external_id, a in accounts.items()} == {
        "u1": ("first@example.com", "en"),
        "u2": ("two@example.com", "en"),
        "u3": ("three@example.com", "en"),
        "u4": ("four@example.com", "en"),
    }
    assert accounts["u1"].email_key == runtime.keys.key("first@example.com")


@pytest.mark.parametrize("chunk_rows", [1, None], ids=["1", "one-chunk"])
def test_a_row_whose_locale_is_no_language_tag_is_refused_by_line(
    runtime: Runtime, tmp_path: Path, chunk_rows: int | None
) -> None:
    # Before, each was stored without a locale, unreported (the notices then in English).
    lines = [
        "external_id,email,locale",
        "l1,l1@example.org,de-AT",
        "l2,l2@example.org,en_US@",
        "l3,l3@example.org,12",
        "l4,l4@example.org," + "a" * 100,
        "l5,l5@example.org,",
        "l6,l6@example.org, fr ",
        "l7,l7@example.org,en_US@",
    ]
    path = write_lines(tmp_path / "a.csv", lines)
    report = import_accounts(runtime, path, chunk_rows=chunk_rows)
    assert (report.rows, report.created, report.invalid) == (7, 3, 4)
    assert report.invalid_lines == [3, 4, 5, 8]
    accounts = stored_accounts(runtime)
    assert {external_id: a.locale for external_id, a in accounts.items()} == {
        "l1": "de-AT",
        "l5": None,
        "l6": "fr",
    }


def test_the_import_names_the_duplicate_rows_by_line(
    runner: FlaskCliRunner, tmp_path: Path
) -> None:
    lines = ["external_id,email", "d1,a1@example.org", "d2,a2@example.org", "d1,b1@example.org"]
    result = invoke(runner, "accounts", "import", str(write_lines(tmp_path / "a.csv", lines)))
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "3 rows: 2 created, 0 updated, 0 unchanged, 0 invalid, 1 duplicates\n"
        "duplicate rows (their account is named on an earlier line; not applied) at lines 4\n"
    )
    assert "b1@" not in result.output


def test_a_second_import_finds_accounts_whose_external_id_has_special_characters(
    runtime: Runtime, tmp_path: Path
) -> None:
    # The lookup of existing accounts must match each id exactly, whatever the backend
    # does with lists of ids (SQL quoting, array literals: NULL, braces, backslashes).
    external_ids = ["a,b", "{x}", 'q"q', "back\\slash", "NULL", "it's", "ü-%_*", "x" * 255]
    lines = ["external_id,email"]
    lines += [
        f'"{eid.replace(chr(34), chr(34) * 2)}",u{n}@example.com'
        for n, eid in enumerate(external_ids)
    ]
    path = write_lines(tmp_path / "a.csv", lines)
    first = import_accounts(runtime, path)
    second = import_accounts(runtime, path)
    lines[1] = lines[1].replace("u0@", "changed@")
    third = import_accounts(runtime, write_lines(tmp_path / "b.csv", lines))
    assert (first.created, first.invalid) == (len(external_ids), 0)
    assert (second.created, second.updated, second.unchanged) == (0, 0, len(external_ids))
    assert (third.created, third.updated) == (0, 1)
    accounts = stored_accounts(runtime)
    assert set(accounts) == set(external_ids)
    assert accounts["a,b"].email == "changed@example.com"


# --- failure and scale ----------------------------------------------------------------


@contextmanager
def poison_trigger(runtime: Runtime) -> Iterator[None]:
    """A real trigger that makes the database refuse the account 'poison'."""
    with runtime.db.engine.begin() as connection:
        if runtime.db.is_postgres:
            connection.exec_driver_sql(
                "CREATE FUNCTION poison_account() RETURNS trigger LANGUAGE plpgsql AS $$ "
                "BEGIN IF NEW.external_id = 'poison' THEN RAISE EXCEPTION 'poisoned'; END IF; "
                "RETURN NEW; END $$"
            )
            connection.exec_driver_sql(
                "CREATE TRIGGER poison BEFORE INSERT ON account "
                "FOR EACH ROW EXECUTE FUNCTION poison_account()"
            )
        else:
            connection.exec_driver_sql(
                "CREATE TRIGGER poison BEFORE INSERT ON account "
                "WHEN NEW.external_id = 'poison' BEGIN SELECT RAISE(ABORT, 'poisoned'); END"
            )
    try:
        yield
    finally:
        with runtime.db.engine.begin() as connection:
            if runtime.db.is_postgres:
                connection.exec_driver_sql("DROP TRIGGER IF EXISTS poison ON account")
                connection.exec_driver_sql("DROP FUNCTION IF EXISTS poison_account()")
            else:
                connection.exec_driver_sql("DROP TRIGGER IF EXISTS poison")


def test_a_refused_chunk_keeps_earlier_chunks_and_says_how_far_the_import_got(
    runtime: Runtime, tmp_path: Path
) -> None:
    before = ["external_id,email", "u05,old5@example.com", "u23,old23@example.com"]
    import_accounts(runtime, write_lines(tmp_path / "before.csv", before))

    with_poison = _refused_chunk_fixture_lines()
    path = write_lines(tmp_path / "a.csv", with_poison)
    with poison_trigger(runtime), pytest.raises(ImportAborted) as caught:
        import_accounts(runtime, path, chunk_rows=10)

    accounts = stored_accounts(runtime)
    assert set(accounts) == {f"u{n:02d}" for n in range(1, 21)} | {"u23"}
    assert accounts["u05"].email == "user05@example.com"  # updated in a committed chunk
    assert accounts["u23"].email == "old23@example.com"  # in the refused chunk: untouched
    message = str(caught.value)
    assert "line 22" in message  # where the refused chunk starts (row 21)
    assert "line 21" in message  # the last line that is imported (row 20)
    assert "user25@example.com" not in message  # the refused row's content
    assert caught.value.report.created == 19  # u05 already existed
    assert caught.value.report.updated == 1


def _refused_chunk_fixture_lines() -> list[str]:
    lines = ["external_id,email"]
    for n in range(1, 31):
        external_id = "poison" if n == 25 else f"u{n:02d}"
        lines.append(f"{external_id},user{n:02d}@example.com")
    return lines


@pytest.fixture(scope="module")
def large_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("large") / "accounts.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.write("external_id,email,locale,plan\n")
        for n in range(MEMORY_ROWS):
            handle.write(f"acct-{n:07d},Person.{n}+news@Example{n % 97}.com,de-AT,pro\n")
    return path


def test_memory_stays_flat_while_importing_many_rows(runtime: Runtime, large_csv: Path) -> None:
    tracemalloc.start()
    try:
        report = import_accounts(runtime, large_csv, chunk_rows=MEMORY_CHUNK_ROWS)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (report.created, report.invalid) == (MEMORY_ROWS, 0)
    assert peak < MEMORY_BOUND_BYTES, f"peak {peak / 2**20:.1f} MiB"


# --- the one account upsert: the import flags as the API does -------------------------


WATCHED = "watched"
LEAKED = "leaked@example.com"


class Face:
    """One way an account row reaches ``apply_accounts``: the CSV import or the API."""

    def __init__(
        self, name: str, runtime: Runtime, client: FlaskClient, auth: dict[str, str], tmp: Path
    ) -> None:
        self.name = name
        self.runtime = runtime
        self.client = client
        self.auth = auth
        self.tmp = tmp
        self.calls = 0

    def apply(self, external_id: str, email: str, locale: str = "") -> str:
        """Create or update the account; return its outcome (created, updated, unchanged)."""
        self.calls += 1
        if self.name == "import":
            path = self.tmp / f"import-{self.calls}.csv"
            write_lines(path, ["external_id,email,locale", f"{external_id},{email},{locale}"])
            report = import_accounts(self.runtime, path)
            assert (report.rows, report.invalid) == (1, 0)
            return next(
                outcome
                for outcome in ("created", "updated", "unchanged")
                if getattr(report, outcome) == 1
            )
        body = {"email": email, "locale": locale or None}
        if self.name == "api-batch":
            response = self.client.post(
                "/v1/accounts:batch",
                json={"accounts": [{"external_id": external_id, **body}]},
                headers=self.auth,
            )
            assert response.status_code == 200, response.get_json()
            return str(response.get_json()["results"][0]["status"])
        response = self.client.put(f"/v1/accounts/{external_id}", json=body, headers=self.auth)
        assert response.status_code in (200, 201), response.get_json()
        return str(response.get_json()["status"])


@pytest.fixture(params=["import", "api", "api-batch"])
def face(
    request: pytest.FixtureRequest,
    runtime: Runtime,
    client: FlaskClient,
    auth: dict[str, str],
    tmp_path: Path,
) -> Face:
    """A leak is on the watch list; accounts arrive through the CSV import or the API."""
    leak = write_lines(tmp_path / "leak.txt", [LEAKED, "other.leaked@example.com"])
    assert ingest_leak(runtime, leak, slug=WATCHED).run.matched == 0
    return Face(request.param, runtime, client, auth, tmp_path)


def flags(runtime: Runtime) -> dict[str, list[tuple[Any, ...]]]:
    """The exposure and notice rows, whole."""
    rows = all_rows(runtime)
    return {table: rows[table] for table in ("exposure", "notice")}


def test_a_new_account_with_a_leaked_address_is_flagged_once(face: Face) -> None:
    assert face.apply("u1", "Leaked+shop@Example.com", "en") == "created"
    assert exposures(face.runtime) == {("u1", WATCHED): ("email", None)}
    assert notices(face.runtime) == [("u1", WATCHED, "leak_warning", "pending")]


def test_a_locale_only_change_or_a_respelling_does_not_flag_again(face: Face) -> None:
    assert face.apply("u1", LEAKED, "en") == "created"
    before = flags(face.runtime)
    assert len(before["exposure"]) == len(before["notice"]) == 1

    assert face.apply("u1", LEAKED, "de-AT") == "updated"  # the locale alone
    assert face.apply("u1", "Leaked+shop@EXAMPLE.com", "de-AT") == "updated"  # same address
    assert face.apply("u1", "Leaked+shop@EXAMPLE.com", "de-AT") == "unchanged"

    assert flags(face.runtime) == before
    assert stored_accounts(face.runtime)["u1"].locale == "de-AT"


def test_a_change_to_a_leaked_address_flags_the_account(face: Face) -> None:
    assert face.apply("u2", "clean@example.com") == "created"
    assert flags(face.runtime) == {"exposure": [], "notice": []}

    assert face.apply("u2", "Other.Leaked+x@Example.com") == "updated"

    assert exposures(face.runtime) == {("u2", WATCHED): ("email", None)}
    assert notices(face.runtime) == [("u2", WATCHED, "leak_warning", "pending")]
    assert face.apply("u2", "other.leaked@example.com") == "updated"  # the same address
    assert len(notices(face.runtime)) == 1


def test_the_import_reports_what_the_watch_list_flagged(runtime: Runtime, tmp_path: Path) -> None:
    leak = write_lines(tmp_path / "leak.txt", [LEAKED, "other.leaked@example.com"])
    ingest_leak(runtime, leak, slug=WATCHED)
    header = "external_id,email,locale"
    first = import_accounts(
        runtime,
        write_lines(tmp_path / "1.csv", [header, f"u1,{LEAKED},en", "u2,clean@example.com,en"]),
    )
    assert (first.created, first.flagged) == (2, 1)
    second = import_accounts(
        runtime,
        write_lines(
            tmp_path / "2.csv",
            [header, f"u1,{LEAKED},de", "u2,other.leaked@example.com,en"],
        ),
    )
    # u1: its locale only, not flagged again; u2: a new address, and a leaked one.
    assert (second.updated, second.flagged) == (2, 1)
    assert sorted(exposures(runtime)) == [("u1", WATCHED), ("u2", WATCHED)]


# --- a stop (Ctrl-C, SIGTERM) ------------------------------------------------------------


def test_a_stop_ends_the_import_after_the_chunk_and_says_what_is_imported(
    runtime: Runtime, tmp_path: Path
) -> None:
    lines = ["external_id,email", *(f"u{n:02d},user{n:02d}@example.com" for n in range(1, 31))]
    path = write_lines(tmp_path / "a.csv", lines)
    stop = threading.Event()

    with pytest.raises(ImportInterrupted) as caught:
        import_accounts(
            runtime, path, chunk_rows=10, on_progress=lambda rows: stop.set(), stop=stop
        )

    assert set(stored_accounts(runtime)) == {f"u{n:02d}" for n in range(1, 11)}
    assert str(caught.value) == (
        "interrupted: rows through line 11 are imported (10 created, 0 updated, 0 unchanged), "
        "the rest not yet; run the same command again, which is safe: imported rows come "
        "out unchanged"
    )
    again = import_accounts(runtime, path, chunk_rows=10)
    assert (again.created, again.unchanged) == (20, 10)


@pytest.fixture(scope="module")
def long_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("long") / "accounts.csv"
    with path.open("w", encoding="utf-8") as handle:
        handle.write("external_id,email\n")
        handle.writelines(f"a{n:06d},person{n}@example.com\n" for n in range(200_000))
    return path


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_the_console_script_with_130_and_one_line(
    runtime: Runtime, settings: Settings, long_csv: Path, signum: signal.Signals
) -> None:
    env = cli_env(
        settings.resolved_database_url, settings.instance_dir, LEAKGUARD_IMPORT_CHUNK_ROWS="1000"
    )
    process = subprocess.Popen(
        [str(LEAKGUARD), "accounts", "import", str(long_csv)],
        env=env,
        cwd=settings.instance_dir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: bool(stored_accounts(runtime)), timeout=60, what="a first commit")
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()

    imported = len(stored_accounts(runtime))
    assert process.returncode == 130, stderr
    assert stdout == ""
    assert stderr.strip() == (
        f"interrupted: rows through line {imported + 1} are imported ({imported} created, "
        "0 updated, 0 unchanged), the rest not yet; run the same command again, which is "
        "safe: imported rows come out unchanged"
    )
    assert 0 < imported < 200_000


def test_a_posix_locale_is_stored_as_the_language_tag_it_means(
    runtime: Runtime, tmp_path: Path
) -> None:
    """Found from outside: an export holding de_DE (as Linux, Java and many login services
    write locales) had every such row refused, and its person went unprotected."""
    spellings = {
        "de_DE": "de-DE",
        "de_DE.UTF-8": "de-DE",
        "fr_FR.utf8@euro": "fr-FR",
        "en_US.ISO-8859-1": "en-US",
        "sr_RS@latin": "sr-Latn-RS",
        "ca_ES@valencia": "ca-ES-valencia",
        "zh_Hant_TW": "zh-Hant-TW",
        "pt_BR": "pt-BR",
        "C": None,
        "C.UTF-8": None,
        "POSIX": None,
        "de-AT": "de-AT",
    }
    lines = ["external_id,email,locale"] + [
        f"u{n},user{n}@example.com,{spelling}" for n, spelling in enumerate(spellings)
    ]
    lines += ["bad1,bad1@example.com,de__DE", "bad2,bad2@example.com,de_DE.UTF 8"]
    report = import_accounts(runtime, write_lines(tmp_path / "a.csv", lines))
    assert (report.created, report.invalid) == (len(spellings), 2)
    accounts = stored_accounts(runtime)
    assert [accounts[f"u{n}"].locale for n in range(len(spellings))] == list(spellings.values())
    assert report.invalid_lines == [len(spellings) + 2, len(spellings) + 3]
