"""The risk decision the login service asks for on every sign-in.

``load_facts`` is one indexed read (the account and its open exposures, joined);
``decide`` is a pure function of those facts. Only a decision other than ``allow`` costs
more: the methods the account can use, an argon2 check of a submitted password against a
leaked one, and an audit row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from sqlalchemy import Connection, and_, bindparam, select
from sqlalchemy.orm import Session

from service.addresses import mask_email
from service.audit import record_event
from service.db import Database, bulk
from service.leaks.passwords import is_leaked_password
from service.models import (
    Account,
    Exposure,
    ExposureKind,
    ExposureState,
    Leak,
)
from service.stepup.assurance import Assurance, AssuranceTokenInvalid
from service.stepup.services import (
    Method,
    StepUp,
    available_methods,
    recovery_codes_left,
    totp_enrolled,
)


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
    LEAKED_PASSWORD = "leaked_password"  # noqa: S105  (deny: the password is the leaked one)
    LOCKED = "locked"  # deny: too many failed verifications, until the lock ends


REASON_DESCRIPTIONS = {
    Reason.UNKNOWN_ACCOUNT: "allow: Leakguard has no account with this id",
    Reason.EMAIL_EXPOSED: "step_up: the account's address is in a leak",
    Reason.CREDENTIAL_EXPOSED: "step_up: the address leaked together with a password",
    Reason.STEP_UP_PASSED: "allow: the assurance token shows a step-up within its lifetime",
    Reason.LEAKED_PASSWORD: "deny: the submitted password is the one that leaked; reset it",
    Reason.LOCKED: "deny: step-up is locked after repeated failures, until it ends",
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
    locked_until: datetime | None
    exposures: tuple[OpenExposure, ...]
    has_totp: bool = False
    has_recovery_codes: bool = False


@dataclass(frozen=True, slots=True)
class Verdict:
    decision: Decision
    reasons: tuple[Reason, ...]
    exposures: tuple[OpenExposure, ...] = field(default=())


# Built once, and from the tables rather than the mapped classes: a Core statement skips the
# ORM's per-call statement building, compile state and row loading (bench/risk.py --profile).
_ACCOUNT, _EXPOSURE, _LEAK = Account.__table__, Exposure.__table__, Leak.__table__
_FACTS = (
    select(
        _ACCOUNT.c.id,
        _ACCOUNT.c.email,
        _ACCOUNT.c.locked_until,
        _LEAK.c.slug,
        _EXPOSURE.c.kind,
        _EXPOSURE.c.created_at,
        _EXPOSURE.c.password_hash,
        # The step-up methods, so that a step_up answer needs no second read: two probes of
        # small primary-key and account indexes, also on the allow path.
        totp_enrolled(_ACCOUNT.c.id).label("has_totp"),
        recovery_codes_left(_ACCOUNT.c.id).label("has_codes"),
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


def load_facts(connection: Connection | Session, external_id: str) -> AccountFacts | None:
    """The account and its open exposures in one query (account index, exposure index)."""
    rows = connection.execute(_FACTS, {"external_id": external_id}).all()
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
        first.locked_until,
        exposures,
        has_totp=bool(first.has_totp),
        has_recovery_codes=bool(first.has_codes),
    )


def decide(
    facts: AccountFacts | None,
    *,
    password: str | None,
    assurance: Assurance | None,
    now: datetime,
) -> Verdict:
    """Decide from the facts. Precedence: locked, leaked password, assurance, exposure.

    Raises AssuranceTokenInvalid for a token that belongs to another incarnation of the
    account (deleted and created again under the same external id).
    """
    if facts is None:
        return Verdict(Decision.ALLOW, (Reason.UNKNOWN_ACCOUNT,))
    if assurance is not None and assurance.account_id != facts.account_id:
        raise AssuranceTokenInvalid()
    exposures = facts.exposures
    if facts.locked_until is not None and facts.locked_until > now:
        return Verdict(Decision.DENY, (Reason.LOCKED,), exposures)
    if not exposures:
        return Verdict(Decision.ALLOW, (), exposures)
    if password is not None and any(
        exposure.password_hash is not None and is_leaked_password(exposure.password_hash, password)
        for exposure in exposures
    ):
        return Verdict(Decision.DENY, (Reason.LEAKED_PASSWORD,), exposures)
    if assurance is not None:
        return Verdict(Decision.ALLOW, (Reason.STEP_UP_PASSED,), exposures)
    kinds = {exposure.kind for exposure in exposures}
    reasons = [Reason.EMAIL_EXPOSED]
    if ExposureKind.CREDENTIAL in kinds:
        reasons.append(Reason.CREDENTIAL_EXPOSED)
    return Verdict(Decision.STEP_UP, tuple(reasons), exposures)


@dataclass(frozen=True, slots=True)
class Assessment:
    verdict: Verdict
    methods: tuple[Method, ...]


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
) -> Assessment:
    """Answer a risk check. ``allow`` reads once and writes nothing; any other decision
    is audited, with the methods the person can step up with."""
    assurance = None
    if assurance_token is not None:
        assurance = step_up.signer.verify(assurance_token, external_id=external_id, now=now)
    # A bare connection in autocommit, not an ORM session in a transaction: this read runs
    # on every sign-in, and one statement needs no BEGIN and no ROLLBACK around it.
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        facts = load_facts(connection, external_id)
        verdict = decide(facts, password=password, assurance=assurance, now=now)
        if verdict.decision is Decision.ALLOW or facts is None:
            return Assessment(verdict, ())
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
    methods = (
        tuple(available_methods(totp_enrolled=facts.has_totp, codes_left=facts.has_recovery_codes))
        if verdict.decision is Decision.STEP_UP
        else ()
    )
    return Assessment(verdict, methods)
