"""Leak ingestion end to end, on SQLite and PostgreSQL: formats, counts, flags, notices,
idempotency, the watch list, the operator's commands and what bad input does."""

from __future__ import annotations

import bz2
import gc
import gzip
import json
import lzma
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy import select

import jobs.ingest.pipeline as pipeline
from jobs.account_import import import_accounts
from jobs.ingest.checks import IngestInterrupted
from jobs.ingest.lock import ingest_lock
from jobs.ingest.pipeline import (
    FIRST_CHUNK_RECORDS,
    IngestBusy,
    IngestProgress,
    ingest_leak,
    read_chunks,
)
from jobs.reader.stream import LeakFormat, open_leak
from service.config import Settings
from service.leaks.candidates import account_filter
from service.leaks.counters import COUNTERS
from service.leaks.passwords import is_leaked_password
from service.models import LeakFile, LeakFileState
from service.runtime import Runtime
from tests.support.cli import cli_env, invoke, json_output, one_error_line, run_leakguard
from tests.support.db import (
    all_rows,
    exposures,
    flagged,
    leak_counters,
    notices,
    row_counts,
    stored_values,
)
from tests.support.factories import load_accounts
from tests.support.leakfiles import (
    ADDRESS,
    write_accounts_csv,
    write_jsonl,
    write_lines,
    write_mass_mail,
)

ACCOUNTS = {
    "u-jane": "jane@gmail.com",
    "u-jane-dots": "J.Ane@gmail.com",  # the same canonical address as u-jane
    "u-bob": "bob@example.org",
    "u-carol": "Carol@Example.com",
    "u-dave": "dave@example.net",
    "u-erin": "erin@example.com",  # in no leak
    "u-news": "news@exchange.example",  # sends the mass mail, is not a recipient
}
JANES = {"u-jane", "u-jane-dots"}
EMPTY = {"leak": 0, "leak_file": 0, "leak_entry": 0, "exposure": 0, "notice": 0}


@pytest.fixture
def accounts(runtime: Runtime, tmp_path: Path) -> dict[str, str]:
    load_accounts(runtime, tmp_path, ACCOUNTS)
    return ACCOUNTS


def counters_of(report_json: dict[str, object]) -> dict[str, object]:
    return {name: report_json[name] for name in COUNTERS}


# --- the console script --------------------------------------------------------------------

INVALID_TEXTS = ("no-at-sign-qzx-secret", "qzx-invalid@@nowhere.example", "qzx@")
CLI_LEAK = [
    "jane@gmail.com",  # 1
    '"Jane" <JANE+x@googlemail.com>',  # 2 duplicate of 1
    "bob@example.org",  # 3
    INVALID_TEXTS[0],  # 4 invalid
    "",  # 5 blank: no record
    INVALID_TEXTS[1],  # 6 invalid
    "stranger.one@example.com",  # 7 no account
    "  BOB@EXAMPLE.ORG  ",  # 8 duplicate of 3
    "<carol+news@example.com>",  # 9 u-carol
    "mailto:stranger.one@example.com",  # 10 duplicate of 7
    INVALID_TEXTS[2],  # 11 invalid
]


def test_cli_ingest_prints_one_json_report_with_exact_counts(
    runtime: Runtime, accounts: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    path = write_lines(tmp_path / "leak.txt", CLI_LEAK)
    env = cli_env(settings.resolved_database_url, settings.instance_dir)

    # The installed console script: its stdout and its stderr, logs included.
    result = run_leakguard(env, "ingest", str(path), "--leak", "exchange-2019", "--json")

    report = json_output(result)
    assert report["leak"] == "exchange-2019"
    assert report["format"] == "lines"
    assert counters_of(report) == {
        "lines": 10,
        "valid": 7,
        "invalid": 3,
        "duplicates": 3,
        "matched": 4,
        "notices": 4,
    }
    assert report["invalid_lines"] == [4, 6, 11]
    assert report["already_ingested"] is False
    # The report names lines, never their content, and no address at all.
    for text in INVALID_TEXTS:
        assert text not in result.stdout + result.stderr
    assert ADDRESS.findall(result.stdout + result.stderr) == []
    assert flagged(runtime, "exchange-2019") == {*JANES, "u-bob", "u-carol"}
    assert leak_counters(runtime, "exchange-2019") == counters_of(report)


# --- every format ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FormatCase:
    name: str
    write: Callable[[Path], Path]
    detected: str
    counters: dict[str, int]
    flagged: set[str]
    fmt: LeakFormat = LeakFormat.AUTO
    compression: str | None = None
    kind: str = "email"
    invalid_lines: list[int] = field(default_factory=list)


def _counts(lines: int, valid: int, duplicates: int, matched: int) -> dict[str, int]:
    return {
        "lines": lines,
        "valid": valid,
        "invalid": lines - valid,
        "duplicates": duplicates,
        "matched": matched,
        "notices": matched,
    }


FORMAT_CASES = [
    FormatCase(
        "lines",
        lambda d: write_lines(
            d / "list.txt",
            ["jane@gmail.com", "bob@example.org", "stranger.one@example.com", "not an address"],
        ),
        "lines",
        _counts(4, 3, 0, 3),
        {*JANES, "u-bob"},
        invalid_lines=[4],
    ),
    FormatCase(
        "csv-email-not-first",
        lambda d: write_lines(
            d / "users.csv",
            [
                "id,name,email,signup",
                "1,Jane,jane@gmail.com,2019-01-01",
                '2,"Smith, Bob",bob@example.org,2019-01-02',
                "3,Nobody,,2019-01-03",
                "4,Stranger,stranger.two@example.com,2019-01-04",
                "5,Dup,JANE@googlemail.com,2019-01-05",
            ],
        ),
        "csv",
        _counts(5, 4, 1, 3),
        {*JANES, "u-bob"},
        invalid_lines=[4],
    ),
    FormatCase(
        "combo-colon-in-password",
        lambda d: write_lines(
            d / "combo.txt",
            [
                "carol@example.com:pa:ss:word1",
                "dave@example.net:hunter2",
                "stranger.three@example.com:stranger-pw",
                "garbage-without-at",
            ],
        ),
        "combo",
        _counts(4, 3, 0, 2),
        {"u-carol", "u-dave"},
        kind="credential",
        invalid_lines=[4],
    ),
    FormatCase(
        "jsonl",
        lambda d: write_jsonl(
            d / "dump.jsonl",
            [
                {"id": 1, "email": "dave@example.net", "name": "Dave"},
                {"id": 2, "user": {"mail": "stranger.four@example.com"}},
                {"id": 3, "email": None},
                "not json at all",
                {"id": 4, "Email": "<bob@example.org>"},
            ],
        ),
        "jsonl",
        _counts(5, 3, 0, 2),
        {"u-dave", "u-bob"},
        invalid_lines=[3, 4],
    ),
    FormatCase(
        "eml-mass-mail",
        lambda d: write_mass_mail(
            d / "mass-mail.eml",
            sender=ACCOUNTS["u-news"],
            to=[
                '"Jane Doe" <jane@gmail.com>',
                "stranger.five@example.com",
                '"Smith, J." <j.smith@example.net>',
            ],
            cc=["Carol <carol@example.com>", "stranger.six@example.com"],
        ),
        "eml",
        _counts(5, 5, 0, 3),
        {*JANES, "u-carol"},
    ),
    FormatCase(
        "text",
        lambda d: write_lines(
            d / "paste.txt",
            [
                "Hi team, the dump mentions dave@example.net and (bob@example.org).",
                "Also see <stranger.seven@example.com>; DAVE@example.net again; 'erin@' is cut.",
                "Nothing here.",
            ],
        ),
        "text",
        _counts(4, 4, 1, 2),
        {"u-dave", "u-bob"},
        fmt=LeakFormat.TEXT,
    ),
    FormatCase(
        "gzip-lines",
        lambda d: write_lines(
            d / "list.txt.gz",
            ["bob@example.org", "dave@example.net", "nobody-at-all"],
            compress=True,
        ),
        "lines",
        _counts(3, 2, 0, 2),
        {"u-bob", "u-dave"},
        compression="gzip",
        invalid_lines=[3],
    ),
]


@pytest.mark.parametrize("case", FORMAT_CASES, ids=lambda case: case.name)
def test_every_format_flags_exactly_the_accounts_it_names(
    runtime: Runtime, accounts: dict[str, str], tmp_path: Path, case: FormatCase
) -> None:
    path = case.write(tmp_path)

    report = ingest_leak(runtime, path, slug="leak", fmt=case.fmt)

    assert (report.format, report.compression) == (case.detected, case.compression)
    assert report.run.as_dict() == case.counters
    assert report.invalid_lines == case.invalid_lines
    assert leak_counters(runtime, "leak") == case.counters
    assert flagged(runtime, "leak") == case.flagged
    assert {kind for kind, _ in exposures(runtime).values()} == {case.kind}
    assert "u-news" not in flagged(runtime, "leak")  # the sender of a mail is not its victim


# --- the layouts of issue 12: through `leakguard ingest --json`, on both databases ----------

LAYOUT_ACCOUNTS = {
    **ACCOUNTS,
    "u-niaj": "niaj@example.com",
    "u-jose": "josé.luis@example.org",
    "u-jose-grave": "josè@example.org",
}


@dataclass(frozen=True)
class LayoutCase:
    name: str
    data: bytes
    detected: str
    valid: int
    invalid: int
    matched: set[str]
    duplicates: int = 0


LAYOUT_CASES = [
    LayoutCase(
        "csv-sep-and-title-above-the-header",
        b"sep=;\r\nCustomer export\r\nExported 2019-11-01;by admin\r\n\r\n"
        b"id;E-Mail;Passwort\r\n1;jane@gmail.com;pw1\r\n2;bob@example.org;\r\n"
        b"3;n/a;\r\n4;stranger.one@example.com;x\r\n",
        "csv",
        valid=3,
        invalid=1,
        matched={*JANES, "u-bob"},
    ),
    LayoutCase(
        "json-pretty-array-nested",
        json.dumps(
            [
                {"user": {"email": "dave@example.net"}, "password": "pw"},
                {"id": 2, "name": "no address"},
                {"profile": {"Email": "Carol@example.com"}},
                {"email": "stranger.two@example.com"},
            ],
            indent=2,
        ).encode(),
        "json",
        valid=3,
        invalid=1,
        matched={"u-dave", "u-carol"},
    ),
    LayoutCase(
        "combo-stealer-and-login-first",
        b"https://shop.example.net/login:niaj@example.com:Hunter2!\n"
        b"android://AbC1==@com.example.app/:bob@example.org:pw\n"
        b"https://dave@shop.example.net/account:stranger.three@example.com:pw\n"
        b"dave:dave@example.net:p:w\n"
        b"https://user@shop.example.net/nothing:pw\n",
        "combo",
        valid=4,
        invalid=1,
        matched={"u-niaj", "u-bob", "u-dave"},
    ),
    LayoutCase(
        "windows-1252-lines",
        b"jos\xe9.luis@example.org\n"
        + "josé.luis@example.org\n".encode()
        + b"jos\xe8@example.org\n",
        "lines",
        valid=3,
        invalid=0,
        matched={"u-jose", "u-jose-grave"},
        duplicates=1,
    ),
]


@pytest.mark.parametrize("case", LAYOUT_CASES, ids=lambda case: case.name)
def test_cli_ingest_reads_the_layouts_of_issue_12(
    runtime: Runtime, runner: FlaskCliRunner, tmp_path: Path, case: LayoutCase
) -> None:
    load_accounts(runtime, tmp_path, LAYOUT_ACCOUNTS)
    path = tmp_path / "leak.bin"
    path.write_bytes(case.data)

    report = json_output(invoke(runner, "ingest", str(path), "--leak", "layout", "--json"))

    assert report["format"] == case.detected
    assert (report["valid"], report["invalid"], report["duplicates"]) == (
        case.valid,
        case.invalid,
        case.duplicates,
    )
    assert report["matched"] == len(case.matched)
    assert flagged(runtime, "layout") == case.matched


@pytest.mark.parametrize("parts", [1, 3, 7])
def test_enqueued_csv_below_a_title_reads_every_row_once_whatever_the_parts(
    runtime: Runtime, runner: FlaskCliRunner, tmp_path: Path, parts: int
) -> None:
    load_accounts(runtime, tmp_path, LAYOUT_ACCOUNTS)
    rows = [f"{n};stranger{n}@example.com;pw{n}" for n in range(40)]
    rows[5], rows[30] = "5;bob@example.org;pw", "30;niaj@example.com;pw"
    path = write_lines(
        tmp_path / "export.csv", ["sep=;", "Users", "", "id;email;password", *rows, "41;x;y"]
    )

    report = json_output(
        invoke(
            runner,
            "ingest",
            str(path),
            "--leak",
            "split",
            "--enqueue",
            "--parts",
            str(parts),
            "--json",
        )
    )

    assert report["format"] == "csv"
    assert (report["valid"], report["invalid"], report["matched"]) == (40, 1, 2)
    assert flagged(runtime, "split") == {"u-bob", "u-niaj"}


def test_enqueued_json_is_one_part(
    runtime: Runtime, runner: FlaskCliRunner, tmp_path: Path
) -> None:
    load_accounts(runtime, tmp_path, LAYOUT_ACCOUNTS)
    path = tmp_path / "dump.json"
    path.write_text(json.dumps([{"email": "bob@example.org"}, {"email": "x@y.org"}], indent=2))

    report = json_output(
        invoke(runner, "ingest", str(path), "--leak", "j", "--enqueue", "--parts", "4", "--json")
    )

    assert (report["format"], report["parts"]) == ("json", 1)
    assert (report["valid"], report["invalid"], report["matched"]) == (2, 0, 1)


# --- idempotency and flags -------------------------------------------------------------------


def test_invariant_second_ingest_of_same_file_changes_nothing(
    runtime: Runtime, accounts: dict[str, str], tmp_path: Path
) -> None:
    first = write_lines(
        tmp_path / "part1.txt", ["jane@gmail.com", "bob@example.org", "stranger.one@example.com"]
    )
    ingest_leak(runtime, first, slug="leak")
    before = all_rows(runtime)
    assert row_counts(runtime)["exposure"] == 3

    again = ingest_leak(runtime, first, slug="leak")

    assert again.already_ingested is True
    assert (again.run.matched, again.run.notices) == (0, 0)
    assert all_rows(runtime) == before


def test_another_file_of_the_same_leak_flags_only_new_accounts(
    runtime: Runtime, accounts: dict[str, str], tmp_path: Path
) -> None:
    first = write_lines(
        tmp_path / "part1.txt", ["jane@gmail.com", "bob@example.org", "stranger.one@example.com"]
    )
    second = write_lines(
        tmp_path / "part2.txt",
        [
            "bob@example.org",
            "stranger.one@example.com",
            "carol@example.com",
            "dave@example.net",
            "stranger.eight@example.com",
        ],
    )
    ingest_leak(runtime, first, slug="leak")
    entries_before = row_counts(runtime)["leak_entry"]

    report = ingest_leak(runtime, second, slug="leak")

    assert report.run.as_dict() == _counts(5, 5, 2, 2)
    assert flagged(runtime, "leak") == {*JANES, "u-bob", "u-carol", "u-dave"}
    assert [n[0] for n in notices(runtime)].count("u-bob") == 1
    assert row_counts(runtime)["leak_entry"] == entries_before + 3
    assert leak_counters(runtime, "leak") == _counts(8, 8, 2, 5)


def test_two_accounts_sharing_one_canonical_address_are_both_flagged_with_a_notice_each(
    runtime: Runtime, accounts: dict[str, str], tmp_path: Path
) -> None:
    path = write_lines(tmp_path / "one.txt", ["J.A.N.E+promo@googlemail.com"])

    report = ingest_leak(runtime, path, slug="leak")

    assert (report.run.matched, report.run.notices) == (2, 2)
    assert flagged(runtime, "leak") == JANES
    assert notices(runtime) == [
        ("u-jane", "leak", "leak_warning", "pending"),
        ("u-jane-dots", "leak", "leak_warning", "pending"),
    ]


def test_one_pending_warning_per_flagged_account_and_leak_none_for_strangers(
    runtime: Runtime, accounts: dict[str, str], tmp_path: Path
) -> None:
    leak_a = write_lines(
        tmp_path / "a.txt",
        ["bob@example.org", "BOB@example.org", "stranger.one@example.com", "dave@example.net"],
    )
    leak_a_again = write_lines(tmp_path / "a2.txt", ["bob@example.org", "dave+x@example.net"])
    leak_b = write_lines(tmp_path / "b.txt", ["bob@example.org", "stranger.two@example.com"])

    ingest_leak(runtime, leak_a, slug="leak-a")
    ingest_leak(runtime, leak_a_again, slug="leak-a")
    ingest_leak(runtime, leak_b, slug="leak-b")

    assert notices(runtime) == [
        ("u-bob", "leak-a", "leak_warning", "pending"),
        ("u-bob", "leak-b", "leak_warning", "pending"),
        ("u-dave", "leak-a", "leak_warning", "pending"),
    ]
    assert set(exposures(runtime)) == {(n[0], n[1]) for n in notices(runtime)}


PASSWORDS = {
    "carol@example.com": "Carol:pw:with:colons-7Qx",
    "dave@example.net": "dave-Hunter2-9Zk",
    "stranger.nine@example.com": "Stranger-Secret-4Wm",
    "stranger.ten@example.com": "Another:Stranger:Pw-8Jt",
}


def test_credential_leak_keeps_argon2id_of_matched_passwords_and_nothing_of_the_rest(
    runtime: Runtime, accounts: dict[str, str], tmp_path: Path
) -> None:
    path = write_lines(tmp_path / "combo.txt", [f"{a}:{p}" for a, p in PASSWORDS.items()])

    report = ingest_leak(runtime, path, slug="combo")

    assert report.format == "combo"
    found = exposures(runtime)
    assert set(found) == {("u-carol", "combo"), ("u-dave", "combo")}
    for (external_id, _), (kind, password_hash) in found.items():
        password = PASSWORDS[ACCOUNTS[external_id].lower()]
        assert kind == "credential"
        assert password_hash is not None
        assert password_hash.startswith("$argon2id$")
        assert is_leaked_password(password_hash, password)
        assert not is_leaked_password(password_hash, password + "!")
        assert not is_leaked_password(password_hash, PASSWORDS["stranger.nine@example.com"])
    values = stored_values(runtime)
    assert any(column == "password_hash" for _, column, _ in values)  # the scan sees them
    for password in PASSWORDS.values():
        for table, column, value in values:
            needle = password.encode() if isinstance(value, bytes) else password
            assert needle not in value, f"a leaked password in {table}.{column}"  # type: ignore[operator]


def test_password_in_a_later_file_of_the_leak_reaches_an_account_flagged_by_an_earlier_one(
    runtime: Runtime, accounts: dict[str, str], tmp_path: Path
) -> None:
    ingest_leak(
        runtime,
        write_lines(tmp_path / "bare.txt", ["carol@example.com", "dave@example.net"]),
        slug="leak",
    )
    password = PASSWORDS["carol@example.com"]
    combo = write_lines(
        tmp_path / "combo.txt", [f"Carol@example.com:{password}", "stranger.one@example.com:x"]
    )

    report = ingest_leak(runtime, combo, slug="leak")

    assert (report.run.matched, report.run.notices) == (0, 0)  # flagged once, warned once
    kind, password_hash = exposures(runtime)[("u-carol", "leak")]
    assert kind == "credential"
    assert password_hash is not None
    assert is_leaked_password(password_hash, password)
    assert exposures(runtime)[("u-dave", "leak")] == ("email", None)
    assert [n[0] for n in notices(runtime)] == ["u-carol", "u-dave"]


@pytest.mark.parametrize("chunk_records", [1, 2, 1000])
def test_credential_is_kept_whichever_chunk_names_the_address_first(
    runtime: Runtime, accounts: dict[str, str], tmp_path: Path, chunk_records: int
) -> None:
    password = PASSWORDS["dave@example.net"]
    path = write_lines(
        tmp_path / "combo.txt",
        [
            "dave@example.net",
            "stranger.one@example.com:one",
            "stranger.two@example.com:two",
            f"dave@example.net:{password}",
        ],
    )

    report = ingest_leak(runtime, path, slug="leak", chunk_records=chunk_records)

    assert (report.format, report.run.matched, report.run.notices) == ("combo", 1, 1)
    kind, password_hash = exposures(runtime)[("u-dave", "leak")]
    assert kind == "credential"
    assert password_hash is not None
    assert is_leaked_password(password_hash, password)


def test_first_chunks_are_small_so_the_first_warnings_commit_early(
    runtime: Runtime, accounts: dict[str, str], tmp_path: Path
) -> None:
    first = FIRST_CHUNK_RECORDS
    strangers = [f"stranger.{i}@example.com" for i in range(first * 4)]
    path = write_lines(tmp_path / "leak.txt", ["jane@gmail.com", *strangers, "bob@example.org"])
    seen: list[IngestProgress] = []

    report = ingest_leak(
        runtime, path, slug="leak", chunk_records=first * 3, on_progress=seen.append
    )

    # Chunks of first, twice first, then the chunk size: jane's warning commits with the
    # first small chunk, not only when a whole chunk of the default size is read.
    assert [p.records for p in seen] == [first, 3 * first, 4 * first + 2]
    matched = [p.matched for p in seen]
    assert 0 < matched[0] == matched[1] < matched[2] == report.run.matched == report.run.notices
    assert report.run.lines == 4 * first + 2


def test_dry_run_reports_the_real_count_and_writes_nothing(
    runtime: Runtime, accounts: dict[str, str], runner: FlaskCliRunner, tmp_path: Path
) -> None:
    earlier = write_lines(tmp_path / "earlier.txt", ["bob@example.org"])
    ingest_leak(runtime, earlier, slug="earlier")  # something for "as before" to keep
    path = write_lines(
        tmp_path / "leak.txt",
        ["jane@gmail.com", "carol@example.com", "stranger.one@example.com", "bob@example.org"],
    )
    before = all_rows(runtime)

    dry = json_output(invoke(runner, "ingest", str(path), "--leak", "new", "--dry-run", "--json"))

    assert dry["dry_run"] is True
    assert all_rows(runtime) == before
    real = ingest_leak(runtime, path, slug="new")
    assert dry["matched"] == real.run.matched == 4
    assert counters_of(dry) == real.run.as_dict()


# --- the watch list -------------------------------------------------------------------------

WATCHED_LEAK = ["stranger.one@example.com", "frank.leaked@example.com", "gina@gmail.com"]


def test_account_created_or_changed_to_a_leaked_address_is_flagged_at_once(
    runtime: Runtime,
    accounts: dict[str, str],
    client: FlaskClient,
    auth: dict[str, str],
    tmp_path: Path,
) -> None:
    ingest_leak(runtime, write_lines(tmp_path / "leak.txt", WATCHED_LEAK), slug="watched")
    assert flagged(runtime, "watched") == set()

    created = client.put(
        "/v1/accounts/w-new", json={"email": "Stranger.One+shop@EXAMPLE.com"}, headers=auth
    )
    changed = client.put(
        "/v1/accounts/u-erin", json={"email": "G.I.N.A@googlemail.com"}, headers=auth
    )
    clean = client.put("/v1/accounts/w-clean", json={"email": "clean@example.com"}, headers=auth)

    assert (created.status_code, changed.status_code, clean.status_code) == (201, 200, 201)
    assert changed.get_json()["status"] == "updated"
    assert flagged(runtime, "watched") == {"w-new", "u-erin"}
    assert notices(runtime) == [
        ("u-erin", "watched", "leak_warning", "pending"),
        ("w-new", "watched", "leak_warning", "pending"),
    ]


def test_accounts_import_flags_imported_accounts_with_leaked_addresses(
    runtime: Runtime, accounts: dict[str, str], runner: FlaskCliRunner, tmp_path: Path
) -> None:
    ingest_leak(runtime, write_lines(tmp_path / "leak.txt", WATCHED_LEAK), slug="watched")
    csv_path = write_accounts_csv(
        tmp_path / "more.csv",
        {"w-imp1": "Frank.Leaked+x@Example.com", "w-imp2": "nobody.else@example.com"},
    )

    report = json_output(invoke(runner, "accounts", "import", str(csv_path), "--json"))

    assert (report["created"], report["flagged"]) == (2, 1)
    assert flagged(runtime, "watched") == {"w-imp1"}
    assert notices(runtime) == [("w-imp1", "watched", "leak_warning", "pending")]


# --- the operator's view --------------------------------------------------------------------


def test_leaks_list_and_show_give_counts_state_files_and_timings(
    runtime: Runtime, accounts: dict[str, str], runner: FlaskCliRunner, tmp_path: Path
) -> None:
    ingest_leak(runtime, write_lines(tmp_path / "a.txt", ["bob@example.org", "x"]), slug="two")
    ingest_leak(
        runtime,
        write_lines(tmp_path / "b.gz", ["dave@example.net", "bob@example.org"], compress=True),
        slug="two",
    )
    expected = _counts(4, 3, 1, 2)

    listed = json_output(invoke(runner, "leaks", "list", "--json"))
    shown = json_output(invoke(runner, "leaks", "show", "two", "--json"))
    missing = invoke(runner, "leaks", "show", "unknown")

    assert [leak["slug"] for leak in listed] == ["two"]
    for view in (listed[0], shown):
        assert view["state"] == "complete"
        assert counters_of(view) == expected
        assert view["exposures"] == {"open": 2}
        assert view["notices_by_state"] == {"pending": 2}
        files = view["files"]
        assert [(f["format"], f["compression"], f["state"]) for f in files] == [
            ("lines", None, "complete"),
            ("lines", "gzip", "complete"),
        ]
        assert [counters_of(f) for f in files] == [_counts(2, 1, 0, 1), _counts(2, 2, 1, 1)]
        for f in files:
            assert f["runs"] == 1
            assert f["seconds"] >= 0
            assert f["started_at"] <= f["finished_at"]
    assert missing.exit_code == 1
    assert "unknown" in one_error_line(missing)


# --- long lines -----------------------------------------------------------------------------


def test_a_mass_mail_with_its_to_header_on_one_line_flags_every_account(
    runtime: Runtime, tmp_path: Path
) -> None:
    # The trial's model case: 4,000 strangers and 100 accounts on one ~100 KB To: line
    # read 2,563 records and flagged none (the line was cut at 64 KiB).
    members = {f"u-{n}": f"member{n}@example.org" for n in range(100)}
    load_accounts(runtime, tmp_path, members)
    to = [f"stranger{n}@example.net" for n in range(4_000)] + list(members.values())
    path = tmp_path / "mass.eml"
    path.write_text(
        "From: shop@example.com\r\nTo: " + ", ".join(to) + "\r\nSubject: x\r\n\r\nbody\r\n"
    )
    report = ingest_leak(runtime, path, slug="mass")
    assert (report.run.lines, report.run.valid, report.run.matched) == (4_100, 4_100, 100)
    assert report.long_lines == 0


def test_a_line_over_the_cap_in_a_line_format_is_counted_invalid_with_its_reason(
    runtime: Runtime, tmp_path: Path
) -> None:
    lines = ["a@example.org", "b" * (70 * 1024) + "@example.org", "c@example.org"]
    report = ingest_leak(runtime, write_lines(tmp_path / "leak.txt", lines), slug="long")
    assert (report.run.lines, report.run.valid, report.run.invalid) == (3, 2, 1)
    assert report.invalid_lines == [2]
    assert report.long_lines == 1
    assert report.to_json()["long_lines"] == 1
    assert "1 line(s) longer than 64 KiB, counted invalid" in report.summary()


@pytest.mark.parametrize("how", ["one process, stopped and resumed", "in parts"])
def test_leaks_show_keeps_a_files_long_lines_however_it_was_ingested(
    runtime: Runtime, runner: FlaskCliRunner, tmp_path: Path, how: str
) -> None:
    # Before: only the run's own report counted them; `leaks show` did not, and a split
    # run's report (--enqueue) left them out, though each is one of its invalid records.
    lines = [f"user{n}@example.org" for n in range(40)]
    lines[5] = "x" * (70 * 1024) + "@example.org"
    lines[33] = "y" * (65 * 1024) + "@example.org"
    path = write_lines(tmp_path / "leak.txt", lines)
    if how == "in parts":
        result = invoke(runner, "ingest", str(path), "--leak", "long", "--enqueue", "--parts", "4")
        assert result.exit_code == 0, result.output
        assert "2 line(s) longer than 64 KiB, counted invalid" in result.output
        split = json_output(
            invoke(
                runner,
                "ingest",
                str(path),
                "--leak",
                "long2",
                "--enqueue",
                "--json",
                "--also-as-new-leak",
            )
        )
        assert (split["invalid"], split["long_lines"]) == (2, 2)
    else:
        stop = threading.Event()
        with pytest.raises(IngestInterrupted):
            ingest_leak(
                runtime,
                path,
                slug="long",
                chunk_records=10,
                on_progress=lambda progress: stop.set(),
                stop=stop,
            )
        report = ingest_leak(runtime, path, slug="long", chunk_records=10)
        assert report.resumed_at_record == 10
    shown = json_output(invoke(runner, "leaks", "show", "long", "--json"))
    assert (shown["invalid"], shown["files"][0]["long_lines"]) == (2, 2)
    assert shown["files"][0]["truncated_after_bytes"] is None
    text = invoke(runner, "leaks", "show", "long").stdout
    assert "    2 line(s) over 64 KiB, counted invalid" in text
    assert "truncated" not in text


# --- bad input ------------------------------------------------------------------------------


def _bad_input(name: str, directory: Path) -> tuple[Path, str, list[str]]:
    """The file, slug and options of one kind of bad input."""
    if name == "missing-file":
        return directory / "nope.txt", "bad-input", []
    if name == "directory":
        (directory / "a-dir").mkdir()
        return directory / "a-dir", "bad-input", []
    if name == "csv-without-email-column":
        rows = ["id,name,city", "1,Jane,Paris", "2,Bob,Rome"]
        return write_lines(directory / "nomail.csv", rows), "bad-input", ["--format", "csv"]
    assert name == "bad-slug"
    return write_lines(directory / "ok.txt", ["bob@example.org"]), "Bad Slug!", []


BAD_INPUTS = [
    "missing-file",
    "directory",
    "csv-without-email-column",
    "bad-slug",
]


TRUNCATED = {"gzip": gzip.compress, "bz2": bz2.compress, "xz": lzma.compress}


def _truncated(path: Path, kind: str, lines: list[str], share: float = 0.9) -> Path:
    data = TRUNCATED[kind](("\n".join(lines) + "\n").encode())
    path.write_bytes(data[: int(len(data) * share)])
    return path


@pytest.mark.parametrize("kind", list(TRUNCATED))
def test_a_truncated_compressed_leak_completes_with_every_record_before_the_cut(
    runtime: Runtime, runner: FlaskCliRunner, tmp_path: Path, kind: str
) -> None:
    # Before: "the compressed stream is truncated", exit 1, a file left running that every
    # rerun read a little further and never completed, its stage never merged.
    members = {f"m-{n}": f"member{n}@example.org" for n in range(50)}
    load_accounts(runtime, tmp_path, members)
    lines = [f"stranger{n}@example.net" for n in range(60_000)]
    for n in range(50):
        lines[n * 100] = f"member{n}@example.org"
    lines.append("late.member@example.org")  # after the cut: not in the truncated file
    path = _truncated(tmp_path / f"leak.txt.{kind}", kind, lines)

    result = invoke(runner, "ingest", str(path), "--leak", "cut", "--json")
    assert result.exit_code == 0, result.output
    report = json_output(result)
    assert report["truncated_after_bytes"] == path.stat().st_size
    assert report["matched"] == 50
    assert 5_000 < int(report["lines"]) < 60_000  # type: ignore[call-overload]
    with runtime.db.read_session() as session:
        assert session.scalar(select(LeakFile.state)) is LeakFileState.COMPLETE
    assert flagged(runtime, "cut") == set(members)
    summary = invoke(runner, "ingest", str(path), "--leak", "again-cut", "--also-as-new-leak")
    assert "the compressed stream is truncated after" in summary.output
    assert "rest of the leak is missing" in summary.output
    shown = json_output(invoke(runner, "leaks", "show", "cut", "--json"))
    assert shown["files"][0]["truncated_after_bytes"] == path.stat().st_size
    cut = f"    truncated after {path.stat().st_size:,} bytes: the records before the cut"
    assert cut in invoke(runner, "leaks", "show", "cut").stdout

    again = json_output(invoke(runner, "ingest", str(path), "--leak", "cut", "--json"))
    assert again["already_ingested"] is True
    # The stages were merged: an account given a leaked address later is flagged at once,
    # by both leaks the file was ingested as.
    later = import_accounts(runtime, write_accounts_csv(tmp_path / "b.csv", {"x-1": lines[7]}))
    assert later.flagged == 2


def test_a_truncated_compressed_leak_in_parts_completes(
    runtime: Runtime, runner: FlaskCliRunner, tmp_path: Path
) -> None:
    # A compressed file is one part of --enqueue: the part reads to the cut and completes.
    load_accounts(runtime, tmp_path, {"m-1": "member1@example.org"})
    lines = ["member1@example.org", *(f"stranger{n}@example.net" for n in range(30_000))]
    path = _truncated(tmp_path / "leak.txt.gz", "gzip", lines)
    result = invoke(runner, "ingest", str(path), "--leak", "cut-parts", "--enqueue", "--json")
    assert result.exit_code == 0, result.output
    assert json_output(result)["truncated_after_bytes"] == path.stat().st_size
    shown = json_output(invoke(runner, "leaks", "show", "cut-parts", "--json"))
    assert shown["files"][0]["truncated_after_bytes"] == path.stat().st_size
    with runtime.db.read_session() as session:
        assert session.scalar(select(LeakFile.state)) is LeakFileState.COMPLETE
    assert flagged(runtime, "cut-parts") == {"m-1"}


def test_a_truncated_compressed_file_without_one_complete_record_is_refused_saying_so(
    runtime: Runtime, runner: FlaskCliRunner, tmp_path: Path
) -> None:
    path = _truncated(tmp_path / "small.txt.gz", "gzip", ["bob@example.org"] * 50, 0.5)
    result = invoke(runner, "ingest", str(path), "--leak", "tiny-cut")
    line = one_error_line(result)
    assert "truncated after" in line
    assert "nothing recorded" in line
    assert row_counts(runtime) == EMPTY


@pytest.mark.parametrize("bad", BAD_INPUTS)
def test_invariant_bad_input_exits_with_one_line_and_writes_nothing(
    runtime: Runtime, accounts: dict[str, str], runner: FlaskCliRunner, tmp_path: Path, bad: str
) -> None:
    path, slug, options = _bad_input(bad, tmp_path)

    result = invoke(runner, "ingest", str(path), "--leak", slug, *options, "--json")

    one_error_line(result)
    assert result.stdout == ""
    assert row_counts(runtime) == EMPTY


# --- one run per file at a time -------------------------------------------------------------


class Interrupted(Exception):
    pass


def test_ingest_of_a_file_whose_lock_is_held_raises_busy_and_resumes_after_release(
    runtime: Runtime, accounts: dict[str, str], tmp_path: Path
) -> None:
    path = write_lines(tmp_path / "leak.txt", ["bob@example.org", "dave@example.net"])

    def stop(progress: IngestProgress) -> None:
        raise Interrupted

    with pytest.raises(Interrupted):  # one chunk committed, then the run dies
        ingest_leak(runtime, path, slug="locked", chunk_records=1, on_progress=stop)
    with runtime.db.read_session() as session:
        file_id, state = session.execute(select(LeakFile.id, LeakFile.state)).one()
    assert state is LeakFileState.RUNNING

    with ingest_lock(runtime, file_id), pytest.raises(IngestBusy):
        ingest_leak(runtime, path, slug="locked", chunk_records=1)
    assert flagged(runtime, "locked") == {"u-bob"}

    report = ingest_leak(runtime, path, slug="locked", chunk_records=1)

    assert report.resumed_at_record == 1
    assert (report.run.lines, report.run.matched) == (1, 1)
    assert flagged(runtime, "locked") == {"u-bob", "u-dave"}
    assert leak_counters(runtime, "locked") == _counts(2, 2, 0, 2)


# --- the account filter ----------------------------------------------------------------------


def test_account_given_its_address_during_the_ingest_is_flagged(
    runtime: Runtime, accounts: dict[str, str], tmp_path: Path
) -> None:
    # The run's account filter is built before the account exists, and the account's own
    # look at the watch list comes before the chunk with its address commits: only the
    # look for late accounts at the end of the run finds it.
    path = write_lines(tmp_path / "leak.txt", ["bob@example.org", "Late.Comer+x@example.com"])
    created: list[IngestProgress] = []

    def create_account_after_first_chunk(progress: IngestProgress) -> None:
        if not created:
            (tmp_path / "late").mkdir()
            load_accounts(runtime, tmp_path / "late", {"u-late": "late.comer@example.com"})
        created.append(progress)

    report = ingest_leak(
        runtime, path, slug="leak", chunk_records=1, on_progress=create_account_after_first_chunk
    )

    assert flagged(runtime, "leak") == {"u-bob", "u-late"}
    assert (report.run.matched, report.run.notices) == (2, 2)
    assert leak_counters(runtime, "leak")["matched"] == 2
    assert [n[0] for n in notices(runtime)] == ["u-bob", "u-late"]
    # Idempotent: the same file again changes nothing, late account included.
    again = ingest_leak(runtime, path, slug="leak")
    assert again.already_ingested
    assert len(notices(runtime)) == 2


def test_leaked_passwords_are_kept_only_for_keys_the_account_filter_lets_through(
    runtime: Runtime, accounts: dict[str, str], tmp_path: Path
) -> None:
    path = write_lines(
        tmp_path / "combo.txt",
        [f"stranger{i}@example.com:secret{i}" for i in range(50)]
        + ["dave@example.net:dave-secret", "bob@example.org:bob-secret"],
    )
    with runtime.db.read_session() as session:
        accounts_filter = account_filter(session)
    assert accounts_filter.accounts == len(ACCOUNTS)
    with open_leak(path, LeakFormat.COMBO) as reader:
        chunks = list(
            read_chunks(runtime.keys, reader.batches(), 1000, [], accounts=accounts_filter)
        )

    (chunk,) = chunks
    dave, bob = (runtime.keys.key(address) for address in ("dave@example.net", "bob@example.org"))
    assert dave is not None
    assert bob is not None
    assert len(chunk.keys) == 52
    # A stranger may pass a full filter by chance (one in a thousand), an account never
    # misses it; a filter sized for 1,024 keys holding 7 lets none of the 50 through.
    assert chunk.candidates == {dave, bob}
    assert chunk.passwords == {dave: "dave-secret", bob: "bob-secret"}
    assert (chunk.counters.lines, chunk.counters.valid, chunk.counters.invalid) == (52, 52, 0)


def test_the_reader_reads_one_chunk_ahead_of_the_writer_and_no_more(
    runtime: Runtime, accounts: dict[str, str], tmp_path: Path
) -> None:
    """At most two chunks are alive: the one being committed and the one read next. A chunk
    queued between them was a third chunk's memory (issue 18: the ingest's peak RSS)."""
    path = write_lines(tmp_path / "leak.txt", [f"user{n}@example.net" for n in range(40)])
    alive: list[int] = []

    def count_chunks(progress: IngestProgress) -> None:
        time.sleep(0.05)  # while a chunk commits, the reader reads ahead as far as it may
        gc.collect()  # a chunk only a cycle holds (a retried commit's traceback) is dead
        alive.append(sum(1 for item in gc.get_objects() if type(item) is pipeline._Chunk))

    report = ingest_leak(runtime, path, slug="ahead", chunk_records=4, on_progress=count_chunks)

    assert report.run.valid == 40
    assert len(alive) == 10
    assert max(alive) == 2
