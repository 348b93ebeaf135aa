"""Second factors and emailed-code challenges."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base, BigId, MaskedText, str_enum, utcnow


class ChallengeState(StrEnum):
    PENDING = "pending"
    PASSED = "passed"
    VOID = "void"  # superseded, or out of attempts


class TotpCredential(Base):
    """An account's TOTP secret, encrypted (service/secret_box.py), and its replay guard.

    ``pending_secret`` holds an enrolment until its first code confirms it; the confirmed
    ``secret`` stays in force meanwhile. ``last_counter`` is the last accepted time step:
    a code at or below it is a replay.
    """

    __tablename__ = "totp_credential"

    account_id: Mapped[int] = mapped_column(
        ForeignKey("account.id", ondelete="CASCADE"), primary_key=True
    )
    secret: Mapped[bytes | None] = mapped_column(LargeBinary(128))
    pending_secret: Mapped[bytes | None] = mapped_column(LargeBinary(128))
    last_counter: Mapped[int | None] = mapped_column(BigInteger)
    confirmed_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RecoveryCode(Base):
    """One look-up secret: a public ``lookup`` prefix and the argon2id hash of the rest."""

    __tablename__ = "recovery_code"
    __table_args__ = (Index("ix_recovery_code_account_lookup", "account_id", "lookup"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"))
    lookup: Mapped[str] = mapped_column(String(8))
    code_hash: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    used_at: Mapped[datetime | None]


class StepUpChallenge(Base):
    """An emailed code in flight. The code is an HMAC of the id, so no copy of it is stored.

    A challenge for an id no account has (or whose code may not be mailed) is kept too,
    with no account and no notice: it costs the same to make and answers the same when
    verified, so neither the answer nor its time tells which accounts exist.
    """

    __tablename__ = "step_up_challenge"
    __table_args__ = (
        Index("ix_step_up_challenge_account_state", "account_id", "state"),
        Index("ix_step_up_challenge_expires_at", "expires_at"),  # housekeeping's purge
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"))
    method: Mapped[str] = mapped_column(String(20))
    state: Mapped[ChallengeState] = mapped_column(str_enum(ChallengeState))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


# The budget of guesses: one row per verification method, and one for all methods together.
THROTTLE_ALL_METHODS = "all"


class StepUpThrottle(Base):
    """Failed verifications of one subject, per method and for all methods together.

    ``subject`` is a keyed digest of the external id the login service named, known
    account or not, so an unknown id is throttled exactly like a known one (no answer tells
    them apart). Per method: ``failures`` in a row, the method's ``locked_until`` and how
    many locks in a row (``lock_count``: each lock twice as long, forgotten after a quiet
    day). For all methods (``scope`` "all"): failures in a row across methods, the last
    30 days' only; at the ceiling only support unlocks (``blocked_at``).
    """

    __tablename__ = "step_up_throttle"

    subject: Mapped[bytes] = mapped_column(LargeBinary(16), primary_key=True)
    scope: Mapped[str] = mapped_column(String(20), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_failed_at: Mapped[datetime | None]
    locked_until: Mapped[datetime | None]
    lock_count: Mapped[int] = mapped_column(Integer, default=0)
    blocked_at: Mapped[datetime | None]


class TrustedDevice(Base):
    """A device of an account's owner that passed step-up: it signs in without one until
    ``expires_at`` (LEAKGUARD_TRUSTED_DEVICE_DAYS).

    ``device_key`` is a keyed digest of the login service's opaque device id (never the id
    itself, service/stepup/devices.py). A new leak of the address, a credential exposure or
    an address change deletes every row of the account: trust ends, it is not marked.
    """

    __tablename__ = "trusted_device"
    __table_args__ = (Index("ix_trusted_device_expires_at", "expires_at"),)

    account_id: Mapped[int] = mapped_column(
        ForeignKey("account.id", ondelete="CASCADE"), primary_key=True
    )
    device_key: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    trusted_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]


class SupportHold(Base):
    """Support's "step up required" on one account (``accounts force-step-up``): every
    sign-in steps up (reason ``support_hold``), whether a leak names the account or not,
    until the person passes a step-up, support clears it, or ``expires_at`` (None: until
    cleared). One row per account, the latest hold; the audit trail keeps the earlier ones.
    """

    __tablename__ = "support_hold"

    account_id: Mapped[int] = mapped_column(
        ForeignKey("account.id", ondelete="CASCADE"), primary_key=True
    )
    reason: Mapped[str | None] = mapped_column(MaskedText(500))
    placed_by: Mapped[str] = mapped_column(String(200))
    placed_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    cleared_at: Mapped[datetime | None]
    # Who ended it: an actor such as "staff:3", or the person's step-up ("step_up:<method>").
    cleared_by: Mapped[str | None] = mapped_column(String(200))
    clear_reason: Mapped[str | None] = mapped_column(MaskedText(500))
