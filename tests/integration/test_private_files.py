"""The instance folder is private: folders 0700, files 0600 (security review, item 10);
ids that could pass for others in a log are refused like CR and LF."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from sqlalchemy import text

from jobs.account_import import import_accounts
from jobs.sample import generate_sample
from service.config import Settings
from service.db import utcnow
from service.notices.render import NoticeContext, address_message, new_message_id, prepare_notice
from service.notices.transport import FolderMailer
from service.runtime import Runtime, build_runtime


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_embedded_default_creates_instance_folder_keys_and_database_private(
    tmp_path: Path,
) -> None:
    instance = tmp_path / "instance"
    runtime = build_runtime(Settings(instance_dir=instance))
    try:
        with runtime.db.engine.begin() as connection:  # a write: WAL and shm files appear
            connection.execute(text("CREATE TABLE t (x INTEGER)"))
            connection.execute(text("INSERT INTO t VALUES (1)"))
        files = sorted(p.name for p in instance.iterdir())
        assert {"hash_key", "secret_key", "leakguard.sqlite3"} <= set(files)
        assert "leakguard.sqlite3-wal" in files
        assert mode(instance) == 0o700
        for path in instance.iterdir():
            assert mode(path) == 0o600, path.name
    finally:
        runtime.db.dispose()


def test_a_wider_instance_folder_and_database_are_narrowed(tmp_path: Path) -> None:
    instance = tmp_path / "instance"
    instance.mkdir(mode=0o755)
    database = instance / "leakguard.sqlite3"
    database.touch(mode=0o644)
    database.chmod(0o644)
    runtime = build_runtime(Settings(instance_dir=instance))
    with runtime.db.engine.connect():  # on first use
        pass
    runtime.db.dispose()
    assert (mode(instance), mode(database)) == (0o700, 0o600)


def test_mail_folder_and_each_message_are_private(tmp_path: Path) -> None:
    prepared = prepare_notice(
        "leak_warning",
        "en",
        NoticeContext(service_name="Example", leak_name="x", leak_date=None, account_url=None),
        sender="security@example.com",
    )
    message = address_message(
        prepared,
        recipient="jane@example.org",
        message_id=new_message_id(1, "security@example.com"),
        now=utcnow(),
    )
    folder = tmp_path / "mail"
    assert FolderMailer(folder).send(message).accepted
    (eml,) = folder.iterdir()
    assert (mode(folder), mode(eml)) == (0o700, 0o600)


INVISIBLE = [
    *["\u202e", "\u202a", "\u2066", "\u200b", "\u200e", "\ufeff", "\u2028", "\x85"],
    # blank letters and symbols, a noncharacter, and U+FFFD (bytes that were not text)
    *["\u3164", "\u115f", "\u034f", "\u2800", "\ufffe", "\ufffd"],
]


@pytest.mark.parametrize("char", INVISIBLE)
def test_external_ids_with_invisible_characters_are_refused(
    client: FlaskClient, auth: dict[str, str], char: str
) -> None:
    answer = client.put(f"/v1/accounts/user{char}1", json={"email": "a@example.org"}, headers=auth)
    assert answer.status_code == 422
    assert answer.mimetype == "application/problem+json"
    batch = client.post(
        "/v1/accounts:batch",
        json={"accounts": [{"external_id": f"admin{char}x", "email": "a@example.org"}]},
        headers=auth,
    )
    assert batch.get_json()["results"][0]["status"] == "invalid"


def test_import_counts_an_id_with_a_bidi_override_invalid(runtime: Runtime, tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("external_id,email\nok,a@example.org\nad\u202enim,b@example.org\n")
    report = import_accounts(runtime, path)
    assert (report.created, report.invalid, report.invalid_lines) == (1, 1, [3])


@pytest.mark.parametrize("external_id", [" ", "   ", "\u3000"])
def test_a_blank_external_id_is_refused(
    client: FlaskClient, auth: dict[str, str], external_id: str
) -> None:
    answer = client.post(
        "/v1/accounts:batch",
        json={"accounts": [{"external_id": external_id, "email": "a@example.org"}]},
        headers=auth,
    )
    assert answer.get_json()["results"][0]["status"] == "invalid"


def test_the_demo_sample_is_private_too(tmp_path: Path) -> None:
    sample = generate_sample(tmp_path / "demo", accounts=20, exposed=5)
    assert mode(tmp_path / "demo") == 0o700
    assert (mode(sample.accounts_csv), mode(sample.leak_eml)) == (0o600, 0o600)
