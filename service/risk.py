"""The risk decision the login service asks for on every sign-in.

``load_facts`` is one indexed read (the account and its open exposures, joined);
``decide`` is a pure function of those facts. Only a decision other than ``allow`` costs
more: an argon2 check of a submitted password against a leaked one, a read of the step-up
locks, and an audit row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from sqlalchemy import Connection, and_, bindparam, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import BindParameter

from service.addresses import mask_email
from service.audit import record_event
from service.db import Database, bulk
from service.email_change.holds import held
from service.leaks.passwords import is_leaked_password
from service.models import (
    Account,
    Exposure,
    ExposureKind,
    ExposureState,
    Leak,
)
from service.stepup.assurance import Assurance, AssuranceTokenInvalid
from service.stepup.devices import is_trusted
from service.stepup.hold import on_hold
from service.stepup.services import (
    Method,
    StepUp,
    available_methods,
    mailbox_undeliverable,
    recovery_codes_left,
    totp_enrolled,
)
from service.stepup.throttle import ThrottleState
from service.stepup.throttle import state as throttle_state


class Decision(StrEnum):
    ALLOW = "allow"
    STEP_UP = "step_up"
    DENY = "deny"


class Reason(StrEnum):
    """The stable reason codes of a decision; the OpenAPI document lists them."""

    UNKNOWN_ACCOUNT = "unknown_account"  # allow: Leakguard does not know this account
    EMAIL_EXPOSED = "email_exposed"  # step_up: the address is in an open leak
    CREDENTIAL_EXPOSED = "credential_exposed"  # step_up: it leaked with a password
    STEP_UP_PASSED = "step_up_passed"  # allow: a valid assurance token came along
    TRUSTED_DEVICE = "trusted_device"  # allow: a step-up was passed on this device lately
    LEAKED_PASSWORD = "leaked_password"  # noqa: S105  (deny: the password is the leaked one)
    LOCKED = "locked"  # deny: every usable method is locked, or support must unlock
    NO_USABLE_METHOD = "no_usable_method"  # deny: nothing left to step up with: support
    # step_up: the old mailbox reverted an email change; until support clears the hold
    EMAIL_CHANGE_REVERTED = "email_change_reverted"
    # step_up: support forced a step-up; until the person passes one (or support clears it)
    SUPPORT_HOLD = "support_hold"


REASON_DESCRIPTIONS = {
    Reason.UNKNOWN_ACCOUNT: "allow: Leakguard has no account with this id",
    Reason.EMAIL_EXPOSED: "step_up: the account's address is in a leak",
    Reason.CREDENTIAL_EXPOSED: "step_up: the address leaked together with a password",
    Reason.STEP_UP_PASSED: "allow: the assurance token shows a step-up within its lifetime",
    Reason.TRUSTED_DEVICE: (
        "allow: a step-up was passed on this device (context.device_id) within "
        "LEAKGUARD_TRUSTED_DEVICE_DAYS, and since then the address has not leaked again, "
        "leaked with a password, nor changed"
    ),
    Reason.LEAKED_PASSWORD: "deny: the submitted password is the one that leaked; reset it",
    Reason.LOCKED: (
        "deny: every method the account could step up with is locked after repeated "
        "failures (retry_after says when one opens), or, without retry_after, blocked "
        "until support unlocks it"
    ),
    Reason.NO_USABLE_METHOD: (
        "deny: the account needs a step-up but has no method it can use (no authenticator, "
        "no recovery codes, and a mailbox that is undeliverable or whose password leaked): "
        "send the person to support"
    ),
    Reason.EMAIL_CHANGE_REVERTED: (
        "step_up: the account's previous address undid an email change, so someone else may "
        "have had the account; every sign-in steps up, a trusted device included, until "
        "support clears the hold (leakguard email-change clear-hold)"
    ),
    Reason.SUPPORT_HOLD: (
        "step_up: support forced a step-up (leakguard accounts force-step-up, or the staff "
        "page), whether a leak names the account or not; every sign-in steps up, a trusted "
        "device included, until the person passes a step-up, support clears the hold "
        "(leakguard accounts clear-hold), or the hold's time ends"
    ),
}


@dataclass(frozen=True, slots=True)
class OpenExposure:
    leak: str
    kind: ExposureKind
    since: datetime
    password_hash: str | None  # never leaves this module


@dataclass(frozen=True, slots=True)
class AccountFacts:
    account_id: int
    email: str
    security_epoch: int
    exposures: tuple[OpenExposure, ...]
    created_at: datetime | None = None
    has_totp: bool = False
    has_recovery_codes: bool = False
    undeliverable: bool = False
    held: bool = False  # a reverted email change's hold, until support clears it
    support_hold: bool = False  # support's forced step-up, until passed or cleared

    @property
    def on_hold(self) -> bool:
        """Whether a hold asks for a step-up whatever the exposures say."""
        return self.held or self.support_hold

    @property
    def methods(self) -> list[Method]:
        """What the account can step up with, locks aside. A code is not mailed to an
        undeliverable address, nor to a mailbox whose password leaked with its address."""
        credential_leaked = any(e.kind is ExposureKind.CREDENTIAL for e in self.exposures)
        return available_methods(
            totp_enrolled=self.has_totp,
            codes_left=self.has_recovery_codes,
            mailbox_usable=not self.undeliverable and not credential_leaked,
        )


@dataclass(frozen=True, slots=True)
class Verdict:
    decision: Decision
    reasons: tuple[Reason, ...]
    exposures: tuple[OpenExposure, ...] = field(default=())
    methods: tuple[Method, ...] = ()  # open now (step_up only)
    retry_after: int | None = None  # seconds until a locked method opens again


# Built once, and from the tables rather than the mapped classes: a Core statement skips the
# ORM's per-call statement building, compile state and row loading (bench/risk.py --profile).
_ACCOUNT, _EXPOSURE, _LEAK = Account.__table__, Exposure.__table__, Leak.__table__
_NOW: BindParameter[datetime] = bindparam("now", type_=_ACCOUNT.c.created_at.type)
_FACTS = (
    select(
        _ACCOUNT.c.id,
        _ACCOUNT.c.email,
        _ACCOUNT.c.security_epoch,
        _ACCOUNT.c.created_at.label("account_created_at"),
        mailbox_undeliverable(_ACCOUNT.c.email_key).label("undeliverable"),
        _LEAK.c.slug,
        _EXPOSURE.c.kind,
        _EXPOSURE.c.created_at,
        _EXPOSURE.c.password_hash,
        # The step-up methods, so that a step_up answer needs no second read for them: two
        # probes of small primary-key and account indexes, also on the allow path.
        totp_enrolled(_ACCOUNT.c.id).label("has_totp"),
        recovery_codes_left(_ACCOUNT.c.id).label("has_codes"),
        held(_ACCOUNT.c.id).label("held"),
        on_hold(_ACCOUNT.c.id, _NOW).label("support_hold"),
    )
    .select_from(_ACCOUNT)
    .outerjoin(
        _EXPOSURE,
        and_(_EXPOSURE.c.account_id == _ACCOUNT.c.id, _EXPOSURE.c.state == ExposureState.OPEN),
    )
    .outerjoin(_LEAK, _LEAK.c.id == _EXPOSURE.c.leak_id)
    .where(_ACCOUNT.c.external_id == bindparam("external_id"))
    .order_by(_EXPOSURE.c.created_at)
)


def load_facts(
    connection: Connection | Session, external_id: str, *, now: datetime
) -> AccountFacts | None:
    """The account and its open exposures, as they stand at ``now``, in one query (account
    index, exposure index, and primary-key probes of the factor and hold tables)."""
    rows = connection.execute(_FACTS, {"external_id": external_id, "now": now}).all()
    if not rows:
        return None
    first = rows[0]
    exposures = tuple(
        OpenExposure(row.slug, row.kind, row.created_at, row.password_hash)
        for row in rows
        if row.slug is not None
    )
    return AccountFacts(
        first.id,
        first.email,
        first.security_epoch,
        exposures,
        created_at=first.account_created_at,
        has_totp=bool(first.has_totp),
        has_recovery_codes=bool(first.has_codes),
        undeliverable=bool(first.undeliverable),
        held=bool(first.held),
        support_hold=bool(first.support_hold),
    )


def decide(
    facts: AccountFacts | None,
    *,
    password: str | None,
    assurance: Assurance | None,
    throttle: ThrottleState | None,
    now: datetime,
    trusted_device: bool = False,
) -> Verdict:
    """Decide from the facts. Precedence: leaked password, assurance, trusted device,
    exposure (or a hold: of a reverted email change, or support's) and locks. A trusted
    device never lifts a hold: after a revert, the device may be the one that took the
    account; support's hold distrusts whatever vouched for the account before.

    A lock on one method never denies the sign-in while another method is open: the owner
    steps up with that one (``retry_after`` says when the locked one opens). ``throttle``
    is needed only for an account with an open exposure or a hold. Raises
    AssuranceTokenInvalid for a token of another incarnation of the account or of an
    earlier security epoch.
    """
    if facts is None:
        return Verdict(Decision.ALLOW, (Reason.UNKNOWN_ACCOUNT,))
    if assurance is not None and not assurance.holds_for(
        account_id=facts.account_id, epoch=facts.security_epoch
    ):
        raise AssuranceTokenInvalid()
    exposures = facts.exposures
    if not exposures and not facts.on_hold:
        return Verdict(Decision.ALLOW, (), exposures)
    if password is not None and any(
        exposure.password_hash is not None and is_leaked_password(exposure.password_hash, password)
        for exposure in exposures
    ):
        return Verdict(Decision.DENY, (Reason.LEAKED_PASSWORD,), exposures)
    if assurance is not None:
        return Verdict(Decision.ALLOW, (Reason.STEP_UP_PASSED,), exposures)
    if trusted_device and not facts.on_hold:
        return Verdict(Decision.ALLOW, (Reason.TRUSTED_DEVICE,), exposures)
    locks = throttle or ThrottleState({}, blocked=False)
    if locks.blocked:
        return Verdict(Decision.DENY, (Reason.LOCKED,), exposures)
    usable = facts.methods
    if not usable:
        return Verdict(Decision.DENY, (Reason.NO_USABLE_METHOD,), exposures)
    ends_by_method = {method: locks.locked_until(method.value) for method in usable}
    open_methods = tuple(method for method in usable if ends_by_method[method] is None)
    ends = [end for end in ends_by_method.values() if end is not None]
    retry_after = _seconds_until(min(ends), now) if ends else None
    if not open_methods:
        return Verdict(Decision.DENY, (Reason.LOCKED,), exposures, retry_after=retry_after)
    reasons = [Reason.EMAIL_EXPOSED] if exposures else []
    if any(exposure.kind is ExposureKind.CREDENTIAL for exposure in exposures):
        reasons.append(Reason.CREDENTIAL_EXPOSED)
    if facts.held:
        reasons.append(Reason.EMAIL_CHANGE_REVERTED)
    if facts.support_hold:
        reasons.append(Reason.SUPPORT_HOLD)
    return Verdict(Decision.STEP_UP, tuple(reasons), exposures, open_methods, retry_after)


def _seconds_until(moment: datetime, now: datetime) -> int:
    return max(1, math.ceil((moment - now).total_seconds()))


def assess(
    db: Database,
    step_up: StepUp,
    external_id: str,
    *,
    password: str | None,
    assurance_token: str | None,
    actor: str,
    context: dict[str, str] | None,
    now: datetime,
    device_id: str | None = None,
) -> Verdict:
    """Answer a risk check. An account in no open leak costs one read and no write; one a
    leak names has its step-up locks read too (and, with ``device_id``, whether that device
    is trusted: one primary-key probe), and any decision but ``allow`` is audited.
    ``context`` goes into the audit row as given: it must not hold the device id."""
    assurance = None
    if assurance_token is not None:
        assurance = step_up.signer.verify(assurance_token, external_id=external_id, now=now)
    # A bare connection in autocommit, not an ORM session in a transaction: this read runs
    # on every sign-in, and one statement needs no BEGIN and no ROLLBACK around it.
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        facts = load_facts(connection, external_id, now=now)
        # The locks matter only to an account a leak names: every other sign-in stays one
        # read; and the policy (with its argon2 check of a leaked password) runs once.
        locks = None
        if facts is not None and (facts.exposures or facts.on_hold):
            subject = step_up.subject(external_id)
            locks = throttle_state(connection, subject, now=now, since=facts.created_at)
        trusted = (
            facts is not None
            and bool(facts.exposures)
            and device_id is not None
            and is_trusted(
                connection,
                facts.account_id,
                step_up.device_key(facts.account_id, device_id),
                now=now,
            )
        )
        verdict = decide(
            facts,
            password=password,
            assurance=assurance,
            throttle=locks,
            now=now,
            trusted_device=trusted,
        )
        if verdict.decision is Decision.ALLOW or facts is None:
            return verdict
        # Any other decision adds its audit row: on the same connection, in a transaction.
        connection.commit()  # ends the read's (database-side empty) transaction object
        connection.execution_options(isolation_level=db.engine.dialect.default_isolation_level)
        with connection.begin():
            # The row need not wait for the WAL flush: the login service, waiting on this
            # answer, saves the flush every time; a crash loses at most the last decisions.
            bulk.relax_commit(connection)
            record_event(
                connection,
                actor=actor,
                action=f"risk.{verdict.decision.value}",
                target=f"account:{external_id}",
                detail={
                    "email": mask_email(facts.email),
                    "reasons": [reason.value for reason in verdict.reasons],
                    "leaks": [exposure.leak for exposure in verdict.exposures],
                    **(context or {}),
                },
                now=now,
            )
    return verdict
