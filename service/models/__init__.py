"""The tables, one module per capability. Columns, constraints and relationships only:
no I/O, no policy. Importing this package registers every table on ``Base.metadata``.
"""

from service.addresses.keys import EMAIL_KEY_BYTES
from service.models.accounts import Account
from service.models.audit import AuditEvent
from service.models.clients import ApiClient
from service.models.email_change import (
    OPEN_STATES,
    ChangePriority,
    ChangeState,
    EmailChangeHold,
    EmailChangeRequest,
)
from service.models.events import EventReceiver, EventState, SecurityEvent
from service.models.keying import KeyFingerprint
from service.models.leaks import (
    Exposure,
    ExposureEndCause,
    ExposureKind,
    ExposureState,
    IngestCounters,
    Leak,
    LeakEntry,
    LeakFile,
    LeakFileState,
    LeakPart,
)
from service.models.notices import Campaign, Notice, NoticeKind, NoticeState
from service.models.staff import StaffRole, StaffSession, StaffUser
from service.models.stepup import (
    THROTTLE_ALL_METHODS,
    ChallengeState,
    RecoveryCode,
    StepUpChallenge,
    StepUpThrottle,
    SupportHold,
    TotpCredential,
    TrustedDevice,
)

__all__ = [
    "EMAIL_KEY_BYTES",
    "OPEN_STATES",
    "THROTTLE_ALL_METHODS",
    "Account",
    "ApiClient",
    "AuditEvent",
    "Campaign",
    "ChallengeState",
    "ChangePriority",
    "ChangeState",
    "EmailChangeHold",
    "EmailChangeRequest",
    "EventReceiver",
    "EventState",
    "Exposure",
    "ExposureEndCause",
    "ExposureKind",
    "ExposureState",
    "IngestCounters",
    "KeyFingerprint",
    "Leak",
    "LeakEntry",
    "LeakFile",
    "LeakFileState",
    "LeakPart",
    "Notice",
    "NoticeKind",
    "NoticeState",
    "RecoveryCode",
    "SecurityEvent",
    "StaffRole",
    "StaffSession",
    "StaffUser",
    "StepUpChallenge",
    "StepUpThrottle",
    "SupportHold",
    "TotpCredential",
    "TrustedDevice",
]
