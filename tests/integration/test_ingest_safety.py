"""An ingest the on-call operator can trust (issue 13): junk refused before anything is
recorded, a file known by how it was read, one instance found or refused, progress on
stderr, clean interrupts. On SQLite and PostgreSQL."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import json
import lzma
import os
import random
import shutil
import signal
import socket
import subprocess
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from flask.testing import FlaskCliRunner
from sqlalchemy import func, select

from jobs.ingest.checks import IngestInterrupted
from jobs.ingest.lock import ingest_lock
from jobs.ingest.pipeline import IngestProgress, fingerprint_file, ingest_leak
from jobs.reader.stream import PREFIX_BYTES, file_digests
from service.cli import cli
from service.cli.stopping import stop_on_signals
from service.config import Settings
from service.models import LeakFile, LeakPart
from service.runtime import Runtime
from tests.support.cli import LEAKGUARD, base_env, cli_env, invoke, json_output, one_error_line
from tests.support.db import flagged, row_counts
from tests.support.factories import load_accounts
from tests.support.leakfiles import write_big_leak, write_lines
from tests.support.processes import wait_for

ACCOUNTS = {"u-bob": "bob@example.org", "u-dave": "dave@example.net"}
EMPTY = {"leak": 0, "leak_file": 0, "leak_entry": 0, "exposure": 0, "notice": 0}
EXPORT = ["id,name,email,city", "1,Bob,bob@example.org,Rome", "2,Dave,dave@example.net,Oslo"]


@pytest.fixture
def accounts(runtime: Runtime, tmp_path: Path) -> dict[str, str]:
    load_accounts(runtime, tmp_path, ACCOUNTS)
    return ACCOUNTS


def refused(runner: FlaskCliRunner, runtime: Runtime, *args: str) -> str:
    """Run ``leakguard ingest ARGS``: it fails with one line and records nothing."""
    result = invoke(runner, "ingest", *args)
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert row_counts(runtime) == EMPTY
    return one_error_line(result)


# --- 1. junk is refused before anything is recorded -----------------------------------------


@pytest.fixture
def listening_socket(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "leak.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    yield path
    server.close()


def test_files_that_are_not_regular_files_are_refused_without_opening_them(
    runtime: Runtime, runner: FlaskCliRunner, tmp_path: Path, listening_socket: Path
) -> None:
    fifo = tmp_path / "leak.fifo"
    os.mkfifo(fifo)  # an open() would block here until a writer comes: never
    (tmp_path / "folder").mkdir()
    cases = {
        fifo: "a named pipe (FIFO)",
        Path("/dev/zero"): "a character device",  # read, it would never end
        listening_socket: "a socket",
        tmp_path / "folder": "a directory",
    }
    for path, what in cases.items():
        for extra in ((), ("--dry-run",), ("--enqueue",)):
            line = refused(runner, runtime, str(path), "--leak", "junk", *extra)
            assert f"{what}, not a leak file" in line, (path, extra)


def test_empty_file_is_refused(runtime: Runtime, runner: FlaskCliRunner, tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.touch()
    for extra in ((), ("--dry-run",), ("--enqueue",), ("--accept-invalid",)):
        line = refused(runner, runtime, str(empty), "--leak", "junk", *extra)
        assert line == f"Error: {empty}: the file is empty; nothing recorded"


def test_binaries_random_bytes_and_a_csv_without_addresses_are_refused_suggesting_a_format(
    runtime: Runtime, runner: FlaskCliRunner, tmp_path: Path
) -> None:
    program = tmp_path / "ls-copy"
    shutil.copy("/bin/ls", program)
    noise = tmp_path / "random.bin"
    noise.write_bytes(random.Random(13).randbytes(256 * 1024))
    no_column = write_lines(
        tmp_path / "people.csv", ["id,name,city", *(f"{i},Name {i},Town {i}" for i in range(133))]
    )
    for path, extras in ((program, ((), ("--enqueue",), ("--accept-invalid",))), (noise, ((),))):
        for extra in extras:
            line = refused(runner, runtime, str(path), "--leak", "junk", *extra)
            assert "no valid address in its" in line
            assert "a binary file (NUL bytes in its first 8 KiB)" in line
            assert "; no other format reads addresses from it either (--format " in line
    line = refused(runner, runtime, str(no_column), "--leak", "junk")
    assert line == (
        f"Error: {no_column}: no valid address in its 134 records read as lines (no mail "
        "headers, JSON, CSV columns or passwords: one address per line); nothing recorded; "
        "no other format reads addresses from it either (--format csv|combo|jsonl|json|eml|text)"
    )


def test_a_wrong_format_is_refused_naming_the_right_one_and_the_right_one_then_works(
    runtime: Runtime, accounts: dict[str, str], runner: FlaskCliRunner, tmp_path: Path
) -> None:
    export = write_lines(tmp_path / "export.csv", EXPORT)
    for extra in ((), ("--dry-run",), ("--enqueue",)):
        line = refused(runner, runtime, str(export), "--leak", "shop", "--format", "lines", *extra)
        assert line == (
            f"Error: {export}: no valid address in its 3 records read as lines (given with "
            "--format); nothing recorded; --format csv reads 100% of its first records as "
            "addresses"
        )
    report = json_output(invoke(runner, "ingest", str(export), "--leak", "shop", "--json"))
    assert (report["format"], report["matched"]) == ("csv", 2)


def test_a_mail_without_recipients_is_refused_suggesting_no_format_that_reads_its_sender(
    runtime: Runtime, runner: FlaskCliRunner, tmp_path: Path
) -> None:
    # A mass mail sent correctly, as Bcc: nobody's address leaked. The refusal suggested
    # "--format combo reads 100%", which reads the From and Received lines' addresses as
    # leaked ones (the sender, the relays), the opposite of what the eml format promises.
    mail = tmp_path / "bcc.eml"
    mail.write_bytes(
        b"Received: from mx.exchange.example by mx.example.org\r\n"
        b"From: News <news@exchange.example>\r\n"
        b"To: undisclosed-recipients:;\r\n"
        b"Reply-To: support@exchange.example\r\n"
        b"Subject: Update\r\n\r\nWrite to help@exchange.example\r\n"
    )
    line = refused(runner, runtime, str(mail), "--leak", "bcc")
    assert line == (
        f"Error: {mail}: no records read as eml (mail headers at the top (every address in "
        "To, Cc and Bcc is read)); nothing recorded; its To, Cc and Bcc name no one (a mail to "
        "undisclosed recipients leaks no address; the sender's is never read), so no other "
        "format is suggested"
    )


def mostly_invalid(directory: Path) -> Path:
    """One valid address in twenty lines: 5 %, under the threshold of 10 %."""
    return write_lines(directory / "notes.txt", ["bob@example.org", *(["a note"] * 19)])


def test_mostly_invalid_records_are_refused_unless_accepted_and_text_implies_it(
    runtime: Runtime, accounts: dict[str, str], runner: FlaskCliRunner, tmp_path: Path
) -> None:
    notes = mostly_invalid(tmp_path)
    for extra in ((), ("--dry-run",), ("--enqueue",)):
        line = refused(runner, runtime, str(notes), "--leak", "notes", *extra)
        assert line.startswith(
            f"Error: {notes}: only 1 of its 20 records (5%) hold a valid address read as lines"
        )
        assert line.endswith("or add --accept-invalid to ingest it anyway")
    accepted = json_output(
        invoke(runner, "ingest", str(notes), "--leak", "notes", "--accept-invalid", "--json")
    )
    assert (accepted["valid"], accepted["invalid"], accepted["matched"]) == (1, 19, 1)
    prose = write_lines(tmp_path / "prose.txt", ["Hello,", "write to dave@example.net", "Bye"])
    text = json_output(
        invoke(runner, "ingest", str(prose), "--leak", "prose", "--format", "text", "--json")
    )
    assert (text["valid"], text["matched"]) == (1, 1)


def test_accepted_file_with_no_valid_address_past_the_sample_leaves_nothing(
    runtime: Runtime, runner: FlaskCliRunner, tmp_path: Path
) -> None:
    junk = write_lines(tmp_path / "junk.txt", [f"row {i}" for i in range(10_050)])
    line = refused(runner, runtime, str(junk), "--leak", "junk", "--accept-invalid")
    assert line == (
        f"Error: {junk}: no valid address in its 10050 records read as lines; nothing recorded"
    )


# --- 2. a file's identity includes how it was read ------------------------------------------


def test_a_file_recorded_under_a_wrong_format_can_be_ingested_again_with_the_right_one(
    runtime: Runtime, accounts: dict[str, str], runner: FlaskCliRunner, tmp_path: Path
) -> None:
    # Read as lines, the export's one stray bare address is its only valid record (1 of 14).
    export = write_lines(
        tmp_path / "export.csv", [*EXPORT, "dave@example.net", *(["9,Nobody,,Rome"] * 10)]
    )
    wrong = json_output(
        invoke(
            runner,
            *("ingest", str(export), "--leak", "shop", "--format", "lines"),
            *("--accept-invalid", "--json"),
        )
    )
    assert (wrong["valid"], wrong["invalid"], wrong["matched"]) == (1, 13, 1)
    right = json_output(
        invoke(runner, "ingest", str(export), "--leak", "shop", "--format", "csv", "--json")
    )
    assert (right["already_ingested"], right["valid"], right["matched"]) == (False, 2, 1)
    assert flagged(runtime, "shop") == {"u-bob", "u-dave"}
    again = json_output(invoke(runner, "ingest", str(export), "--leak", "shop", "--json"))
    assert again["already_ingested"] is True
    shown = json_output(invoke(runner, "leaks", "show", "shop", "--json"))
    assert sorted(f["read_as"] for f in shown["files"]) == [
        "csv ','-separated, address column 3, from line 2",
        "lines",
    ]


def test_a_file_another_leak_has_is_refused_naming_it_unless_also_as_new_leak(
    runtime: Runtime, accounts: dict[str, str], runner: FlaskCliRunner, tmp_path: Path
) -> None:
    leak = write_lines(tmp_path / "leak.txt", ["bob@example.org", "dave@example.net"])
    json_output(invoke(runner, "ingest", str(leak), "--leak", "shop", "--json"))
    with runtime.db.read_session() as session:
        day = session.scalars(select(LeakFile.started_at)).one().strftime("%Y-%m-%d")
    before = row_counts(runtime)
    for extra in ((), ("--dry-run",), ("--enqueue",), ("--format", "combo")):
        result = invoke(runner, "ingest", str(leak), "--leak", "shpo", *extra)
        assert one_error_line(result) == (
            f"Error: {leak}: this file was already ingested as leak 'shop' on {day}; nothing "
            "recorded; to record it as leak 'shpo' as well, add --also-as-new-leak"
        )
        assert row_counts(runtime) == before
    both = json_output(
        invoke(runner, "ingest", str(leak), "--leak", "shop-2", "--also-as-new-leak", "--json")
    )
    assert both["matched"] == 2


def _recompressed(data: bytes) -> dict[str, bytes]:
    """The copies of ``data`` a leak circulates in: each of other bytes, of the same content."""
    gzip_named = io.BytesIO()
    with gzip.GzipFile("other-name.txt", "wb", compresslevel=1, fileobj=gzip_named, mtime=99) as f:
        f.write(data)
    return {
        "leak.txt.gz": gzip.compress(data, mtime=0),
        "renamed.txt.gz": gzip_named.getvalue(),  # another name, time and level in its header
        "two-members.txt.gz": gzip.compress(data[:10], mtime=1) + gzip.compress(data[10:]),
        "leak.txt.bz2": bz2.compress(data),
        "leak.txt.xz": lzma.compress(data),
        # Cut before its 8-byte trailer only: every line of the content is in it.
        "no-trailer.txt.gz": gzip.compress(data, mtime=0)[:-8],
    }


def test_a_recompressed_copy_of_a_file_another_leak_has_is_refused_by_its_content(
    runtime: Runtime, accounts: dict[str, str], runner: FlaskCliRunner, tmp_path: Path
) -> None:
    """The guard compared the bytes' SHA-256 alone: ``gzip -c leak.txt > leak.txt.gz`` of
    an ingested file (or bz2, xz, another gzip header) got past it under another slug and
    warned everyone in it a second time."""
    lines = ["bob@example.org", "dave@example.net", *(f"s{n}@example.com" for n in range(50))]
    plain = write_lines(tmp_path / "leak.txt", lines)
    json_output(invoke(runner, "ingest", str(plain), "--leak", "shop", "--json"))
    with runtime.db.read_session() as session:
        day = session.scalars(select(LeakFile.started_at)).one().strftime("%Y-%m-%d")
    before = row_counts(runtime)
    for name, data in _recompressed(plain.read_bytes()).items():
        copy = tmp_path / name
        copy.write_bytes(data)
        for extra in ((), ("--dry-run",), ("--enqueue",), ("--format", "combo")):
            result = invoke(runner, "ingest", str(copy), "--leak", "shpo", *extra)
            assert one_error_line(result) == (
                f"Error: {copy}: this file's content was already ingested as leak 'shop' on "
                f"{day} (as leak.txt), in another compression; nothing recorded; to record "
                "it as leak 'shpo' as well, add --also-as-new-leak"
            ), (name, extra)
            assert row_counts(runtime) == before
    # The same slug is not guarded: a copy adds a file to its own leak and warns no one again.
    again = json_output(
        invoke(runner, "ingest", str(tmp_path / "leak.txt.xz"), "--leak", "shop", "--json")
    )
    assert (again["already_ingested"], again["valid"], again["notices"]) == (False, 52, 0)
    both = json_output(
        invoke(
            runner,
            *("ingest", str(tmp_path / "leak.txt.bz2"), "--leak", "shop-2"),
            *("--also-as-new-leak", "--json"),
        )
    )
    assert both["matched"] == 2


def test_a_plain_copy_of_a_compressed_file_another_leak_has_is_refused(
    runtime: Runtime, accounts: dict[str, str], runner: FlaskCliRunner, tmp_path: Path
) -> None:
    lines = ["bob@example.org", "dave@example.net"]
    packed = write_lines(tmp_path / "dump.gz", lines, compress=True)
    json_output(invoke(runner, "ingest", str(packed), "--leak", "shop", "--json"))
    plain = write_lines(tmp_path / "dump.txt", lines)
    result = invoke(runner, "ingest", str(plain), "--leak", "shpo")
    assert "this file's content was already ingested as leak 'shop'" in one_error_line(result)
    assert "(as dump.gz)" in one_error_line(result)
    with runtime.db.read_session() as session:
        stored = session.execute(select(LeakFile.sha256, LeakFile.content_sha256)).one()
    assert stored.content_sha256 == hashlib.sha256(plain.read_bytes()).digest()
    assert stored.sha256 == hashlib.sha256(packed.read_bytes()).digest()
    shown = json_output(invoke(runner, "leaks", "show", "shop", "--json"))
    assert shown["files"][0]["content_sha256"] == stored.content_sha256.hex()
    text = invoke(runner, "leaks", "show", "shop").stdout
    assert f"sha256 {stored.sha256.hex()}, content sha256 {stored.content_sha256.hex()}, " in text


def test_a_compressed_file_cut_short_has_the_content_before_the_cut(tmp_path: Path) -> None:
    """A cut stream is fingerprinted up to the cut (the reader reads it up to there), and
    the bytes' fingerprint is still of every byte."""
    data = "".join(f"user{n}@example.org\n" for n in range(20_000)).encode()
    packed = gzip.compress(data, mtime=0)
    cut = tmp_path / "cut.gz"
    cut.write_bytes(packed[: len(packed) // 2])
    digests = fingerprint_file(cut)
    assert digests.bytes_sha256 == hashlib.sha256(cut.read_bytes()).hexdigest()
    given = zlib.decompressobj(wbits=31).decompress(cut.read_bytes())
    assert 0 < len(given) < len(data)
    assert digests.content_sha256 == hashlib.sha256(given).hexdigest()
    assert digests.content_prefixes == tuple(
        hashlib.sha256(given[: PREFIX_BYTES << k]).hexdigest()
        for k in range(8)
        if PREFIX_BYTES << k <= len(given)
    )
    plain = write_lines(tmp_path / "plain.txt", ["a@example.org"])
    same = fingerprint_file(plain)
    assert (
        same.bytes_sha256 == same.content_sha256 == hashlib.sha256(plain.read_bytes()).hexdigest()
    )


def _prefix_words(path: Path) -> str:
    """How a refusal names the content ``path`` shares with a longer copy: its longest
    prefix kept."""
    kept = len(fingerprint_file(path).content_prefixes)
    size = PREFIX_BYTES << (kept - 1)
    return f"{size // 1024} KiB" if size < 1 << 20 else f"{size >> 20} MiB"


def test_a_copy_cut_short_or_extended_of_a_file_another_leak_has_is_refused(
    runtime: Runtime, accounts: dict[str, str], runner: FlaskCliRunner, tmp_path: Path
) -> None:
    """A gzip copy cut by an interrupted download (read up to its last complete line), or a
    plain one, has other content than the whole file: every address before the cut was
    warned again under another slug. So was the whole file after an ingest of a cut copy."""
    lines = [*(f"s{n}@example.com" for n in range(20_000)), "bob@example.org"]
    whole = write_lines(tmp_path / "leak.txt", lines)
    data = whole.read_bytes()
    json_output(invoke(runner, "ingest", str(whole), "--leak", "shop", "--json"))
    with runtime.db.read_session() as session:
        day = session.scalars(select(LeakFile.started_at)).one().strftime("%Y-%m-%d")
    before = row_counts(runtime)
    packed = gzip.compress(data, mtime=0)
    copies = {
        "cut.txt.gz": packed[: len(packed) * 2 // 3],  # a download of a gzip interrupted
        "cut.txt": data[: len(data) // 2],  # of the plain file
        "longer.txt": data + b"more@example.net\n",  # a later, longer version
    }
    for name, copy in copies.items():
        path = tmp_path / name
        path.write_bytes(copy)
        for extra in ((), ("--enqueue",), ("--dry-run",)):
            result = invoke(runner, "ingest", str(path), "--leak", "shpo", *extra)
            shared = _prefix_words(path if name != "longer.txt" else whole)
            assert one_error_line(result) == (
                f"Error: {path}: this file's content starts with the same {shared} as a file "
                f"ingested as leak 'shop' on {day} (as leak.txt): one of them is a copy of the "
                "other cut short, or extended; nothing recorded; to record it as leak 'shpo' "
                "as well, add --also-as-new-leak"
            ), (name, extra)
            assert row_counts(runtime) == before
    both = json_output(
        invoke(
            runner,
            *("ingest", str(tmp_path / "cut.txt.gz"), "--leak", "shop-2"),
            *("--also-as-new-leak", "--json"),
        )
    )
    assert both["truncated_after_bytes"] is not None


def test_the_whole_file_after_a_cut_copy_another_leak_has_is_refused(
    runtime: Runtime, accounts: dict[str, str], runner: FlaskCliRunner, tmp_path: Path
) -> None:
    lines = [*(f"s{n}@example.com" for n in range(20_000)), "bob@example.org"]
    whole = write_lines(tmp_path / "leak.txt", lines)
    packed = gzip.compress(whole.read_bytes(), mtime=0)
    cut = tmp_path / "leak.txt.gz"
    cut.write_bytes(packed[: len(packed) // 2])
    first = json_output(invoke(runner, "ingest", str(cut), "--leak", "cut", "--json"))
    assert first["truncated_after_bytes"] is not None
    before = row_counts(runtime)
    result = invoke(runner, "ingest", str(whole), "--leak", "whole")
    assert one_error_line(result).startswith(
        f"Error: {whole}: this file's content starts with the same {_prefix_words(cut)} as a "
        "file ingested as leak 'cut' on "
    )
    assert "(as leak.txt.gz): one of them is a copy of the other cut short" in (
        one_error_line(result)
    )
    assert row_counts(runtime) == before
    # Its rest goes under the same leak, as the summary of a cut file says: no one again.
    rest = json_output(invoke(runner, "ingest", str(whole), "--leak", "cut", "--json"))
    assert (rest["matched"], rest["notices"]) == (1, 1)  # bob, past the cut


def test_files_that_share_less_than_their_first_64_kib_are_not_copies(
    runtime: Runtime, accounts: dict[str, str], runner: FlaskCliRunner, tmp_path: Path
) -> None:
    head = [f"s{n}@example.com" for n in range(1_500)]  # about 27 KiB the same
    first = write_lines(tmp_path / "a.txt", [*head, *(f"a{n}@example.org" for n in range(9_000))])
    second = write_lines(tmp_path / "b.txt", [*head, *(f"b{n}@example.org" for n in range(9_000))])
    assert len(fingerprint_file(first).content_prefixes) >= 2
    json_output(invoke(runner, "ingest", str(first), "--leak", "shop", "--json"))
    again = json_output(invoke(runner, "ingest", str(second), "--leak", "other", "--json"))
    assert again["valid"] == 10_500
    small = write_lines(tmp_path / "small.txt", head[:100])  # no prefix kept: under 64 KiB
    assert fingerprint_file(small).content_prefixes == ()
    json_output(invoke(runner, "ingest", str(small), "--leak", "small", "--json"))


# --- 5. one instance, found or refused ------------------------------------------------------


def own_env(instance: Path) -> dict[str, str | None]:
    """For CliRunner: no LEAKGUARD_ setting of this process, only the instance folder."""
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("LEAKGUARD_")}
    env["LEAKGUARD_INSTANCE_DIR"] = str(instance)
    return env


def test_commands_never_create_an_instance_and_name_where_they_looked(
    db_url: str, tmp_path: Path
) -> None:
    """In this process with the command's own app loading (not the test app)."""
    leak = write_lines(tmp_path / "plain.txt", ["bob@example.org"])
    instance = tmp_path / "elsewhere" / "instance"
    env = own_env(instance)
    sqlite = db_url.startswith("sqlite")
    if not sqlite:  # a server database, the keys still expected in the instance folder
        env["LEAKGUARD_DATABASE_URL"] = db_url
    database = instance / "leakguard.sqlite3" if sqlite else db_url
    runner = CliRunner()
    for args in (
        ("ingest", str(leak), "--leak", "x", "--dry-run"),
        ("leaks", "list"),
        ("db", "current"),
        ("worker", "--burst"),
    ):
        result = runner.invoke(cli, list(args), env=env)
        assert result.exit_code == 1, args
        missing = "no database file, no instance folder" if sqlite else "no instance folder"
        assert one_error_line(result) == (
            f"Error: no Leakguard instance found ({missing}): looked for the database at "
            f"{database} and the instance folder {instance}; set LEAKGUARD_INSTANCE_DIR (or "
            "LEAKGUARD_DATABASE_URL) to your instance, or create a new, empty one here with "
            "`leakguard db upgrade`"
        )
        assert not instance.exists()
    assert runner.invoke(cli, ["--help"], env=env).exit_code == 0
    assert not instance.exists()


def test_db_upgrade_creates_the_instance_and_later_commands_find_it(tmp_path: Path) -> None:
    instance = tmp_path / "instance"
    env = own_env(instance)
    runner = CliRunner()
    assert runner.invoke(cli, ["db", "upgrade"], env=env).exit_code == 0
    assert {"hash_key", "leakguard.sqlite3", "secret_key"} <= {p.name for p in instance.iterdir()}
    listed = runner.invoke(cli, ["leaks", "list"], env=env)
    assert listed.exit_code == 0, listed.output
    assert "no leaks yet" in listed.stdout


def test_the_console_script_from_another_directory_creates_nothing(tmp_path: Path) -> None:
    leaks = tmp_path / "leaks"
    leaks.mkdir()
    write_lines(leaks / "plain.txt", ["bob@example.org"])
    env = {k: v for k, v in base_env(tmp_path).items() if k != "LEAKGUARD_INSTANCE_DIR"}
    result = subprocess.run(
        [str(LEAKGUARD), "ingest", "plain.txt", "--leak", "x", "--dry-run"],
        env=env,
        cwd=leaks,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert f"the instance folder {leaks / 'instance'};" in one_error_line(result)
    assert sorted(p.name for p in leaks.iterdir()) == ["plain.txt"]


# --- 6. progress ----------------------------------------------------------------------------


def test_progress_off_a_terminal_is_lines_or_json_on_stderr_and_quiet_silences_it(
    runtime: Runtime, accounts: dict[str, str], runner: FlaskCliRunner, tmp_path: Path
) -> None:
    leak = write_lines(tmp_path / "leak.txt", ["bob@example.org", "dave@example.net", "x"])
    every = ("--chunk-records", "1", "--progress-every", "0")
    lines = invoke(runner, "ingest", str(leak), "--leak", "a", *every, "--dry-run")
    assert lines.exit_code == 0
    progress = lines.stderr.splitlines()
    assert len(progress) == 3
    assert progress[-1].startswith("ingest: 100% (")
    assert ", 3 records, 2 matched, " in progress[-1]
    as_json = invoke(
        runner, "ingest", str(leak), "--leak", "a", *every, "--progress", "json", "--json"
    )
    events = [json.loads(line) for line in as_json.stderr.splitlines()]
    assert [e["records"] for e in events] == [1, 2, 3]
    assert events[-1]["percent"] == 100.0
    assert events[-1]["bytes_read"] == events[-1]["total_bytes"] == leak.stat().st_size
    assert events[-1]["matched"] == 2
    assert json.loads(as_json.stdout)["matched"] == 2  # stdout keeps only the summary
    other = write_lines(tmp_path / "other.txt", ["dave@example.net"])
    quiet = invoke(runner, "ingest", str(other), "--leak", "b", *every, "--quiet")
    assert (quiet.exit_code, quiet.stderr) == (0, "")


def test_enqueue_shows_parts_done_and_totals_while_it_waits(
    runtime: Runtime, accounts: dict[str, str], runner: FlaskCliRunner, tmp_path: Path
) -> None:
    leak = write_lines(tmp_path / "leak.txt", [f"user{i}@example.com" for i in range(40)])
    result = invoke(
        runner,
        *("ingest", str(leak), "--leak", "split", "--enqueue", "--parts", "4"),
        *("--progress", "json", "--progress-every", "0", "--json"),
    )
    assert result.exit_code == 0, result.output
    last = json.loads(result.stderr.splitlines()[-1])
    assert (last["phase"], last["parts"], last["parts_done"]) == ("waiting for workers", 4, 4)
    assert (last["records"], last["percent"]) == (40, 100.0)


# --- 7. interrupts --------------------------------------------------------------------------


def records_done(runtime: Runtime) -> int:
    with runtime.db.read_session() as session:
        return session.scalar(select(LeakFile.records_done)) or 0


def test_a_stop_request_ends_the_run_at_a_chunk_boundary_and_the_next_run_resumes(
    runtime: Runtime, accounts: dict[str, str], tmp_path: Path
) -> None:
    lines = [*(f"stranger{i}@example.com" for i in range(10)), "dave@example.net"]
    leak = write_lines(tmp_path / "leak.txt", ["bob@example.org", *lines])
    stop = threading.Event()

    def after_first_chunk(progress: IngestProgress) -> None:
        stop.set()

    with pytest.raises(IngestInterrupted) as interrupted:
        ingest_leak(
            runtime, leak, slug="stop", chunk_records=1, on_progress=after_first_chunk, stop=stop
        )
    done = records_done(runtime)
    assert done == 1  # the chunk being committed ends the run; those read are dropped
    assert str(interrupted.value) == (
        "interrupted after record 1; run the same command again to resume"
    )
    assert flagged(runtime, "stop") == {"u-bob"}
    report = ingest_leak(runtime, leak, slug="stop", chunk_records=1)
    assert (report.resumed_at_record, report.run.lines) == (done, 12 - done)
    assert flagged(runtime, "stop") == {"u-bob", "u-dave"}
    with runtime.db.read_session() as session:
        runs, run_seconds, seconds = session.execute(
            select(LeakFile.runs, LeakFile.run_seconds, LeakFile.seconds)
        ).one()
    assert runs == 2
    assert len(run_seconds) == 2
    assert seconds == pytest.approx(sum(run_seconds))


def test_sigterm_becomes_a_stop_request() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with stop_on_signals() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        wait_for(stop.is_set, timeout=5, what="the stop request")
    assert signal.getsignal(signal.SIGTERM) is before


def test_leaks_show_tells_an_interrupted_file_from_a_running_one(
    runtime: Runtime, accounts: dict[str, str], runner: FlaskCliRunner, tmp_path: Path
) -> None:
    leak = write_lines(tmp_path / "leak.txt", [f"user{i}@example.com" for i in range(5)])
    stop = threading.Event()
    with pytest.raises(IngestInterrupted):
        ingest_leak(
            runtime,
            leak,
            slug="halted",
            chunk_records=1,
            on_progress=lambda progress: stop.set(),
            stop=stop,
            operator="night-shift",
        )
    shown = invoke(runner, "leaks", "show", "halted")
    assert "halted: (no name: notices use neutral wording) (interrupted)" in shown.stdout
    assert f"  file leak.txt: {leak.stat().st_size} bytes, lines, sha256 " in shown.stdout
    assert "ran by night-shift" in shown.stdout
    assert f"interrupted, {records_done(runtime)} records done, " in shown.stdout
    assert "run the same ingest again to resume" in shown.stdout
    with runtime.db.read_session() as session:
        file_id = session.scalars(select(LeakFile.id)).one()
    with ingest_lock(runtime, file_id):  # a process holds it: the run goes on
        held = json_output(invoke(runner, "leaks", "show", "halted", "--json"))
    assert (held["state"], held["files"][0]["state"]) == ("running", "running")


@pytest.fixture(scope="module")
def long_leak(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_big_leak(
        tmp_path_factory.mktemp("long-leak"), accounts=10, lines=30_000, leaked_accounts=5, seed=7
    ).path


def test_sigint_stops_the_console_script_with_130_and_the_same_command_resumes(
    runtime: Runtime,
    settings: Settings,
    runner: FlaskCliRunner,
    long_leak: Path,
) -> None:
    env = cli_env(settings.resolved_database_url, settings.instance_dir)
    command = [str(LEAKGUARD), "ingest", str(long_leak), "--leak", "long"]
    command += ["--chunk-records", "1000", "--quiet"]
    process = subprocess.Popen(
        command,
        env=env,
        cwd=settings.instance_dir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def committed() -> int:
        return records_done(runtime)

    try:
        wait_for(lambda: committed() > 0, timeout=60, what="a first commit")
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    done = committed()
    assert process.returncode == 130, stderr
    assert stdout == ""
    assert stderr.strip() == (
        f"interrupted after record {done}; run the same command again to resume"
    )
    assert 0 < done < 30_000 + 5
    shown = json_output(invoke(runner, "leaks", "show", "long", "--json"))
    assert shown["state"] == "interrupted"
    assert shown["files"][0]["runs"] == 1

    resumed = json_output(
        invoke(runner, "ingest", str(long_leak), "--leak", "long", "--quiet", "--json")
    )
    assert resumed["resumed_at_record"] == done
    final = json_output(invoke(runner, "leaks", "show", "long", "--json"))["files"][0]
    assert (final["state"], final["runs"], len(final["run_seconds"])) == ("complete", 2, 2)
    assert final["records_done"] == final["lines"] == done + resumed["lines"]
    assert final["seconds"] == pytest.approx(sum(final["run_seconds"]), abs=0.01)


def parts_done(runtime: Runtime) -> int:
    with runtime.db.read_session() as session:
        return int(session.scalar(select(func.coalesce(func.sum(LeakPart.records_done), 0))))


def test_sigint_stops_an_in_process_split_run_and_leaks_show_says_interrupted(
    runtime: Runtime,
    settings: Settings,
    runner: FlaskCliRunner,
    tmp_path: Path,
) -> None:
    """Found by trying: on the embedded default, Ctrl-C during `ingest --enqueue` said that
    workers would go on (there are none: the queue lived in the stopped process), and
    `leaks show` said `running, 0 records done` for good."""
    big = write_big_leak(tmp_path, accounts=10, lines=400_000, leaked_accounts=5, seed=11).path
    # PYTHONFAULTHANDLER: should the run ever hang after the Ctrl-C, a SIGABRT makes it
    # print every thread's stack, and the failure shows where it waited.
    env = cli_env(settings.resolved_database_url, settings.instance_dir, PYTHONFAULTHANDLER="1")
    command = [str(LEAKGUARD), "ingest", str(big), "--leak", "split", "--enqueue"]
    command += ["--parts", "16", "--quiet"]
    process = subprocess.Popen(
        command,
        env=env,
        cwd=settings.instance_dir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: parts_done(runtime) > 0, timeout=60, what="a first part's commit")
        process.send_signal(signal.SIGINT)
        # The stop comes after the part in hand (rq's warm shutdown): seconds on a quiet
        # machine, once over 60 s on one running three test suites at a time.
        try:
            stdout, stderr = process.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGABRT)
            _, stacks = process.communicate(timeout=30)
            pytest.fail(f"the run did not stop within 240 s of the Ctrl-C; its threads:\n{stacks}")
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, stderr
    assert stdout.startswith("leak split: interrupted after "), stdout
    assert stdout.endswith(" records; run the same command again to resume\n"), stdout
    done = parts_done(runtime)
    shown = json_output(invoke(runner, "leaks", "show", "split", "--json"))
    assert (shown["state"], shown["files"][0]["state"]) == ("interrupted", "interrupted")
    assert 0 < shown["files"][0]["records_done"] == done < 400_000

    resumed = json_output(
        invoke(runner, "ingest", str(big), "--leak", "split", "--enqueue", "--quiet", "--json")
    )
    assert resumed["complete"] is True
    final = json_output(invoke(runner, "leaks", "show", "split", "--json"))["files"][0]
    assert (final["state"], final["records_done"]) == ("complete", final["lines"])


def _text_copies(text: str) -> dict[str, bytes]:
    """The same text in other bytes, as editors and exports save it."""
    crlf = text.replace("\n", "\r\n")
    return {
        "crlf.txt": crlf.encode(),
        "bom.txt": b"\xef\xbb\xbf" + text.encode(),
        "utf16.txt": text.encode("utf-16"),  # with its BOM, as Windows saves "Unicode"
        "utf16-crlf.txt": crlf.encode("utf-16"),
        "crlf.txt.gz": gzip.compress(crlf.encode(), mtime=0),
        "cr.txt": text.replace("\n", "\r").encode(),
    }


def test_a_copy_in_other_line_ends_bom_or_encoding_of_a_file_another_leak_has_is_refused(
    runtime: Runtime, accounts: dict[str, str], runner: FlaskCliRunner, tmp_path: Path
) -> None:
    """The content fingerprint was of the bytes: the same list saved with CRLF line ends, a
    BOM, or as UTF-16 got past the guard under another slug and warned everyone again."""
    lines = ["bob@example.org", "dave@example.net", *(f"s{n}@example.com" for n in range(50))]
    plain = write_lines(tmp_path / "leak.txt", lines)
    text = plain.read_text()
    json_output(invoke(runner, "ingest", str(plain), "--leak", "shop", "--json"))
    with runtime.db.read_session() as session:
        stored = session.execute(select(LeakFile.started_at, LeakFile.text_sha256)).one()
    day = stored.started_at.strftime("%Y-%m-%d")
    assert stored.text_sha256 is None  # a UTF-8 LF file: its content is its text
    before = row_counts(runtime)
    for name, data in _text_copies(text).items():
        copy = tmp_path / name
        copy.write_bytes(data)
        for extra in ((), ("--enqueue",)):
            result = invoke(runner, "ingest", str(copy), "--leak", "shpo", *extra)
            assert one_error_line(result) == (
                f"Error: {copy}: this file's text was already ingested as leak 'shop' on "
                f"{day} (as leak.txt), with other line ends, byte-order mark or encoding; "
                "nothing recorded; to record it as leak 'shpo' as well, add --also-as-new-leak"
            ), (name, extra)
            assert row_counts(runtime) == before


def test_the_lf_original_of_a_crlf_file_another_leak_has_is_refused_by_its_text(
    runtime: Runtime, accounts: dict[str, str], runner: FlaskCliRunner, tmp_path: Path
) -> None:
    """The other way round: the CRLF (or UTF-16) file came first, then its LF copy, and a
    copy of either cut short (text prefixes). A file recorded before revision 0019 (no
    text fingerprint) is still found by its bytes and content."""
    text = "".join(f"s{n}@example.com\n" for n in range(20_000)) + "bob@example.org\n"
    first = tmp_path / "first.txt"
    first.write_bytes(text.replace("\n", "\r\n").encode("utf-16"))
    json_output(invoke(runner, "ingest", str(first), "--leak", "shop", "--json"))
    before = row_counts(runtime)
    copies = {
        "lf.txt": text.encode(),
        "lf.txt.gz": gzip.compress(text.encode(), mtime=0),
        "lf-cut.txt": text.encode()[: len(text) // 2],
    }
    for name, data in copies.items():
        copy = tmp_path / name
        copy.write_bytes(data)
        result = invoke(runner, "ingest", str(copy), "--leak", "shpo")
        expected = "starts with the same" if "cut" in name else "this file's text was already"
        assert expected in one_error_line(result), name
        assert row_counts(runtime) == before
    # As recorded before revision 0019: without a text fingerprint, found by what it kept.
    with runtime.db.transaction() as session:
        session.execute(LeakFile.__table__.update().values(text_sha256=None, text_prefixes=None))
    same = tmp_path / "same.txt"
    same.write_bytes(first.read_bytes())
    packed = tmp_path / "same.txt.gz"
    packed.write_bytes(gzip.compress(first.read_bytes(), mtime=0))
    assert "this file was already ingested" in one_error_line(
        invoke(runner, "ingest", str(same), "--leak", "shpo")
    )
    assert "in another compression" in one_error_line(
        invoke(runner, "ingest", str(packed), "--leak", "shpo")
    )
    assert row_counts(runtime) == before


def test_text_fingerprints_match_across_line_ends_bom_encoding_and_blocks(tmp_path: Path) -> None:
    text = "".join(f"user{n}@example.org\n" for n in range(30_000))
    original = tmp_path / "leak.txt"
    original.write_text(text)
    want = fingerprint_file(original)
    assert (want.text_sha256, want.text_prefixes) == (None, None)  # hashed once
    for name, data in _text_copies(text).items():
        copy = tmp_path / name
        copy.write_bytes(data)
        for block in (1 << 20, 1001, 4096):  # a CRLF or a UTF-16 pair across two blocks
            got = file_digests(copy, block=block)
            assert got.text_sha256 == want.content_sha256, (name, block)
            assert got.text_prefixes == want.content_prefixes, (name, block)
            assert got.content_sha256 != want.content_sha256
