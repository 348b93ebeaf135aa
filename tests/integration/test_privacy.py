"""A leak is never stored or logged in the clear (DESIGN.md invariant; SECURITY.md "No clear
address in logs"): the database's bytes, a dump of it, and every log line are searched."""

from __future__ import annotations

import logging
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from jobs.account_import import import_accounts
from jobs.ingest.pipeline import ingest_leak
from service.addresses import CanonicalAddress, canonicalize_email
from service.config import Settings
from service.runtime import Runtime
from tests.support.cli import cli_env, run_leakguard
from tests.support.db import flagged
from tests.support.factories import load_accounts
from tests.support.leakfiles import ADDRESS, write_accounts_csv, write_lines, write_mass_mail
from tests.support.services import service_missing

SLUG = "privacy"


@dataclass(frozen=True)
class PrivacyLeak:
    accounts: dict[str, str]
    strangers: list[str]  # leaked addresses of no account, as the files write them
    passwords: list[str]
    files: list[Path]

    def secrets(self) -> list[str]:
        """Every form of a stranger's address a careless store could keep, and every password."""
        forms: set[str] = set()
        for address in self.strangers:
            canonical = canonicalize_email(address)
            assert isinstance(canonical, CanonicalAddress)
            forms |= {address, address.lower(), canonical.address}
        return sorted(forms) + self.passwords


def write_privacy_leak(directory: Path) -> PrivacyLeak:
    """A mass mail, a list and a combo of one leak, with addresses unique to this call.

    Unique, because the SQLite file of a test session keeps deleted rows of earlier tests
    in its free pages: a shared address could be found there and prove nothing.
    """
    tag = secrets.token_hex(4)
    accounts = {
        "p-jane": f"jane.{tag}@gmail.com",
        "p-bob": f"bob.{tag}@example.org",
        "p-news": f"news.{tag}@exchange.example",
    }
    strangers = [f"Stranger.{i}.{tag}@Victims-{tag}.example" for i in range(8)]
    passwords = [f"Bob-Pw-{tag}:x", f"Stranger-Pw-{tag}-6", f"Other:Stranger:Pw-{tag}"]
    mail = write_mass_mail(
        directory / "mass-mail.eml",
        sender=accounts["p-news"],
        to=[f'"Jane" <{accounts["p-jane"]}>', *strangers[:3]],
        cc=[f'"S, Four" <{strangers[3]}>', accounts["p-bob"]],
    )
    lines = write_lines(
        directory / "list.txt",
        [strangers[4], f"<{strangers[5]}>", accounts["p-jane"].upper(), strangers[0].lower()],
    )
    combo = write_lines(
        directory / "combo.txt",
        [
            f"{accounts['p-bob']}:{passwords[0]}",
            f"{strangers[6]}:{passwords[1]}",
            f"{strangers[7]}:{passwords[2]}",
        ],
    )
    return PrivacyLeak(accounts, strangers, passwords, [mail, lines, combo])


def ingest_all(runtime: Runtime, leak: PrivacyLeak) -> None:
    for path in leak.files:
        ingest_leak(runtime, path, slug=SLUG)
    assert flagged(runtime, SLUG) == {"p-jane", "p-bob"}


def database_text(runtime: Runtime) -> bytes:
    """The database as an attacker with a copy of it sees it."""
    url = runtime.db.engine.url
    if url.get_backend_name() == "sqlite":
        assert url.database is not None
        main = Path(url.database)
        return b"".join(
            Path(f"{main}{suffix}").read_bytes()
            for suffix in ("", "-wal", "-shm")
            if Path(f"{main}{suffix}").exists()
        )
    pg_dump = shutil.which("pg_dump")
    if pg_dump is None:
        service_missing("pg_dump", "not on PATH")
    plain = make_url(runtime.settings.resolved_database_url).set(drivername="postgresql")
    dump = subprocess.run(
        [str(pg_dump), "--data-only", plain.render_as_string(hide_password=False)],
        capture_output=True,
        check=True,
        timeout=60,
    )
    return dump.stdout


def test_invariant_database_holds_no_leaked_address_of_a_stranger_nor_any_password(
    runtime: Runtime, tmp_path: Path
) -> None:
    leak = write_privacy_leak(tmp_path)
    load_accounts(runtime, tmp_path, leak.accounts)

    ingest_all(runtime, leak)

    stored = database_text(runtime)
    # The search sees live data: the accounts' own addresses and the password hash are there.
    for address in leak.accounts.values():
        assert address.encode() in stored
    assert b"$argon2id$" in stored
    for secret in leak.secrets():
        assert secret.encode() not in stored, f"{secret!r} is stored in the clear"
        # A bytea column is dumped as hex.
        assert secret.encode().hex().encode() not in stored, f"{secret!r} is stored as bytes"


class RawMessages(logging.Handler):
    """Keep each record's message as its code wrote it.

    Installed ahead of every other root handler: the app's address mask rewrites a record
    in place, and this test is about what the code logs, not what the mask rescues.
    """

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        parts = (record.getMessage(), record.exc_text, record.stack_info)
        self.messages.append((record.name, "\n".join(filter(None, parts))))


@pytest.fixture
def raw_messages(caplog: pytest.LogCaptureFixture) -> Iterator[RawMessages]:
    caplog.set_level(logging.DEBUG)
    handler = RawMessages()
    root = logging.getLogger()
    root.handlers.insert(0, handler)
    yield handler
    root.removeHandler(handler)


def test_invariant_no_address_in_any_log_record_of_an_ingest_and_an_account_import(
    runtime: Runtime,
    tmp_path: Path,
    raw_messages: RawMessages,
    caplog: pytest.LogCaptureFixture,
) -> None:
    leak = write_privacy_leak(tmp_path)
    load_accounts(runtime, tmp_path, leak.accounts)
    ingest_all(runtime, leak)
    late = write_accounts_csv(tmp_path / "late.csv", {"p-late": leak.strangers[2].upper()})
    assert import_accounts(runtime, late).flagged == 1  # the watch list ran too

    assert "jobs.ingest.pipeline" in {name for name, _ in raw_messages.messages}  # capture works
    for name, message in raw_messages.messages:
        assert ADDRESS.search(message) is None, f"{name} logged an address"
    assert ADDRESS.findall(caplog.text) == []


def test_invariant_no_address_on_stderr_of_cli_ingest_and_import_logging_at_debug(
    runtime: Runtime, settings: Settings, tmp_path: Path
) -> None:
    leak = write_privacy_leak(tmp_path)
    load_accounts(runtime, tmp_path, leak.accounts)
    late = write_accounts_csv(tmp_path / "late.csv", {"p-late": leak.strangers[5]})
    env = cli_env(
        settings.resolved_database_url, settings.instance_dir, LEAKGUARD_LOG_LEVEL="DEBUG"
    )
    commands = [["ingest", str(path), "--leak", SLUG] for path in leak.files]
    commands.append(["accounts", "import", str(late)])

    stderr = ""
    for command in commands:
        result = run_leakguard(env, *command)
        assert result.returncode == 0, result.stderr
        stderr += result.stderr

    assert "ingested leak" in stderr  # the capture really holds the job's log lines
    assert ADDRESS.findall(stderr) == []
    assert flagged(runtime, SLUG) == {"p-jane", "p-bob", "p-late"}
