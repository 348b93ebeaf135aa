"""Accounts mirrored from the login service: create, change, read, delete, batch upsert.

The login service owns accounts; Leakguard keeps the external id, the address as given,
its keyed hash and the person's locale. Two accounts may share one canonical address
(the login service may treat ``John.Smith@gmail.com`` and ``johnsmith@gmail.com`` as two
people): both are kept and a leak of that address flags both.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from service.address_keys import AddressKeys
from service.errors import InvalidEmail, NotFound, ValidationFailed
from service.exposures import flag_from_watchlist
from service.models import Account

MAX_EXTERNAL_ID_CHARS = 255
MAX_EMAIL_CHARS = 320
MAX_LOCALE_CHARS = 35
# BCP 47 in the shape mail templates need (language, optional script/region/variants);
# not a full registry check: an unknown tag only falls back to English.
LOCALE_PATTERN = re.compile(r"[A-Za-z]{2,8}(?:-[A-Za-z0-9]{1,8})*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class UpsertOutcome(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    INVALID = "invalid"


@dataclass(frozen=True, slots=True)
class AccountInput:
    external_id: str
    email: str
    locale: str | None = None


@dataclass(frozen=True, slots=True)
class AccountView:
    external_id: str
    email: str
    locale: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, account: Account) -> AccountView:
        return cls(
            external_id=account.external_id,
            email=account.email,
            locale=account.locale,
            created_at=account.created_at,
            updated_at=account.updated_at,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "external_id": self.external_id,
            "email": self.email,
            "locale": self.locale,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class Upserted:
    outcome: UpsertOutcome
    account: AccountView
    flagged: int = 0  # leaks this account was newly found in (the watch list)


@dataclass(frozen=True, slots=True)
class UpsertResult:
    external_id: str
    outcome: UpsertOutcome
    error: str | None = None


@dataclass(frozen=True, slots=True)
class BatchReport:
    results: tuple[UpsertResult, ...]

    def count(self, outcome: UpsertOutcome) -> int:
        return sum(1 for result in self.results if result.outcome is outcome)


def check_external_id(external_id: str) -> str:
    """Return ``external_id`` if it can be stored; raise ValidationFailed otherwise."""
    if not external_id or len(external_id) > MAX_EXTERNAL_ID_CHARS:
        raise ValidationFailed(f"external_id must be 1 to {MAX_EXTERNAL_ID_CHARS} characters")
    if _CONTROL.search(external_id) or not _is_utf8(external_id):
        raise ValidationFailed("external_id contains characters that cannot be stored")
    return external_id


def normalize_locale(locale: str | None) -> str | None:
    """Return the locale tag as stored (``de-AT``), None for none; raise ValidationFailed."""
    if locale is None or locale == "":
        return None
    if len(locale) > MAX_LOCALE_CHARS or not LOCALE_PATTERN.fullmatch(locale):
        raise ValidationFailed("locale must be a BCP 47 language tag such as en or de-AT")
    return locale


def email_key_for(keys: AddressKeys, email: str) -> bytes:
    """Return the keyed hash of ``email``; raise InvalidEmail if it is no address."""
    if len(email) > MAX_EMAIL_CHARS or not _is_utf8(email):
        raise InvalidEmail()
    key = keys.key(email)
    if key is None:
        raise InvalidEmail()
    return key


@dataclass(frozen=True, slots=True)
class _ValidInput:
    external_id: str
    email: str
    email_key: bytes
    locale: str | None


def _validate(item: AccountInput, keys: AddressKeys) -> _ValidInput:
    email = item.email.strip()
    return _ValidInput(
        external_id=check_external_id(item.external_id),
        email=email,
        email_key=email_key_for(keys, email),
        locale=normalize_locale(item.locale),
    )


def upsert_account(
    session: Session, item: AccountInput, *, keys: AddressKeys, now: datetime
) -> Upserted:
    """Create the account or bring it up to date. Does not commit.

    A new account, or one given a new address, is checked against the watch list at once:
    if its address is in a leak, it is flagged and warned like one found by the ingest.
    Raises ValidationFailed (InvalidEmail) before writing anything; writes nothing when
    unchanged. Two concurrent creations of one external_id: one raises IntegrityError,
    which the caller retries (``run_in_transaction``).
    """
    valid = _validate(item, keys)
    return _apply(session, valid, now=now)


def _apply(session: Session, valid: _ValidInput, *, now: datetime) -> Upserted:
    account = session.scalars(
        select(Account).where(Account.external_id == valid.external_id).with_for_update()
    ).one_or_none()
    if account is None:
        account = Account(
            external_id=valid.external_id,
            email=valid.email,
            email_key=valid.email_key,
            locale=valid.locale,
            created_at=now,
            updated_at=now,
        )
        session.add(account)
        session.flush()
        flagged = flag_from_watchlist(session, [account.id], now=now).flagged
        return Upserted(UpsertOutcome.CREATED, AccountView.of(account), flagged)
    if (account.email, account.locale) == (valid.email, valid.locale):
        return Upserted(UpsertOutcome.UNCHANGED, AccountView.of(account))
    new_key = account.email_key != valid.email_key
    if account.email != valid.email:
        account.undeliverable_at = None  # a new address deserves a new chance
    account.email = valid.email
    account.email_key = valid.email_key
    account.locale = valid.locale
    account.updated_at = now
    session.flush()
    flagged = flag_from_watchlist(session, [account.id], now=now).flagged if new_key else 0
    return Upserted(UpsertOutcome.UPDATED, AccountView.of(account), flagged)


def upsert_accounts(
    session: Session, items: Sequence[AccountInput], *, keys: AddressKeys, now: datetime
) -> BatchReport:
    """Upsert many accounts; an invalid item is reported and skipped, the rest are applied.

    Does not commit. Items are validated before any write, so a bad item changes nothing;
    a repeated external_id is applied in order (the last one wins).
    """
    results = []
    for item in items:
        try:
            valid = _validate(item, keys)
        except ValidationFailed as exc:
            results.append(UpsertResult(item.external_id, UpsertOutcome.INVALID, error=str(exc)))
            continue
        upserted = _apply(session, valid, now=now)
        results.append(UpsertResult(valid.external_id, upserted.outcome))
    return BatchReport(tuple(results))


def get_account(session: Session, external_id: str) -> AccountView:
    """Return the account; raise NotFound."""
    account = session.scalars(
        select(Account).where(Account.external_id == external_id)
    ).one_or_none()
    if account is None:
        raise NotFound("no account with this external_id")
    return AccountView.of(account)


def delete_account(session: Session, external_id: str) -> None:
    """Forget the account and everything hanging off it; raise NotFound. Does not commit."""
    deleted = session.execute(
        delete(Account).where(Account.external_id == external_id).returning(Account.id)
    ).first()
    if deleted is None:
        raise NotFound("no account with this external_id")


def _is_utf8(text: str) -> bool:
    # A lone surrogate from JSON ("\ud800") passes str checks but no database can store it.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
