"""Accounts and exposures for the risk and step-up tests, made the way the service does."""

from __future__ import annotations

from datetime import datetime

import pyotp
from sqlalchemy import select

from service.accounts import AccountInput, upsert_account
from service.db import utcnow
from service.leaks.catalogue import get_or_create_leak
from service.leaks.exposures import NewExposure, record_exposures
from service.leaks.passwords import hash_leaked_password
from service.models import Account, ExposureKind
from service.runtime import Runtime
from service.stepup.services import Passed

ACTOR = "test"


def add_account(runtime: Runtime, external_id: str, email: str | None = None) -> int:
    with runtime.db.transaction() as session:
        result = upsert_account(
            session,
            AccountInput(external_id=external_id, email=email or f"{external_id}@example.org"),
            keys=runtime.keys,
            now=utcnow(),
        )
        return session.scalars(
            select(Account.id).where(Account.external_id == result.account.external_id)
        ).one()


def expose(
    runtime: Runtime, account_id: int, *, slug: str = "exchange-2019", password: str | None = None
) -> None:
    """Flag the account in a leak (with its leaked password, for a credential leak)."""
    with runtime.db.transaction() as session:
        leak = get_or_create_leak(session, slug=slug, name=None, source=None, now=utcnow())
        kind = ExposureKind.CREDENTIAL if password is not None else ExposureKind.EMAIL
        password_hash = hash_leaked_password(password) if password is not None else None
        record_exposures(
            session, leak.id, [NewExposure(account_id, kind, password_hash)], now=utcnow()
        )


def enroll_totp(runtime: Runtime, external_id: str, *, now: datetime) -> pyotp.TOTP:
    """Enrol and confirm TOTP at ``now``; return the authenticator (as the person's phone)."""
    with runtime.db.transaction() as session:
        enrollment = runtime.step_up.enroll_totp(session, external_id, actor=ACTOR, now=now)
    totp = pyotp.TOTP(enrollment.secret)
    with runtime.db.transaction() as session:
        outcome = runtime.step_up.confirm_totp(
            session, external_id, totp.at(now), actor=ACTOR, now=now
        )
    assert isinstance(outcome, Passed)
    return totp
