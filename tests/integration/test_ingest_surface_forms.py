"""Leak lines in the surface forms real leaks use match their accounts (issue 12, items 1, 2,
7, 8), through ``leakguard ingest --json``, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from flask.testing import FlaskCliRunner

from service.runtime import Runtime
from tests.support.cli import invoke, json_output
from tests.support.factories import make_account
from tests.support.leakfiles import write_lines

# the leak's line -> the account's address it must flag
LINES = {
    "erin@example.com (Erin Example)": "erin@example.com",
    "(work) frank@example.com": "frank@example.com",
    '"grace"@example.com': "grace@example.com",
    '"Heidi.Lamar"@example.com': "heidi.lamar@example.com",
    "\ufeffsybil@example.com": "sybil@example.com",
    "ivan@example.com\u200b": "ivan@example.com",
    "\u00a0judy@example.com\u00ad": "judy@example.com",
    "mallory@exa\u200bmple.com": "mallory@example.com",
    "mailto:victor%40example.com": "victor@example.com",
    "mailto:walter%2Bnews@example.com": "walter@example.com",
    "peggy@example.com\x00\x00\x00": "peggy@example.com",  # NUL padding of a fixed-width field
}


def test_every_surface_form_is_valid_and_flags_its_account(
    runtime: Runtime, runner: FlaskCliRunner, tmp_path: Path
) -> None:
    for n, address in enumerate(LINES.values()):
        make_account(runtime, f"a{n}", address)
    make_account(runtime, "bystander", "walter%2bnews@example.com")  # before: the wrong match
    path = write_lines(tmp_path / "leak.txt", LINES)
    report = json_output(invoke(runner, "ingest", str(path), "--leak", "forms", "--json"))
    assert (report["format"], report["lines"]) == ("lines", len(LINES))
    assert (report["valid"], report["invalid"]) == (len(LINES), 0)
    assert report["matched"] == len(LINES)  # the bystander is not among them


def test_a_quoted_local_part_that_needs_its_quotes_stays_valid(
    runtime: Runtime, runner: FlaskCliRunner, tmp_path: Path
) -> None:
    make_account(runtime, "quoted", '"John Doe"@example.com')
    path = write_lines(tmp_path / "leak.txt", ['"john doe"@example.com', "john.doe@example.com"])
    report = json_output(invoke(runner, "ingest", str(path), "--leak", "quoted", "--json"))
    assert (report["valid"], report["invalid"], report["matched"]) == (2, 0, 1)


@pytest.mark.parametrize(
    ("name", "lines", "fmt", "reason"),
    [
        ("plain.txt", ["a@example.com", "b@example.com"], "lines", "one address per line"),
        ("combo.txt", ["a@example.com:pw1", "b@example.com:pw2"], "combo", "a password"),
        (
            "excel.csv",
            ["sep=;", "id;email", "1;a@example.com", "2;b@example.com"],
            "csv",
            "rows separated by ';' with addresses in column 2, data below 2 line(s)",
        ),
        (
            "rows.jsonl",
            ['{"email": "a@example.com"}', '{"email": "b@example.com"}'],
            "jsonl",
            "one JSON object per line",
        ),
        (
            "dump.json",
            json.dumps([{"email": "a@example.com"}, {"email": "b@example.com"}], indent=2).split(
                "\n"
            ),
            "json",
            "a JSON document",
        ),
    ],
)
def test_auto_detection_says_what_it_chose_and_why(
    runtime: Runtime,
    runner: FlaskCliRunner,
    tmp_path: Path,
    name: str,
    lines: list[str],
    fmt: str,
    reason: str,
) -> None:
    path = write_lines(tmp_path / name, lines)
    report = json_output(invoke(runner, "ingest", str(path), "--leak", "why", "--json"))
    assert report["format"] == fmt, report
    assert reason in report["format_reason"]
    assert report["valid"] == 2
    given = write_lines(
        tmp_path / f"given-{name}", [*lines, "c@example.com"] if fmt == "lines" else lines
    )
    forced = json_output(
        invoke(
            runner,
            *("ingest", str(given), "--leak", "why-given", "--format", fmt),
            *("--also-as-new-leak", "--json"),  # the same bytes as "why" in most cases
        )
    )
    assert forced["format_reason"] == "given with --format"


def test_a_line_naming_several_people_flags_each_and_counts_each(
    runtime: Runtime, runner: FlaskCliRunner, tmp_path: Path
) -> None:
    for name in ("ann", "bob", "cat", "dan", "eve"):
        make_account(runtime, name, f"{name}@example.com")
    lines = [
        "ann@example.com, bob@example.com",
        'Smith, Cat <cat@example.com>; "Lee, Dan" <dan@example.com>',
        "eve@example.com",
    ]
    path = write_lines(tmp_path / "recipients.txt", lines)
    report = json_output(invoke(runner, "ingest", str(path), "--leak", "several", "--json"))
    assert (report["lines"], report["valid"], report["invalid"]) == (5, 5, 0)
    assert report["matched"] == 5


def test_a_mass_mail_forwarded_as_an_attachment_flags_its_recipients(
    runtime: Runtime, runner: FlaskCliRunner, tmp_path: Path
) -> None:
    for name in ("ann", "bob", "cat"):
        make_account(runtime, name, f"{name}@example.com")
    make_account(runtime, "forwarder", "security@example.org")
    mail = (
        "From: Someone <someone@example.net>\r\n"
        "To: security@example.org\r\n"
        "Subject: Fwd: they leaked all of us\r\n"
        'Content-Type: multipart/mixed; boundary="b1"\r\n'
        "\r\n"
        "--b1\r\n"
        "Content-Type: text/plain\r\n"
        "\r\n"
        "see attached\r\n"
        "--b1\r\n"
        "Content-Type: message/rfc822\r\n"
        "\r\n"
        "From: news@exchange.example\r\n"
        "To: ann@example.com,\r\n"
        " =?utf-8?q?B=C3=B6b?= <bob@example.com>\r\n"
        "Cc: cat@example.com\r\n"
        "\r\n"
        "Hello\r\n"
        "--b1--\r\n"
    )
    path = tmp_path / "forwarded.eml"
    path.write_bytes(mail.encode("utf-8"))
    report = json_output(invoke(runner, "ingest", str(path), "--leak", "fwd", "--json"))
    assert report["format"] == "eml"
    assert (report["lines"], report["valid"], report["matched"]) == (4, 4, 4)
