"""A leak file uploaded on the staff site: stored privately, ingested by the CLI's own run,
refused with the CLI's own messages; on SQLite and PostgreSQL, and with real workers."""

from __future__ import annotations

import gzip
import io
import stat
from pathlib import Path

import pytest
from flask.testing import FlaskCliRunner
from redis import Redis

from jobs.ingest.parts import PART_QUEUE
from jobs.queues import get_queue
from service.db import utcnow
from service.errors import ValidationFailed
from service.leaks.catalogue import LeakRetracted
from service.leaks.retract import retract_leak
from service.runtime import Runtime
from service.staff.incidents import list_incidents, show_incident
from service.staff.upload import (
    UPLOAD_DIR,
    StartedIngest,
    UploadRefused,
    safe_name,
    start_upload_ingest,
)
from tests.support.cli import invoke, one_error_line
from tests.support.delivery import BurstWorker, runtime_with
from tests.support.factories import make_account
from tests.support.leakfiles import write_lines

LEAK_TEXT = b"ann@example.org\nbob@example.org\nstranger@example.net\n"


def accounts(runtime: Runtime) -> None:
    make_account(runtime, "ann", "ann@example.org")
    make_account(runtime, "bob", "bob@example.org")


def upload(
    runtime: Runtime, data: bytes, name: str = "mass-mail.txt", **options: bool
) -> StartedIngest:
    return start_upload_ingest(
        runtime, io.BytesIO(data), name, slug="exchange-2019", operator="staff:a", **options
    )


def stored(runtime: Runtime) -> list[Path]:
    folder = runtime.settings.instance_dir / UPLOAD_DIR
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def test_an_upload_on_the_embedded_default_is_ingested_in_the_request(
    runtime: Runtime,
) -> None:
    accounts(runtime)
    started = upload(runtime, LEAK_TEXT)
    assert started.queued is False
    assert "2 accounts flagged, 2 warnings queued" in started.summary
    with runtime.db.read_session() as session:
        incident = show_incident(session, "exchange-2019")
    assert incident.state == "complete"
    assert incident.leak.counters["matched"] == 2
    assert incident.leak.files[0].name == "mass-mail.txt"
    assert incident.leak.files[0].ran_by == "staff:a"
    assert stored(runtime) == []  # read to the end: the copy is gone
    again = upload(runtime, LEAK_TEXT, "same-again.txt")
    assert again.already_ingested is True


def test_an_upload_is_refused_with_the_cli_message_and_nothing_kept(
    runtime: Runtime, runner: FlaskCliRunner, tmp_path: Path
) -> None:
    accounts(runtime)
    for data in (b"", b"\x00\x01\x02binary\x00" * 50, b"just some prose here\n" * 30):
        cli_file = tmp_path / "leak.txt"
        cli_file.write_bytes(data)
        cli_message = one_error_line(
            invoke(runner, "ingest", str(cli_file), "--leak", "exchange-2019")
        )
        with pytest.raises(UploadRefused) as refused:
            upload(runtime, data, "leak.txt")
        assert str(refused.value) == cli_message.removeprefix("Error: ").replace(
            str(cli_file), "leak.txt"
        )
        assert stored(runtime) == []
    with runtime.db.read_session() as session:
        assert list_incidents(session) == []


def test_an_upload_of_another_leak_s_content_recompressed_is_refused(runtime: Runtime) -> None:
    """A gzip of a file another leak has: other bytes, the same people warned again."""
    accounts(runtime)
    upload(runtime, LEAK_TEXT, "mass-mail.txt")
    packed = gzip.compress(LEAK_TEXT, mtime=7)
    with pytest.raises(UploadRefused) as refused:
        start_upload_ingest(
            runtime, io.BytesIO(packed), "copy.txt.gz", slug="exchange-2091", operator="staff:a"
        )
    assert str(refused.value).startswith(
        "copy.txt.gz: this file's content was already ingested as leak 'exchange-2019' on "
    )
    assert str(refused.value).endswith(
        "(as mass-mail.txt), in another compression; nothing recorded; to record it as leak "
        "'exchange-2091' as well, add --also-as-new-leak"
    )
    assert stored(runtime) == []
    with runtime.db.read_session() as session:
        assert [i.leak.slug for i in list_incidents(session)] == ["exchange-2019"]


def test_an_upload_to_a_retracted_leak_or_a_bad_slug_is_refused(runtime: Runtime) -> None:
    accounts(runtime)
    upload(runtime, LEAK_TEXT)
    retract_leak(runtime.db, "exchange-2019", reason="typo", actor="t", now=utcnow())
    with pytest.raises(LeakRetracted, match="ingest under another --leak slug"):
        upload(runtime, b"ann@example.org\nnew@example.org\n")
    with pytest.raises(ValidationFailed, match="a leak slug is 1-100 characters"):
        start_upload_ingest(
            runtime, io.BytesIO(LEAK_TEXT), "x.txt", slug="Bad Slug", operator="staff:a"
        )
    assert stored(runtime) == []


def test_a_stored_upload_is_private_and_named_safely(runtime: Runtime) -> None:
    assert safe_name("../../etc/passwd") == "passwd"
    assert safe_name("C:\\leaks\\list.csv") == "list.csv"
    assert safe_name("a\nb.txt") == "a_b.txt"
    assert safe_name("...") == "leak-file"


def test_with_workers_the_upload_is_queued_in_parts_and_finishes(
    runtime: Runtime, redis_url: str, tmp_path: Path
) -> None:
    if not runtime.settings.database_url.startswith("postgresql"):
        pytest.skip("workers share PostgreSQL; SQLite is one process's")
    shared = runtime_with(runtime, redis_url=redis_url, ingest_chunk_records=2)
    accounts(shared)
    lines = [f"person{i}@example.net" for i in range(40)] + ["ann@example.org", "bob@example.org"]
    data = write_lines(tmp_path / "l.txt", lines).read_bytes()
    started = start_upload_ingest(
        shared, io.BytesIO(data), "big.txt", slug="exchange-2019", operator="staff:a"
    )
    assert started.queued is True
    assert started.parts >= 1
    [path] = stored(shared)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    with shared.db.read_session() as session:
        assert show_incident(session, "exchange-2019", held=lambda _: True).state == "running"
    connection = Redis.from_url(redis_url)
    try:
        queue = get_queue(PART_QUEUE, connection)
        BurstWorker([queue], connection=connection).work(burst=True, logging_level="WARNING")
    finally:
        connection.close()
    with shared.db.read_session() as session:
        incident = show_incident(session, "exchange-2019", held=lambda _: False)
    assert incident.state == "complete"
    assert incident.leak.counters["matched"] == 2
    assert incident.files[0].parts == incident.files[0].parts_done == started.parts
