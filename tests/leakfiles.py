"""Leak files and account sets for the ingest tests, and what those tests observe.

The writers produce files byte for byte as a leak reaches an operator (a folded mass mail,
a combo list, a gzip of lines); the readers look at the database through plain SELECTs so
a test states the outcome without trusting the code under test to describe it.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import re
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from jobs.account_import import import_accounts
from service.db import Base
from service.models import Account, Exposure, Leak, LeakEntry, LeakFile, Notice
from service.runtime import Runtime
from tests.conftest import TEST_HASH_KEY, TEST_SECRET_KEY

LEAKGUARD = Path(sys.executable).with_name("leakguard")
COUNTER_NAMES = ("lines", "valid", "invalid", "duplicates", "matched", "notices")
# An address as output might carry it; a masked one (j***@example.com) does not match.
ADDRESS = re.compile(r"[\w.+'-]+@[\w-]+(?:\.[\w-]+)+")

# --- files -------------------------------------------------------------------------------


def write_lines(path: Path, lines: Iterable[str], *, compress: bool = False) -> Path:
    """Write one record per line (LF, trailing newline); gzip it when ``compress``."""
    data = ("\n".join(lines) + "\n").encode("utf-8")
    path.write_bytes(gzip.compress(data, mtime=0) if compress else data)
    return path


def write_accounts_csv(path: Path, accounts: Mapping[str, str]) -> Path:
    """Write an ``accounts import`` CSV of external_id -> address as given."""
    rows = ["external_id,email", *(f"{ext},{email}" for ext, email in accounts.items())]
    return write_lines(path, rows)


def load_accounts(runtime: Runtime, directory: Path, accounts: Mapping[str, str]) -> None:
    """Put ``accounts`` in the database through the real CSV import."""
    report = import_accounts(runtime, write_accounts_csv(directory / "accounts.csv", accounts))
    assert report.invalid == 0, report.invalid_lines


def write_jsonl(path: Path, lines: Iterable[dict[str, Any] | str]) -> Path:
    """Write JSON lines; a str is written as is (a broken line)."""
    return write_lines(path, (x if isinstance(x, str) else json.dumps(x) for x in lines))


def write_mass_mail(
    path: Path,
    *,
    sender: str,
    to: Sequence[str],
    cc: Sequence[str],
    body: str = "Dear customers,\r\nour service moves to a new address.\r\n",
) -> Path:
    """Write a mass mail with every recipient visible, folded as a mail client folds it.

    Each header holds one address per physical line after the first (RFC 5322 folding,
    alternating space and tab), CRLF line ends, like the BitMEX mail of 2019.
    """

    def folded(name: str, addresses: Sequence[str]) -> str:
        parts = [f"{name}: {addresses[0]}"]
        for index, address in enumerate(addresses[1:]):
            parts[-1] += ","
            parts.append(("\t" if index % 2 else " ") + address)
        return "\r\n".join(parts)

    headers = [
        "Return-Path: <bounce@mailer.exchange.example>",
        "Received: from mailer.exchange.example by mx.example.net; Fri, 1 Nov 2019 10:00:00 +0000",
        f"From: Exchange Support <{sender}>",
        folded("To", to),
        folded("Cc", cc),
        "Subject: Important: changes to your account",
        "Date: Fri, 1 Nov 2019 10:00:00 +0000",
        "Message-ID: <mass-mail-1@exchange.example>",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
    ]
    path.write_bytes(("\r\n".join(headers) + "\r\n\r\n" + body).encode("utf-8"))
    return path


@dataclass(frozen=True, slots=True)
class BigLeak:
    path: Path
    accounts: dict[str, str]
    lines: int


def write_big_leak(
    directory: Path, *, accounts: int, lines: int, leaked_accounts: int, seed: int
) -> BigLeak:
    """Write ``accounts`` accounts and a plain-lines leak of ``lines`` lines.

    ``leaked_accounts`` of the accounts appear in it (each several times, in surface
    variants); the rest are strangers, most of them more than once, and about one line in
    a hundred is not an address.
    """
    rng = random.Random(seed)
    account_set = {f"acct-{i:05d}": f"member{i}@example.com" for i in range(accounts)}
    leaked = rng.sample(range(accounts), leaked_accounts)
    strangers = lines // 2
    text: list[str] = []
    for _ in range(lines):
        roll = rng.random()
        if roll < 0.005:
            i = rng.choice(leaked)
            text.append(
                rng.choice(
                    (
                        f"member{i}@example.com",
                        f"MEMBER{i}+promo@Example.com",
                        f'"Member" <member{i}@example.com>',
                    )
                )
            )
        elif roll < 0.015:
            text.append(rng.choice(("#N/A", "member@", f"broken-{rng.randrange(10**6)}")))
        else:
            text.append(f"user{rng.randrange(strangers)}@leak-victims.net")
    for i in leaked:  # every chosen account really is in the file
        text.insert(rng.randrange(len(text)), f"member{i}@example.com")
    path = write_lines(directory / "big-leak.txt", text)
    return BigLeak(path, account_set, len(text))


# --- the console script ------------------------------------------------------------------


def cli_env(db_url: str, instance_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a ``leakguard`` run on the test database with the test keys."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEAKGUARD_", "FLASK_"))}
    env.update(
        LEAKGUARD_DATABASE_URL=db_url,
        LEAKGUARD_INSTANCE_DIR=str(instance_dir),
        LEAKGUARD_HASH_KEY=TEST_HASH_KEY,
        LEAKGUARD_SECRET_KEY=TEST_SECRET_KEY,
        **extra,
    )
    return env


def run_leakguard(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LEAKGUARD), *args],
        env=env,
        cwd=env["LEAKGUARD_INSTANCE_DIR"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def json_output(result: subprocess.CompletedProcess[str]) -> Any:
    """The one JSON document a successful ``--json`` run prints on stdout."""
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout.count("\n") == 1, result.stdout
    return json.loads(result.stdout)


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The run failed with exactly one line on stderr and no stack trace; return it."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


# --- the database as the tests see it -----------------------------------------------------


def row_counts(runtime: Runtime) -> dict[str, int]:
    """Rows of each ingest table."""
    with runtime.db.read_session() as session:
        return {
            model.__tablename__: session.scalar(select(func.count()).select_from(model)) or 0
            for model in (Leak, LeakFile, LeakEntry, Exposure, Notice)
        }


def leak_counters(runtime: Runtime, slug: str) -> dict[str, int]:
    with runtime.db.read_session() as session:
        leak = session.scalars(select(Leak).where(Leak.slug == slug)).one()
        return {name: getattr(leak, name) for name in COUNTER_NAMES}


def exposures(runtime: Runtime) -> dict[tuple[str, str], tuple[str, str | None]]:
    """(external_id, leak slug) -> (kind, password_hash) of every exposure."""
    with runtime.db.read_session() as session:
        rows = session.execute(
            select(Account.external_id, Leak.slug, Exposure.kind, Exposure.password_hash)
            .join(Account, Account.id == Exposure.account_id)
            .join(Leak, Leak.id == Exposure.leak_id)
        ).all()
    pairs = {(ext, slug): (str(kind), password_hash) for ext, slug, kind, password_hash in rows}
    assert len(pairs) == len(rows), "two exposures of one account to one leak"
    return pairs


def flagged(runtime: Runtime, slug: str) -> set[str]:
    """External ids of the accounts exposed to the leak ``slug``."""
    return {ext for ext, leak in exposures(runtime) if leak == slug}


def notices(runtime: Runtime) -> list[tuple[str, str | None, str, str]]:
    """(external_id, leak slug, kind, state) of every notice, sorted, duplicates kept."""
    with runtime.db.read_session() as session:
        rows = session.execute(
            select(Account.external_id, Leak.slug, Notice.kind, Notice.state)
            .join(Account, Account.id == Notice.account_id)
            .outerjoin(Leak, Leak.id == Notice.leak_id)
        ).all()
    return sorted((ext, slug, str(kind), str(state)) for ext, slug, kind, state in rows)


def all_rows(runtime: Runtime) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, sorted: two equal results are two equal databases."""
    with runtime.db.read_session() as session:
        return {
            table.name: sorted((tuple(row) for row in session.execute(select(table))), key=repr)
            for table in Base.metadata.sorted_tables
        }


def stored_values(runtime: Runtime) -> list[tuple[str, str, str | bytes]]:
    """(table, column, value) of every non-empty text, binary or JSON value in the database."""
    found: list[tuple[str, str, str | bytes]] = []
    with runtime.db.read_session() as session:
        for table in Base.metadata.sorted_tables:
            for row in session.execute(select(table)).mappings():
                for column in table.columns:
                    value = row[column.name]
                    if isinstance(value, list | dict):
                        value = json.dumps(value)
                    if isinstance(value, str | bytes) and value:
                        found.append((table.name, column.name, value))
    return found
