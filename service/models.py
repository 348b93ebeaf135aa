"""The tables. Columns, constraints and relationships only: no I/O, no policy."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base, utcnow

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit identity.
BigId = BigInteger().with_variant(Integer(), "sqlite")

EMAIL_KEY_BYTES = 16


class Account(Base):
    """A mirror of one of the login service's accounts."""

    __tablename__ = "account"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    external_id: Mapped[str] = mapped_column(String(255), unique=True)
    email: Mapped[str] = mapped_column(String(320))
    # Keyed hash of the canonical address: the only key that joins a leak to an account.
    # Not unique: two accounts may share a canonical address.
    email_key: Mapped[bytes] = mapped_column(LargeBinary(EMAIL_KEY_BYTES), index=True)
    locale: Mapped[str | None] = mapped_column(String(35))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # Set by a permanent refusal or a reported bounce; cleared when the address changes.
    undeliverable_at: Mapped[datetime | None]
    # Step-up lockout (service/stepup.py): failed verifications since the last success or
    # lock, the lock's end, and how many locks in a row (each one twice as long).
    failed_verifications: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None]
    lock_count: Mapped[int] = mapped_column(Integer, default=0)


class ApiClient(Base):
    """A caller of the /v1 API, known by the SHA-256 of its bearer key."""

    __tablename__ = "api_client"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    key_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    scopes: Mapped[str] = mapped_column(String(1000))  # space-separated, as in OAuth
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]


class AuditEvent(Base):
    """Who did what to what, written in the transaction of the act itself."""

    __tablename__ = "audit_event"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(100), index=True)
    target: Mapped[str | None] = mapped_column(String(200))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class ExposureKind(StrEnum):
    EMAIL = "email"  # the address leaked
    CREDENTIAL = "credential"  # the address leaked with a password


class ExposureState(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"
    DISMISSED = "dismissed"


class LeakFileState(StrEnum):
    RUNNING = "running"  # started, or killed part-way: the next run resumes it
    COMPLETE = "complete"


class NoticeKind(StrEnum):
    LEAK_WARNING = "leak_warning"
    STEP_UP_CODE = "step_up_code"  # an emailed one-time code; high priority


class ChallengeState(StrEnum):
    PENDING = "pending"
    PASSED = "passed"
    VOID = "void"  # superseded, or out of attempts


class NoticeState(StrEnum):
    PENDING = "pending"  # in the outbox, not yet handed to the queue
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"


def _str_enum(enum: type[StrEnum]) -> Enum:
    return Enum(enum, native_enum=False, length=20, values_callable=lambda e: [m.value for m in e])


class Leak(Base):
    """A third-party leak, made of one or more ingested files. Totals sum its files."""

    __tablename__ = "leak"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    slug: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    source: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    lines: Mapped[int] = mapped_column(BigInteger, default=0)
    valid: Mapped[int] = mapped_column(BigInteger, default=0)
    invalid: Mapped[int] = mapped_column(BigInteger, default=0)
    duplicates: Mapped[int] = mapped_column(BigInteger, default=0)
    matched: Mapped[int] = mapped_column(BigInteger, default=0)
    notices: Mapped[int] = mapped_column(BigInteger, default=0)


class LeakFile(Base):
    """One file of a leak, known by the SHA-256 of its bytes; the unit of resumption.

    ``records_done`` counts the records whose effects are committed: a killed run restarts
    there, so a record is never applied twice and never skipped.
    """

    __tablename__ = "leak_file"
    __table_args__ = (UniqueConstraint("leak_id", "sha256"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    leak_id: Mapped[int] = mapped_column(ForeignKey("leak.id", ondelete="CASCADE"))
    sha256: Mapped[bytes] = mapped_column(LargeBinary(32))
    size: Mapped[int] = mapped_column(BigInteger)
    format: Mapped[str] = mapped_column(String(10))
    compression: Mapped[str | None] = mapped_column(String(10))
    state: Mapped[LeakFileState] = mapped_column(_str_enum(LeakFileState))
    records_done: Mapped[int] = mapped_column(BigInteger, default=0)
    lines: Mapped[int] = mapped_column(BigInteger, default=0)
    valid: Mapped[int] = mapped_column(BigInteger, default=0)
    invalid: Mapped[int] = mapped_column(BigInteger, default=0)
    duplicates: Mapped[int] = mapped_column(BigInteger, default=0)
    matched: Mapped[int] = mapped_column(BigInteger, default=0)
    notices: Mapped[int] = mapped_column(BigInteger, default=0)
    # Line numbers only, never line content: the first few, for the operator's report.
    invalid_lines: Mapped[list[int]] = mapped_column(JSON, default=list)
    runs: Mapped[int] = mapped_column(Integer, default=0)
    seconds: Mapped[float] = mapped_column(Float, default=0.0)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    # Split runs (``ingest --enqueue``): workers open the file by this path, in parts.
    path: Mapped[str | None] = mapped_column(String(1000))
    parts: Mapped[int] = mapped_column(Integer, default=0)


class LeakPart(Base):
    """A byte range of a leak file, ingested by one rq job; its own unit of resumption."""

    __tablename__ = "leak_part"
    __table_args__ = (UniqueConstraint("leak_file_id", "seq"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    leak_file_id: Mapped[int] = mapped_column(ForeignKey("leak_file.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    first_byte: Mapped[int] = mapped_column(BigInteger)
    end_byte: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[LeakFileState] = mapped_column(_str_enum(LeakFileState))
    records_done: Mapped[int] = mapped_column(BigInteger, default=0)
    lines: Mapped[int] = mapped_column(BigInteger, default=0)
    valid: Mapped[int] = mapped_column(BigInteger, default=0)
    invalid: Mapped[int] = mapped_column(BigInteger, default=0)
    duplicates: Mapped[int] = mapped_column(BigInteger, default=0)
    matched: Mapped[int] = mapped_column(BigInteger, default=0)
    notices: Mapped[int] = mapped_column(BigInteger, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    finished_at: Mapped[datetime | None]


class LeakEntry(Base):
    """The watch list: the keyed hash of every address in a leak, never the address.

    Keyed by email_key first, so that an account created later finds its leaks with one
    index probe. The primary key is the table's only index and there is no foreign key:
    this table takes hundreds of millions of rows, and a second index or a per-row
    foreign-key check would slow every ingest for the sake of a rare leak deletion
    (``delete_leak`` removes the entries itself).
    """

    __tablename__ = "leak_entry"
    __table_args__ = ({"sqlite_with_rowid": False},)

    email_key: Mapped[bytes] = mapped_column(LargeBinary(EMAIL_KEY_BYTES), primary_key=True)
    leak_id: Mapped[int] = mapped_column(BigId, primary_key=True)


class Exposure(Base):
    """An account whose address is in a leak."""

    __tablename__ = "exposure"
    __table_args__ = (
        UniqueConstraint("account_id", "leak_id"),
        Index("ix_exposure_account_state", "account_id", "state"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"))
    leak_id: Mapped[int] = mapped_column(ForeignKey("leak.id", ondelete="CASCADE"), index=True)
    kind: Mapped[ExposureKind] = mapped_column(_str_enum(ExposureKind))
    # argon2id of the leaked password (credential leaks, matched accounts only).
    password_hash: Mapped[str | None] = mapped_column(String(200))
    state: Mapped[ExposureState] = mapped_column(_str_enum(ExposureState))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[datetime | None]
    resolved_by: Mapped[str | None] = mapped_column(String(200))
    resolution: Mapped[str | None] = mapped_column(String(500))


class Notice(Base):
    """The outbox: one message to one person. The row, not the queue, is the truth."""

    __tablename__ = "notice"
    __table_args__ = (
        UniqueConstraint("account_id", "kind", "leak_id"),
        Index("ix_notice_state", "state"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"))
    leak_id: Mapped[int | None] = mapped_column(
        ForeignKey("leak.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[NoticeKind] = mapped_column(_str_enum(NoticeKind))
    state: Mapped[NoticeState] = mapped_column(_str_enum(NoticeState))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(500))
    reply_code: Mapped[int | None] = mapped_column(Integer)
    message_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    queued_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    # A transient failure waits until then; the relay skips the row before.
    not_before: Mapped[datetime | None]
    # A worker's claim: past it, a row still "sending" is taken back by the sweep.
    lease_until: Mapped[datetime | None]
    # The emailed code's challenge (kind step_up_code): the code is derived from it, not stored.
    challenge_id: Mapped[str | None] = mapped_column(
        ForeignKey("step_up_challenge.id", ondelete="CASCADE"), index=True
    )


class Campaign(Base):
    """The warnings of one leak, as an operator steers them: paused or going."""

    __tablename__ = "campaign"

    leak_id: Mapped[int] = mapped_column(
        ForeignKey("leak.id", ondelete="CASCADE"), primary_key=True
    )
    paused: Mapped[bool] = mapped_column(default=False)
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    changed_by: Mapped[str | None] = mapped_column(String(200))


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
    """An emailed code in flight. The code is an HMAC of the id, so no copy of it is stored."""

    __tablename__ = "step_up_challenge"
    __table_args__ = (Index("ix_step_up_challenge_account_state", "account_id", "state"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"))
    method: Mapped[str] = mapped_column(String(20))
    state: Mapped[ChallengeState] = mapped_column(_str_enum(ChallengeState))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
