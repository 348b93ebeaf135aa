"""The upload form's faults (new-user trial): a file name too long for the disk, each
invalid field with its own message, and any unexpected error on a staff page as the
site's own HTML page, with nothing left under instance/uploads; on SQLite and PostgreSQL."""

from __future__ import annotations

import gzip
import io
from html import unescape
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from service.runtime import Runtime
from service.staff import upload as upload_module
from service.staff.upload import MAX_EXPANSION, UPLOAD_DIR, safe_name
from tests.support.factories import make_account
from tests.support.staff import Clock, StaffLogin, csrf_token, log_in

NAV = '<nav aria-label="Main">'


def leftovers(runtime: Runtime) -> list[Path]:
    folder = runtime.settings.instance_dir / UPLOAD_DIR
    return sorted(folder.iterdir()) if folder.exists() else []


def send(client: FlaskClient, file_name: str = "list.txt", **fields: str):  # type: ignore[no-untyped-def]
    data: dict[str, object] = {
        "csrf_token": csrf_token(client, "/staff/leaks/upload"),
        "slug": "fresh",
        "fmt": "auto",
        "file": (io.BytesIO(b"ann@example.org\nx@example.net\n"), file_name),
        **fields,
    }
    return client.post("/staff/leaks/upload", data=data, content_type="multipart/form-data")


def test_a_file_name_over_255_bytes_is_stored_shortened_and_ingested(
    runtime: Runtime, staff_client: FlaskClient, agent: StaffLogin, clock: Clock
) -> None:
    make_account(runtime, "ann", "ann@example.org")
    log_in(staff_client, agent, clock)
    name = "ü" * 200 + ".txt"  # 404 bytes of UTF-8: Errno 36 on the disk
    response = send(staff_client, name)
    assert response.status_code == 303, response.get_data(as_text=True)[:500]
    page = staff_client.get("/staff/leaks/fresh").get_data(as_text=True)
    assert "1 accounts flagged" in page
    assert leftovers(runtime) == []
    stored = safe_name(name)
    assert stored.endswith(".txt")
    assert len(stored.encode()) <= 200


@pytest.mark.parametrize(
    ("broken_at", "error"),
    [
        # while the copy is written: the disk is full
        (("shutil.copyfileobj",), OSError(28, "No space left on device")),
        # after the copy: a bug in the ingest, either way of running it
        (("ingest_leak", "ingest_in_parts"), RuntimeError("a bug")),
    ],
)
def test_an_unexpected_error_is_the_staff_page_and_leaves_no_folder(
    runtime: Runtime,
    staff_client: FlaskClient,
    agent: StaffLogin,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
    broken_at: tuple[str, ...],
    error: Exception,
) -> None:
    log_in(staff_client, agent, clock)

    def broken(*_args: object, **_kwargs: object) -> None:
        raise error

    for name in broken_at:
        owner, _, attribute = name.rpartition(".")
        monkeypatch.setattr(
            getattr(upload_module, owner) if owner else upload_module, attribute, broken
        )
    response = send(staff_client)
    text = response.get_data(as_text=True)
    assert response.status_code == 500
    assert response.mimetype == "text/html"
    assert NAV in text
    assert str(error) not in text
    assert "Traceback" not in text
    assert leftovers(runtime) == []


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"observed_at": "2024-13-45"}, "First seen on: not a valid date (YYYY-MM-DD)."),
        ({"observed_at": "yesterday"}, "First seen on: not a valid date (YYYY-MM-DD)."),
        ({"name": "n" * 201}, "Name in notices: at most 200 characters."),
        ({"name_de": "n" * 201}, "Name in German notices: at most 200 characters."),
        ({"source": "s" * 501}, "Source: at most 500 characters."),
        ({"name": "   "}, "Name in notices: must be readable text, not blank"),
        ({"name": "\u200b\u200b"}, "Name in notices: must be readable text, not blank"),
        ({"name": "\u202e\u2060 "}, "Name in notices: must be one line of text, without control"),
        ({"source": "a\nb"}, "Source: must be one line of text"),
        ({"slug": ""}, "Leak slug: name the leak: give its slug."),
    ],
    ids=[
        "bad-date",
        "word-date",
        "long-name",
        "long-german-name",
        "long-source",
        "blank-name",
        "invisible-name",
        "bidi-name",
        "newline-source",
        "no-slug",
    ],
)
def test_each_invalid_field_gets_its_own_message(
    runtime: Runtime,
    staff_client: FlaskClient,
    agent: StaffLogin,
    clock: Clock,
    fields: dict[str, str],
    message: str,
) -> None:
    log_in(staff_client, agent, clock)
    response = send(staff_client, **fields)
    text = unescape(response.get_data(as_text=True))
    assert response.status_code == 400
    assert message in text
    assert "Choose a file and name the leak." not in text
    assert leftovers(runtime) == []


def test_no_file_says_so(staff_client: FlaskClient, agent: StaffLogin, clock: Clock) -> None:
    log_in(staff_client, agent, clock)
    response = staff_client.post(
        "/staff/leaks/upload",
        data={"csrf_token": csrf_token(staff_client, "/staff/leaks/upload"), "slug": "fresh"},
        content_type="multipart/form-data",
    )
    assert response.status_code == 400
    assert "Leak file: choose the file to upload." in unescape(response.get_data(as_text=True))


def test_a_compressed_upload_that_expands_past_the_bound_is_refused_unread(
    runtime: Runtime, staff_client: FlaskClient, agent: StaffLogin, clock: Clock
) -> None:
    # The trial's case: 50 KB of gzip expanding to 50 MB of blank lines kept the server's
    # only worker busy for over ten minutes, ingested in the request on the embedded default.
    make_account(runtime, "ann", "ann@example.org")
    log_in(staff_client, agent, clock)
    bomb = gzip.compress(b"\n" * (50 * 1024 * 1024))
    assert len(bomb) < 100 * 1024
    response = send(staff_client, "bomb.txt.gz", file=(io.BytesIO(bomb), "bomb.txt.gz"))
    assert response.status_code == 422
    text = unescape(response.get_data(as_text=True))
    limit = MAX_EXPANSION * runtime.settings.max_request_bytes // (1024 * 1024)
    assert f"bomb.txt.gz: decompressed, this file is larger than {limit} MiB" in text
    assert leftovers(runtime) == []
    assert staff_client.get("/staff/leaks/fresh").status_code == 404  # nothing recorded
    # A gzip of an address list within the bound is ingested as before.
    plain = gzip.compress(b"ann@example.org\n" + b"x@example.net\n" * 100_000)
    ok = send(staff_client, "list.txt.gz", file=(io.BytesIO(plain), "list.txt.gz"))
    assert ok.status_code == 303, ok.get_data(as_text=True)[:500]
    assert "1 accounts flagged" in staff_client.get("/staff/leaks/fresh").get_data(as_text=True)
