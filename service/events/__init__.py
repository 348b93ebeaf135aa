"""Security events to the login service: OpenID Shared Signals (SSF 1.0) CAEP and RISC
events as Security Event Tokens (RFC 8417), pushed (RFC 8935) or polled (RFC 8936).

``emit``: record events in the transaction of their cause; ``keys``: the signing key and
the JWKS; ``outbox``: the delivery state machine; ``poll``: the poll endpoint's logic;
``discovery``: the transmitter's configuration metadata.
"""

from service.events.emit import (
    EventPolicy,
    Flags,
    policy_of,
    record_flagged,
    record_flags,
    record_identifier_changed,
    record_identifiers_changed,
    record_risk_level,
    record_risk_lowered,
    record_step_up_locked,
    record_step_up_unlocked,
    risk_levels,
)
from service.events.types import EventType, LoweredBecause, RiskLevel

__all__ = [
    "EventPolicy",
    "EventType",
    "Flags",
    "LoweredBecause",
    "RiskLevel",
    "policy_of",
    "record_flagged",
    "record_flags",
    "record_identifier_changed",
    "record_identifiers_changed",
    "record_risk_level",
    "record_risk_lowered",
    "record_step_up_locked",
    "record_step_up_unlocked",
    "risk_levels",
]
