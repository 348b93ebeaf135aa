"""Leak lines in the surface forms real leaks use match their accounts (issue 12, items 1, 2,
7, 8), through ``leakguard ingest --json``, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

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
