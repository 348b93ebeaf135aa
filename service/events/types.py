"""The event types Leakguard emits and the claims of their SETs (RFC 8417 section 2.2).

Each SET names one account by the login service's own id, in the SSF subject format
``opaque`` (Shared Signals Framework 1.0, section 3; RFC 9493 section 3.2.4): the address
never appears, except as the payload of ``identifier-changed``, whose purpose it is. The
SET's ``iss`` and ``aud`` are added when it is signed (``service.events.delivery``).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

RISC = "https://schemas.openid.net/secevent/risc/event-type/"
CAEP = "https://schemas.openid.net/secevent/caep/event-type/"


class EventType(StrEnum):
    """The event type URIs (RISC 1.0 section 2, CAEP 1.0 section 3)."""

    IDENTIFIER_CHANGED = RISC + "identifier-changed"
    CREDENTIAL_COMPROMISE = RISC + "credential-compromise"
    ACCOUNT_DISABLED = RISC + "account-disabled"
    ACCOUNT_ENABLED = RISC + "account-enabled"
    RISK_LEVEL_CHANGE = CAEP + "risk-level-change"
    SESSION_REVOKED = CAEP + "session-revoked"


class RiskLevel(StrEnum):
    """CAEP risk levels: HIGH for a leaked password, MEDIUM for a leaked address alone."""

    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"


# Why a risk level went down (``risk_reason``); a rise names its leak ("leak:<slug>").
class LoweredBecause(StrEnum):
    ADDRESS_CHANGED = "address_changed"
    SUPPORT_RESOLVED = "support_resolved"
    DISMISSED = "dismissed"
    EXPIRED = "expired"
    RETRACTED = "retracted"


def leak_reason(slug: str) -> str:
    """The ``risk_reason`` of a rise caused by the leak ``slug``."""
    return f"leak:{slug}"


def subject(external_id: str) -> dict[str, str]:
    """The ``sub_id`` of an account: SSF format ``opaque`` with the login service's id."""
    return {"format": "opaque", "id": external_id}


def set_claims(
    external_id: str, event_type: EventType, payload: dict[str, Any], *, issued: datetime
) -> dict[str, Any]:
    """The claims of one SET: ``jti`` (random, 128 bits), ``iat`` (seconds), ``sub_id``,
    ``events`` with exactly one event (SSF 1.0 section 4)."""
    return {
        "jti": uuid.uuid4().hex,
        "iat": int(issued.timestamp()),
        "sub_id": subject(external_id),
        "events": {event_type.value: payload},
    }


def _timestamp(moment: datetime) -> int:
    return int(moment.timestamp())


def risk_level_change(
    current: RiskLevel, previous: RiskLevel | None, reason: str, *, at: datetime
) -> dict[str, Any]:
    """CAEP risk-level-change (CAEP 1.0 section 3.8): ``principal`` USER, the levels,
    ``risk_reason``, ``event_timestamp`` (seconds)."""
    payload: dict[str, Any] = {
        "principal": "USER",
        "current_level": current.value,
        "risk_reason": reason,
        "initiating_entity": "system",
        "event_timestamp": _timestamp(at),
    }
    if previous is not None:
        payload["previous_level"] = previous.value
    return payload


def credential_compromise(leak_slug: str, *, at: datetime) -> dict[str, Any]:
    """RISC credential-compromise: the password leaked with the address; reset it."""
    return {
        "credential_type": "password",
        "event_timestamp": _timestamp(at),
        "reason_admin": {"en": f"the password was in the leak {leak_slug}"},
    }


def session_revoked(reason: str, *, at: datetime) -> dict[str, Any]:
    """CAEP session-revoked (CAEP 1.0 section 3.1): end the account's sessions."""
    return {
        "initiating_entity": "policy",
        "reason_admin": {"en": reason},
        "event_timestamp": _timestamp(at),
    }


def identifier_changed(new_email: str, *, at: datetime) -> dict[str, Any]:
    """RISC identifier-changed: ``new-value`` is the account's address from now on."""
    return {"new-value": new_email, "event_timestamp": _timestamp(at)}


def account_disabled(*, at: datetime) -> dict[str, Any]:
    """RISC account-disabled: step-up is locked; ``hijacking`` since codes were guessed."""
    return {"reason": "hijacking", "event_timestamp": _timestamp(at)}


def account_enabled(*, at: datetime) -> dict[str, Any]:
    """RISC account-enabled: the step-up lock ended (its time, or support's unlock)."""
    return {"event_timestamp": _timestamp(at)}
