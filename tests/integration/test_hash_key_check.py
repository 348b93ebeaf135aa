"""The address hash key is checked against the database's, on SQLite and PostgreSQL.

A process with another key (LEAKGUARD_DATABASE_URL set, run from a directory whose
./instance holds another hash_key) matched nothing and said nothing. Now the database keeps
a keyed fingerprint of its key, recorded by the first command that writes keys, and every
command refuses another key in one line naming where the key came from.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from flask.testing import FlaskCliRunner
from sqlalchemy import delete, select

from service.addresses import AddressKeys
from service.addresses.keys import EmailHasher
from service.db import utcnow
from service.keying import HASH_KEY, HashKeyMismatch, check_hash_key, key_fingerprint
from service.models import Account, KeyFingerprint
from service.runtime import Runtime
from tests.support.cli import base_env, invoke, one_error_line, output, run_leakguard
from tests.support.db import count_rows
from tests.support.factories import make_account
from tests.support.leakfiles import write_lines
from tests.support.settings import TEST_HASH_KEY

OTHER_KEY = b"another-hash-key-fedcba9876543210"
ACCOUNTS = ["external_id,email", "u1,ann@example.org", "u2,ben@example.org"]


def stored_fingerprint(runtime: Runtime) -> bytes | None:
    with runtime.db.read_session() as session:
        return session.scalar(select(KeyFingerprint.fingerprint))


def record_other_key(runtime: Runtime) -> None:
    with runtime.db.transaction() as session:
        session.add(KeyFingerprint(name=HASH_KEY, fingerprint=key_fingerprint(OTHER_KEY)))


def test_the_first_import_records_a_fingerprint_that_is_not_the_key(
    runtime: Runtime, runner: FlaskCliRunner, tmp_path: Path
) -> None:
    # A database keyed before fingerprints existed, whatever an earlier test's servers and
    # workers recorded in this run's shared database (they record at start).
    with runtime.db.transaction() as session:
        session.execute(delete(KeyFingerprint))
    output(runner, "leaks", "list")  # reads only: records nothing
    assert stored_fingerprint(runtime) is None

    output(runner, "accounts", "import", str(write_lines(tmp_path / "a.csv", ACCOUNTS)))

    fingerprint = stored_fingerprint(runtime)
    assert fingerprint == key_fingerprint(TEST_HASH_KEY.encode())
    assert TEST_HASH_KEY.encode() not in fingerprint
    assert "2 unchanged" in output(
        runner, "accounts", "import", str(write_lines(tmp_path / "a.csv", ACCOUNTS))
    )


@pytest.mark.parametrize(
    "command",
    [("accounts", "import", "{accounts}"), ("ingest", "{leak}", "--leak", "k"), ("leaks", "list")],
    ids=["import", "ingest", "leaks-list"],
)
def test_a_command_with_another_key_than_the_database_is_refused_in_one_line(
    runtime: Runtime, runner: FlaskCliRunner, tmp_path: Path, command: tuple[str, ...]
) -> None:
    record_other_key(runtime)
    files = {
        "accounts": str(write_lines(tmp_path / "a.csv", ACCOUNTS)),
        "leak": str(write_lines(tmp_path / "leak.txt", ["ann@example.org"])),
    }

    line = one_error_line(invoke(runner, *(part.format(**files) for part in command)))

    assert line.startswith("Error: the address hash key from LEAKGUARD_HASH_KEY is not the one")
    assert "LEAKGUARD_INSTANCE_DIR" in line
    assert count_rows(runtime, Account) == 0
    assert stored_fingerprint(runtime) == key_fingerprint(OTHER_KEY)


def test_without_a_fingerprint_a_key_that_rehashes_no_stored_account_is_refused(
    runtime: Runtime,
) -> None:
    # A database keyed before the fingerprint existed: its accounts vouch for the key.
    make_account(runtime, "u1", "ann@example.org")
    other = AddressKeys(hasher=EmailHasher(OTHER_KEY), rules=runtime.keys.rules)
    with runtime.db.transaction() as session, pytest.raises(HashKeyMismatch):
        check_hash_key(session, other, OTHER_KEY, source="x", record=True, now=utcnow())
    assert stored_fingerprint(runtime) is None
    with runtime.db.transaction() as session:
        key = TEST_HASH_KEY.encode()
        check_hash_key(session, runtime.keys, key, source="x", record=True, now=utcnow())
    assert stored_fingerprint(runtime) == key_fingerprint(TEST_HASH_KEY.encode())


def test_a_command_run_from_another_instance_names_its_key_file(
    runtime: Runtime, db_url: str, tmp_path: Path
) -> None:
    # The trial's case: one database, two instance folders with their own generated keys.
    # (``runtime`` empties the tables the processes wrote, after the test.)
    first, second = tmp_path / "first", tmp_path / "second"
    accounts = write_lines(tmp_path / "a.csv", ACCOUNTS)
    leak = write_lines(tmp_path / "leak.txt", ["ann@example.org", "ben@example.org"])
    for folder in (first, second):
        env = base_env(folder / "instance", LEAKGUARD_DATABASE_URL=db_url)
        folder.mkdir()
        assert run_leakguard(env, "db", "upgrade", cwd=folder).returncode == 0
    env = base_env(first / "instance", LEAKGUARD_DATABASE_URL=db_url)
    assert run_leakguard(env, "accounts", "import", str(accounts), cwd=first).returncode == 0

    env = base_env(second / "instance", LEAKGUARD_DATABASE_URL=db_url)
    result = run_leakguard(env, "ingest", str(leak), "--leak", "trial", cwd=second)

    line = one_error_line(result)
    assert result.returncode == 1
    assert f"key from {second / 'instance' / 'hash_key'} is not the one" in line
    assert count_rows(runtime, Account) == 2  # imported with the first instance's key
