"""Rows made the way the service makes them, with valid defaults.

A test sets only what it is about (``make_account(runtime, email="jörg@example.com")``);
everything else gets a value that works. Each factory goes through the product's own
functions (the upsert, the catalogue, the watch list, enrolment), so a row is never in a
state the service could not have put it in.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

import pyotp
from sqlalchemy import select

from jobs.account_import import import_accounts
from jobs.ingest.pipeline import ingest_leak
from service.accounts import AccountInput, upsert_account
from service.clients import Scope, create_api_client
from service.db import utcnow
from service.leaks.catalogue import get_or_create_leak
from service.leaks.exposures import NewExposure, record_exposures
from service.leaks.passwords import hash_leaked_password
from service.models import Account, ExposureKind
from service.risk import Verdict, assess
from service.runtime import Runtime
from service.stepup.services import Enrolled
from tests.support.leakfiles import write_accounts_csv, write_lines

ACTOR = "test"
LEAK = "exchange-2019"
_serial = itertools.count(1)


def make_account(
    runtime: Runtime,
    external_id: str | None = None,
    email: str | None = None,
    *,
    locale: str | None = None,
) -> int:
    """Create (or update) an account through the one upsert; return its row id."""
    external_id = external_id or f"account-{next(_serial)}"
    with runtime.db.transaction() as session:
        result = upsert_account(
            session,
            AccountInput(
                external_id=external_id,
                email=email or f"{external_id}@example.org",
                locale=locale,
            ),
            keys=runtime.keys,
            now=utcnow(),
        )
        return session.scalars(
            select(Account.id).where(Account.external_id == result.account.external_id)
        ).one()


def make_leak(
    runtime: Runtime, slug: str = LEAK, *, name: str | None = None, source: str | None = None
) -> int:
    """The leak ``slug`` in the catalogue (created if new); return its row id."""
    with runtime.db.transaction() as session:
        return get_or_create_leak(session, slug=slug, name=name, source=source, now=utcnow()).id


def expose(
    runtime: Runtime, account_id: int, *, slug: str = LEAK, password: str | None = None
) -> None:
    """Flag the account in a leak (with its leaked password, for a credential leak)."""
    leak_id = make_leak(runtime, slug)
    kind = ExposureKind.CREDENTIAL if password is not None else ExposureKind.EMAIL
    password_hash = hash_leaked_password(password) if password is not None else None
    with runtime.db.transaction() as session:
        record_exposures(
            session, leak_id, [NewExposure(account_id, kind, password_hash)], now=utcnow()
        )


def make_api_key(runtime: Runtime, *scopes: Scope, name: str | None = None) -> str:
    """A new API client's key, with ``scopes`` (default: every scope)."""
    with runtime.db.transaction() as session:
        new = create_api_client(
            session,
            name=name or f"client-{next(_serial)}",
            scopes=scopes or tuple(Scope),
            actor=ACTOR,
            now=utcnow(),
        )
    return new.key


def enroll_totp(
    runtime: Runtime, external_id: str, *, now: datetime, assurance_token: str | None = None
) -> pyotp.TOTP:
    """Enrol and confirm TOTP at ``now``; return the authenticator (as the person's phone).

    A first authenticator on an account no leak names needs no ``assurance_token``.
    """
    with runtime.db.transaction() as session:
        enrollment = runtime.step_up.enroll_totp(
            session, external_id, assurance_token=assurance_token, actor=ACTOR, now=now
        )
    totp = pyotp.TOTP(enrollment.secret)
    with runtime.db.transaction() as session:
        outcome = runtime.step_up.confirm_totp(
            session, external_id, totp.at(now), actor=ACTOR, now=now
        )
    assert isinstance(outcome, Enrolled)
    return totp


def load_accounts(runtime: Runtime, directory: Path, accounts: Mapping[str, str]) -> None:
    """Put ``accounts`` (external_id -> address) in the database through the real CSV import."""
    report = import_accounts(runtime, write_accounts_csv(directory / "accounts.csv", accounts))
    assert report.invalid == 0, report.invalid_lines


def flag_accounts(
    runtime: Runtime,
    directory: Path,
    count: int,
    *,
    slug: str = LEAK,
    prefix: str = "member",
    locales: tuple[str, ...] = ("",),
) -> dict[str, str]:
    """Import ``count`` accounts (and as many not leaked), ingest a leak naming them.

    Each flagged account then has one pending warning. Returns external_id -> address of
    the flagged accounts. Locales cycle through ``locales``.
    """
    directory.mkdir(parents=True, exist_ok=True)
    leaked = {
        f"{prefix}-{i:04d}": f"{prefix.title()}.{i}@Example.com"
        if i % 7 == 0
        else f"{prefix}{i}@example.com"
        for i in range(count)
    }
    safe = {f"{prefix}-safe-{i:04d}": f"{prefix}.safe{i}@example.net" for i in range(count)}
    rows = ["external_id,email,locale"]
    for index, (external_id, email) in enumerate({**leaked, **safe}.items()):
        rows.append(f"{external_id},{email},{locales[index % len(locales)]}")
    imported = import_accounts(runtime, write_lines(directory / f"{slug}-accounts.csv", rows))
    assert imported.invalid == 0, imported.invalid_lines
    leak_lines = [email.lower() for email in leaked.values()]
    leak_lines += [f"stranger{i}@leak-victims.example" for i in range(count)]
    report = ingest_leak(
        runtime,
        write_lines(directory / f"{slug}.txt", leak_lines),
        slug=slug,
        name="Exchange newsletter with every recipient visible",
    )
    assert report.run.matched == count
    return leaked


def risk_verdict(
    runtime: Runtime,
    external_id: str,
    *,
    device_id: str | None = None,
    now: datetime | None = None,
) -> Verdict:
    """The real risk check (``assess``) for a sign-in without password or token, at
    ``now`` (default: now)."""
    return assess(
        runtime.db,
        runtime.step_up,
        external_id,
        password=None,
        assurance_token=None,
        actor="login",
        context=None,
        now=now or utcnow(),
        device_id=device_id,
    )
