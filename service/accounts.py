"""Accounts mirrored from the login service: create, change, read, delete, batch upsert.

The login service owns accounts; Leakguard keeps the external id, the address as given,
its keyed hash and the person's locale. Two accounts may share one canonical address
(the login service may treat ``John.Smith@gmail.com`` and ``johnsmith@gmail.com`` as two
people): both are kept and a leak of that address flags both.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import Table, delete, select, update
from sqlalchemy.orm import Session

from service.addresses import AddressKeys, InvalidAddress, mask_email
from service.addresses.mailbox import SEVERAL_ADDRESSES, Mailbox, bare_mailbox
from service.audit import record_event
from service.db import bulk
from service.db.address_locks import lock_addresses
from service.email_change.superseded import supersede_pending
from service.errors import InvalidEmail, NotFound, ValidationFailed
from service.events.emit import record_identifiers_changed
from service.leaks.exposures import end_old_address_exposures, flag_from_watchlist
from service.models import Account
from service.stepup.devices import end_trust
from service.stepup.services import drop_pending_enrolments

MAX_EXTERNAL_ID_CHARS = 255
MAX_LOCAL_PART_OCTETS = 64  # RFC 5321 section 4.5.3.1.1
# What the API appends to /v1/accounts/{external_id}. An id may hold any character,
# slashes too ("tenant/42"), but the path of an id ending in one of these is the path of
# that operation on a shorter id ("a/totp" + "/totp"...): such ids could not be reached.
ROUTE_SUFFIXES = (
    "/email-change",
    "/email-change/resend",
    "/email-change:assisted",
    "/totp",
    "/totp/confirm",
    "/recovery-codes",
)
MAX_EMAIL_CHARS = 320
MAX_LOCALE_CHARS = 35
MAX_LOCALE_INPUT_CHARS = 80  # a POSIX locale name, codeset and modifier included
# BCP 47 in the shape mail templates need (language, optional script/region/variants);
# not a full registry check: an unknown tag only falls back to English.
LOCALE_PATTERN = re.compile(r"[A-Za-z]{2,8}(?:-[A-Za-z0-9]{1,8})*")
# Characters that change how text around them is shown or read rather than being part
# of it (Unicode categories Cc control, Cf format: bidirectional overrides such as U+202E,
# zero-width characters; Zl, Zp line breaks): an id holding them can be made to look
# like another in a log, a page or a terminal (CVE-2021-42574, "Trojan Source").
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})


# Letters and symbols that render as nothing (Hangul fillers, braille blank, combining
# grapheme joiner, Mongolian vowel separator); U+FFFD stands for bytes that were not text.
_BLANK_CHARACTERS = frozenset("\u115f\u1160\u3164\uffa0\u034f\u2800\u180e\ufffd")


def _has_invisible(text: str) -> bool:
    if text.isascii():
        # The only such characters in ASCII are the C0 controls and DEL (category Cc):
        # exactly the ASCII characters str.isprintable refuses. Nearly every id and
        # address is ASCII, and the per-character walk below was a quarter of an import.
        return not text.isprintable()
    if text.isprintable():
        # str.isprintable refuses every character of the categories Other (Cc, Cf, Cs, Co,
        # Cn) and Separator (Zs, Zl, Zp) but the space: of what the walk below looks for,
        # only the blank letters can remain. A name or domain in another script is
        # printable, so its row no longer pays a category lookup per character.
        return not _BLANK_CHARACTERS.isdisjoint(text)
    return _has_invisible_character(text)


def _has_invisible_character(text: str) -> bool:
    return any(
        char in _BLANK_CHARACTERS
        or unicodedata.category(char) in _INVISIBLE_CATEGORIES
        or unicodedata.category(char) == "Cn"  # unassigned, and noncharacters like U+FFFE
        for char in text
    )


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
    # When the account last moved to another mailbox, by any path (PUT, batch, import, a
    # confirmed or reverted email change); a respelling of the same mailbox does not count.
    email_changed_at: datetime | None = None

    @classmethod
    def of(cls, account: Account) -> AccountView:
        return cls(
            external_id=account.external_id,
            email=account.email,
            locale=account.locale,
            created_at=account.created_at,
            updated_at=account.updated_at,
            email_changed_at=account.email_changed_at,
        )


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
    if not external_id.strip() or len(external_id) > MAX_EXTERNAL_ID_CHARS:
        raise ValidationFailed(f"external_id must be 1 to {MAX_EXTERNAL_ID_CHARS} characters")
    if _has_invisible(external_id) or not _is_utf8(external_id):
        raise ValidationFailed("external_id contains characters that cannot be stored")
    if external_id.endswith(ROUTE_SUFFIXES):
        raise ValidationFailed(
            "external_id must not end in " + ", ".join(ROUTE_SUFFIXES) + ": /v1/accounts/"
            "{external_id} followed by it names an operation on a shorter id"
        )
    return external_id


def external_ids_plain(external_ids: Sequence[str]) -> bool:
    """Return True if ``check_external_id`` accepts every one of ``external_ids``.

    One test for a whole batch of the common kind (printable ASCII, 1 to 255 characters,
    not only spaces); False means "ask ``check_external_id`` one by one", not "invalid".
    """
    if not external_ids:
        return True
    joined = "".join(external_ids)
    # In ASCII, printable means no control character: _has_invisible's ASCII lane.
    return (
        joined.isascii()
        and joined.isprintable()
        and "/" not in joined  # ROUTE_SUFFIXES: ids with a slash are asked one by one
        and max(map(len, external_ids)) <= MAX_EXTERNAL_ID_CHARS
        and all(map(str.strip, external_ids))
    )


def normalize_locale(locale: str | None) -> str | None:
    """Return the locale tag as stored (``de-AT``), None for none; raise ValidationFailed.

    A BCP 47 tag (RFC 5646) is stored as given. A POSIX locale name as systems and exports
    write it (``language[_territory][.codeset][@modifier]``, POSIX.1-2017 section 8.2; Java
    and ICU's ``zh_Hant_TW``) is stored as the tag it means: ``de_DE.UTF-8`` as ``de-DE``,
    ``sr_RS@latin`` as ``sr-Latn-RS``, ``ca_ES@valencia`` as ``ca-ES-valencia``; other
    modifiers (``@euro``) and the codeset say nothing of the language and are dropped.
    ``C`` and ``POSIX`` (with any codeset) name no language: None. Refusing these had
    refused the account itself, whose person then got no protection.
    """
    if locale is None or locale == "":
        return None
    if (
        len(locale) <= MAX_LOCALE_CHARS
        and LOCALE_PATTERN.fullmatch(locale)
        and locale.casefold() not in _NO_LANGUAGE
    ):
        return locale
    posix = _POSIX_LOCALE.fullmatch(locale) if len(locale) <= MAX_LOCALE_INPUT_CHARS else None
    if posix is None:
        raise ValidationFailed(_LOCALE_RULE)
    language = posix["language"]
    if language.casefold() in _NO_LANGUAGE and not posix["rest"]:
        return None
    subtags = posix["rest"].split("_")[1:] if posix["rest"] else []
    modifier = (posix["modifier"] or "").casefold()
    if modifier in _SCRIPT_MODIFIERS and not (subtags and _is_script(subtags[0])):
        subtags.insert(0, _SCRIPT_MODIFIERS[modifier])
    elif modifier in _VARIANT_MODIFIERS:
        subtags.append(modifier)
    tag = "-".join([language, *subtags])
    if len(tag) > MAX_LOCALE_CHARS or not LOCALE_PATTERN.fullmatch(tag):
        raise ValidationFailed(_LOCALE_RULE)
    return tag


def _is_script(subtag: str) -> bool:
    return len(subtag) == 4 and subtag.isalpha()  # RFC 5646 section 2.2.3


# POSIX.1-2017 section 8.2: language[_territory][.codeset][@modifier]; Java and ICU add a
# script between language and territory (zh_Hant_TW). C and POSIX are one letter or five.
_POSIX_LOCALE = re.compile(
    r"(?P<language>[A-Za-z]{1,8})(?P<rest>(?:_[A-Za-z0-9]{1,8})*)"
    r"(?:\.[A-Za-z0-9_-]{1,20})?(?:@(?P<modifier>[A-Za-z0-9]{1,20}))?"
)
_LOCALE_RULE = (
    "locale must be a BCP 47 language tag such as en or de-AT, or a POSIX locale name "
    "such as de_DE.UTF-8"
)
_NO_LANGUAGE = frozenset({"c", "posix"})
# glibc's modifiers that name a script (ISO 15924) or a registered variant (RFC 5646).
_SCRIPT_MODIFIERS = {"latin": "Latn", "cyrillic": "Cyrl", "devanagari": "Deva"}
_VARIANT_MODIFIERS = frozenset({"valencia"})


def bare_email(keys: AddressKeys, email: str) -> Mailbox:
    """Return the one bare addr-spec ``email`` names (as stored) and its canonical form.

    Dressing such as a display name, angle brackets, quotes, ``mailto:``, a comment or a
    trailing ``;`` is dropped (``service.addresses.mailbox``). Raises InvalidEmail for no
    address, and for a value naming two mailboxes.
    """
    email = email.strip()
    if len(email) > MAX_EMAIL_CHARS or not _is_utf8(email) or _has_invisible(email):
        raise InvalidEmail()
    mailbox = bare_mailbox(email, keys.rules)
    if mailbox == SEVERAL_ADDRESSES:
        raise InvalidEmail("the value names more than one address: send the person's one address")
    if isinstance(mailbox, InvalidAddress):
        raise InvalidEmail()
    if local_part_too_long(mailbox.bare):
        raise InvalidEmail(
            f"the part before the @ is longer than {MAX_LOCAL_PART_OCTETS} bytes (RFC 5321)"
        )
    return mailbox


def local_part_too_long(address: str) -> bool:
    """Whether the local part of the addr-spec ``address`` is over RFC 5321's 64 octets
    (section 4.5.3.1.1): no server need accept it, so no code or warning could reach it.

    The canonical form checks the other limits (a domain label 63 octets, the address
    254) but not this one: leaks hold such addresses, and they are matched as written.
    """
    local = address.rpartition("@")[0]
    if len(local) > MAX_LOCAL_PART_OCTETS or local.isascii():
        return len(local) > MAX_LOCAL_PART_OCTETS
    return len(local.encode("utf-8", "surrogatepass")) > MAX_LOCAL_PART_OCTETS


@dataclass(frozen=True, slots=True)
class ValidAccount:
    """An account as it will be stored: checked, its address keyed."""

    external_id: str
    email: str
    email_key: bytes
    locale: str | None


def validate_account(item: AccountInput, keys: AddressKeys) -> ValidAccount:
    """Check an account's fields and key its address; raise ValidationFailed (InvalidEmail)."""
    external_id = check_external_id(item.external_id)
    mailbox = bare_email(keys, item.email)
    return ValidAccount(
        external_id=external_id,
        email=mailbox.bare,
        email_key=keys.hasher.hash(mailbox.canonical.address),
        locale=normalize_locale(item.locale),
    )


@dataclass(frozen=True, slots=True)
class AppliedAccounts:
    """What ``apply_accounts`` did: each row's outcome by external_id, and leaks found."""

    outcomes: dict[str, UpsertOutcome]
    flagged: int  # exposures opened by the watch list for new or re-addressed accounts


class AddressChangeCause(StrEnum):
    """What changed an account's address (the audit event's ``cause``)."""

    ACCOUNT_SYNC = "account_sync"  # PUT /v1/accounts/{id} or POST /v1/accounts:batch
    ACCOUNT_IMPORT = "account_import"  # leakguard accounts import
    EMAIL_CHANGE_CONFIRMED = "email_change_confirmed"  # the new mailbox confirmed a request
    EMAIL_CHANGE_REVERTED = "email_change_reverted"  # the old mailbox undid a change
    SUPPORT = "support"  # staff changed it for the owner


# The changes the login service did not make itself: each is sent to it as a security
# event (identifier-changed). A sync or an import came from it.
ANNOUNCED_CAUSES = frozenset(
    {
        AddressChangeCause.EMAIL_CHANGE_CONFIRMED,
        AddressChangeCause.EMAIL_CHANGE_REVERTED,
        AddressChangeCause.SUPPORT,
    }
)


ACCOUNT_TABLE = cast(Table, Account.__table__)


@dataclass(frozen=True, slots=True)
class AccountColumns:
    """Valid accounts as four parallel lists, one per stored field (an import chunk's shape).

    What ``apply_account_columns`` takes: a chunk of thousands costs a few list operations
    where a ``ValidAccount`` per row cost an object each, twice over.
    """

    external_ids: list[str]
    emails: list[str]  # bare mailboxes, as stored
    email_keys: list[bytes]  # keyed hashes of their canonical forms
    locales: list[str | None]

    @classmethod
    def of(cls, rows: Sequence[ValidAccount]) -> AccountColumns:
        return cls(
            [row.external_id for row in rows],
            [row.email for row in rows],
            [row.email_key for row in rows],
            [row.locale for row in rows],
        )

    def slice(self, start: int, stop: int) -> AccountColumns:
        """Return the rows ``start`` to ``stop`` (excluded)."""
        return AccountColumns(
            self.external_ids[start:stop],
            self.emails[start:stop],
            self.email_keys[start:stop],
            self.locales[start:stop],
        )

    def take(self, indexes: Sequence[int]) -> AccountColumns:
        """Return the rows at ``indexes``, in that order."""
        return AccountColumns(
            [self.external_ids[i] for i in indexes],
            [self.emails[i] for i in indexes],
            [self.email_keys[i] for i in indexes],
            [self.locales[i] for i in indexes],
        )


def apply_accounts(
    session: Session,
    rows: Sequence[ValidAccount],
    *,
    now: datetime,
    lock: bool = False,
    cause: AddressChangeCause = AddressChangeCause.ACCOUNT_SYNC,
) -> AppliedAccounts:
    """Create or update accounts by external_id, set-based: the one account upsert.

    ``apply_account_columns`` for rows given one object each (the API); see there.
    """
    return apply_account_columns(session, AccountColumns.of(rows), now=now, lock=lock, cause=cause)


def apply_account_columns(
    session: Session,
    rows: AccountColumns,
    *,
    now: datetime,
    lock: bool = False,
    cause: AddressChangeCause = AddressChangeCause.ACCOUNT_SYNC,
) -> AppliedAccounts:
    """Create or update accounts by external_id, set-based: the one account upsert.

    The API calls it with one row, the CSV import with a chunk of thousands; a handful of
    statements either way (one read, one insert, one update, one watch-list join). Rows
    must have distinct external_ids. An account created, or given an address with another
    key, is checked against the watch list at once and flagged like one found by an ingest;
    a locale-only change, or a respelling of the same canonical address, is not. Every
    address change goes through ``change_addresses`` (exposures of the old address end,
    their warnings are cancelled, trust ends, the epoch rises). ``lock`` takes row
    locks on the existing accounts (PostgreSQL), so concurrent calls on one account apply
    one after the other.
    Does not commit; two concurrent creations of one external_id: one raises
    IntegrityError, which the caller retries (``run_in_transaction``).
    """
    external_ids = rows.external_ids
    # Row locks need the rows themselves; without them the server compares (PostgreSQL).
    differences = (
        None if lock else bulk.stored_differences(session, external_ids, rows.emails, rows.locales)
    )
    if differences is not None:
        outcomes, inserts, updates, moves = _sort_differences(rows, *differences, now=now)
    else:
        existing = {
            external_id: (account_id, email, email_key, locale)
            for account_id, external_id, email, email_key, locale in bulk.accounts_by_external_id(
                session, ACCOUNT_TABLE, external_ids, lock=lock
            )
        }
        outcomes, inserts, updates, moves = _compare(rows, existing, now=now)
    # Before any address is written: a confirmation of one of these addresses waits, or
    # is waited for (``service.db.address_locks``).
    lock_addresses(session, inserts.email_keys + [m.email_key for m in moves])
    created = bulk.insert_accounts(
        session,
        ACCOUNT_TABLE,
        inserts.external_ids,
        inserts.emails,
        inserts.email_keys,
        inserts.locales,
        now=now,
    )
    if updates:
        session.execute(update(Account), updates)
    changed = change_addresses(session, moves, cause=cause, now=now)
    flagged = flag_from_watchlist(session, created, now=now).flagged + changed.flagged
    return AppliedAccounts(outcomes, flagged)


def _sort_differences(
    rows: AccountColumns,
    missing: list[int],
    changed: dict[int, tuple[int, str, bytes, str | None]],
    *,
    now: datetime,
) -> tuple[dict[str, UpsertOutcome], AccountColumns, list[dict[str, Any]], list[AddressChange]]:
    """``_compare`` for differences the server found: ``missing`` rows, ``changed`` ones."""
    external_ids = rows.external_ids
    outcomes = dict.fromkeys(external_ids, UpsertOutcome.UNCHANGED)
    for index in missing:
        outcomes[external_ids[index]] = UpsertOutcome.CREATED
    updates: list[dict[str, Any]] = []
    moves: list[AddressChange] = []
    for index in sorted(changed):
        account_id, email, email_key, locale = changed[index]
        outcomes[external_ids[index]] = UpsertOutcome.UPDATED
        if locale != rows.locales[index]:
            updates.append({"id": account_id, "locale": rows.locales[index], "updated_at": now})
        if email != rows.emails[index]:
            moves.append(
                AddressChange(account_id, rows.emails[index], rows.email_keys[index], email_key)
            )
    inserts = rows if len(missing) == len(external_ids) else rows.take(missing)
    return outcomes, inserts, updates, moves


def _compare(
    rows: AccountColumns,
    existing: dict[str, tuple[int, str, bytes, str | None]],
    *,
    now: datetime,
) -> tuple[dict[str, UpsertOutcome], AccountColumns, list[dict[str, Any]], list[AddressChange]]:
    """Sort rows into created, unchanged and updated against the stored ``existing``."""
    outcomes: dict[str, UpsertOutcome] = {}
    new: list[int] = []
    updates: list[dict[str, Any]] = []
    moves: list[AddressChange] = []
    for index, (external_id, new_email, new_locale) in enumerate(
        zip(rows.external_ids, rows.emails, rows.locales, strict=True)
    ):
        current = existing.get(external_id)
        if current is None:
            outcomes[external_id] = UpsertOutcome.CREATED
            new.append(index)
            continue
        account_id, email, email_key, locale = current
        if email == new_email and locale == new_locale:
            outcomes[external_id] = UpsertOutcome.UNCHANGED
            continue
        outcomes[external_id] = UpsertOutcome.UPDATED
        if locale != new_locale:
            updates.append({"id": account_id, "locale": new_locale, "updated_at": now})
        if email != new_email:
            moves.append(AddressChange(account_id, new_email, rows.email_keys[index], email_key))
    return outcomes, rows.take(new), updates, moves


@dataclass(frozen=True, slots=True)
class AddressChange:
    """One account moving to another address, as ``change_addresses`` takes it."""

    account_id: int
    email: str  # the new bare mailbox, as stored
    email_key: bytes  # the keyed hash of its canonical form
    old_email_key: bytes  # the key it had: a respelling keeps its exposures


@dataclass(frozen=True, slots=True)
class AddressChanged:
    """What an address change did, for one account or many."""

    accounts: int  # accounts whose stored address changed
    exposures_ended: int  # open exposures of the old addresses, resolved (address_changed)
    warnings_cancelled: int  # their warnings not yet sent, cancelled
    flagged: int  # exposures opened for the new addresses by the watch list
    devices_untrusted: int  # trusted devices whose trust ended


def change_address(
    session: Session,
    keys: AddressKeys,
    account: Account,
    new_mailbox: Mailbox,
    *,
    cause: AddressChangeCause,
    actor: str,
    now: datetime,
) -> AddressChanged:
    """Move one account to ``new_mailbox`` (from ``bare_email``) and audit it.

    The one domain step every path that changes an address takes (``change_addresses``
    for one account): the API, the batch endpoint and the import come through
    ``apply_accounts``; the email-change flow calls this when a change is confirmed or
    reverted. Takes a row lock on the account (PostgreSQL). An unchanged bare mailbox
    changes nothing and records nothing. Records ``account.address_changed`` with both
    addresses masked and ``cause``. Does not commit.
    """
    locked = session.scalars(
        select(Account).where(Account.id == account.id).with_for_update()
    ).one()
    if locked.email == new_mailbox.bare:
        return AddressChanged(0, 0, 0, 0, 0)
    old_email = locked.email
    change = AddressChange(
        locked.id,
        new_mailbox.bare,
        keys.hasher.hash(new_mailbox.canonical.address),
        locked.email_key,
    )
    changed = change_addresses(session, [change], cause=cause, now=now)
    session.refresh(locked)
    record_event(
        session,
        actor=actor,
        action="account.address_changed",
        target=f"account:{locked.external_id}",
        detail={
            "cause": cause.value,
            "from": mask_email(old_email),
            "to": mask_email(new_mailbox.bare),
            "exposures_ended": changed.exposures_ended,
            "warnings_cancelled": changed.warnings_cancelled,
            "flagged": changed.flagged,
        },
        now=now,
    )
    return changed


def change_addresses(
    session: Session,
    changes: Sequence[AddressChange],
    *,
    cause: AddressChangeCause,
    now: datetime,
) -> AddressChanged:
    """Move accounts to other addresses, set-based (a handful of statements for a chunk).

    For each: (a) its open exposures of the old address end (``resolved``, cause
    ``address_changed``) and (b) their unsent warnings are cancelled, so none is mailed to
    the new address (``end_old_address_exposures``); (c) the new bare mailbox and key are
    stored, and ``email_changed_at`` is now; (d) the new address is checked against the
    watch list at once and flagged if it leaked; (e) the security epoch rises (earlier
    assurance tokens stop working), pending TOTP enrolments drop and every trusted device
    stops being trusted; (f) an email change
    awaiting confirmation is closed as ``superseded`` (``service.email_change.superseded``).
    A respelling of the same canonical address (same key) does (c) and (e) only: the
    mailbox is the same, so its exposures, its undeliverable mark and a pending email
    change stay. Accounts must be distinct. Does not
    commit.
    """
    if not changes:
        return AddressChanged(0, 0, 0, 0, 0)
    lock_addresses(session, [change.email_key for change in changes])
    session.execute(
        update(Account),
        [
            {
                "id": change.account_id,
                "email": change.email,
                "email_key": change.email_key,
                "updated_at": now,
            }
            for change in changes
        ],
    )
    moved = [change.account_id for change in changes]
    rekeyed = [c.account_id for c in changes if c.email_key != c.old_email_key]
    for condition in bulk.in_batches(session, Account.id, moved):
        # What a step-up vouched for was the account at its old address (earlier assurance
        # tokens stop working), even for a respelling of the same mailbox.
        session.execute(
            update(Account).where(condition).values(security_epoch=Account.security_epoch + 1),
            execution_options={"synchronize_session": False},
        )
    for condition in bulk.in_batches(session, Account.id, rekeyed):
        # A new mailbox deserves a new chance at delivery; a respelling of a bounced one
        # ("HENRY@example.org" for "henry@example.org") does not. And it is the account's
        # security state: ``email_changed_at`` says when, whichever path moved it.
        session.execute(
            update(Account).where(condition).values(undeliverable_at=None, email_changed_at=now),
            execution_options={"synchronize_session": False},
        )
    drop_pending_enrolments(session, moved)
    untrusted = end_trust(session, moved)
    if cause in ANNOUNCED_CAUSES:
        # The login service did not make this change: it learns the new address (RISC
        # identifier-changed) before what the change does to the account's risk.
        record_identifiers_changed(
            session, [(change.account_id, change.email) for change in changes], now=now
        )
    # A change waiting for the new mailbox speaks of the address the account had: it ends.
    supersede_pending(session, rekeyed, actor=f"cause:{cause.value}", now=now)
    ended = end_old_address_exposures(session, rekeyed, actor=f"cause:{cause.value}", now=now)
    flagged = flag_from_watchlist(session, rekeyed, now=now, reopened=ended.reopened).flagged
    flagged += len(ended.reopened)
    return AddressChanged(
        len(moved), ended.exposures_ended, ended.warnings_cancelled, flagged, untrusted
    )


def upsert_account(
    session: Session, item: AccountInput, *, keys: AddressKeys, now: datetime
) -> Upserted:
    """Create the account or bring it up to date (``apply_accounts`` for one). Does not commit.

    Raises ValidationFailed (InvalidEmail) before writing anything; writes nothing when
    unchanged.
    """
    valid = validate_account(item, keys)
    applied = apply_accounts(session, [valid], now=now, lock=True)
    return Upserted(
        applied.outcomes[valid.external_id],
        get_account(session, valid.external_id),
        applied.flagged,
    )


def upsert_accounts(
    session: Session, items: Sequence[AccountInput], *, keys: AddressKeys, now: datetime
) -> BatchReport:
    """Upsert many accounts; an invalid item is reported and skipped, the rest are applied.

    Does not commit. Items are validated before any write, so a bad item changes nothing;
    a repeated external_id is applied in order (the last one wins): the k-th occurrences
    of every id go in the k-th call of ``apply_accounts``.
    """
    results: list[UpsertResult | None] = []
    rounds: list[list[tuple[int, ValidAccount]]] = []
    seen: dict[str, int] = {}
    for position, item in enumerate(items):
        try:
            valid = validate_account(item, keys)
        except ValidationFailed as exc:
            results.append(UpsertResult(item.external_id, UpsertOutcome.INVALID, error=str(exc)))
            continue
        results.append(None)
        occurrence = seen.get(valid.external_id, 0)
        seen[valid.external_id] = occurrence + 1
        if occurrence == len(rounds):
            rounds.append([])
        rounds[occurrence].append((position, valid))
    for batch in rounds:
        applied = apply_accounts(session, [valid for _, valid in batch], now=now, lock=True)
        for position, valid in batch:
            results[position] = UpsertResult(valid.external_id, applied.outcomes[valid.external_id])
    return BatchReport(tuple(result for result in results if result is not None))


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
