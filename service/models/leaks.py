"""Leaks, their files and parts, the watch list, and the exposures they cause."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import (
    JSON,
    BigInteger,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from service.addresses.keys import EMAIL_KEY_BYTES
from service.db import Base, BigId, MaskedJSON, MaskedText, str_enum, utcnow


class ExposureKind(StrEnum):
    EMAIL = "email"  # the address leaked
    CREDENTIAL = "credential"  # the address leaked with a password


class ExposureState(StrEnum):
    """Where an exposure stands; only ``open`` counts in the risk check."""

    OPEN = "open"
    RESOLVED = "resolved"  # the address changed, or support resolved it with a reason
    DISMISSED = "dismissed"  # support: a false match, with a reason
    EXPIRED = "expired"  # older than LEAKGUARD_EXPOSURE_TTL_DAYS (leakguard housekeeping)
    RETRACTED = "retracted"  # its leak was retracted: ingested by mistake (leaks retract)


class ExposureEndCause(StrEnum):
    """Why an exposure stopped being open (``Exposure.end_cause``); None while open."""

    ADDRESS_CHANGED = "address_changed"  # resolved: the account moved to another address
    SUPPORT_RESOLVED = "support_resolved"  # resolved: support, with a reason
    DISMISSED = "dismissed"  # dismissed: support found it a false match
    EXPIRED = "expired"  # expired: past its time to live
    RETRACTED = "retracted"  # retracted: its leak was ingested by mistake


class LeakFileState(StrEnum):
    RUNNING = "running"  # started, or killed part-way: the next run resumes it
    COMPLETE = "complete"


class IngestCounters:
    """The six totals of an ingest, kept alike on a leak, each of its files and parts.

    A leak's totals are the sum of its files', a split file's the sum of its parts'.
    ``matched`` and ``notices`` count accounts newly flagged and warnings newly queued.
    """

    lines: Mapped[int] = mapped_column(BigInteger, default=0)
    valid: Mapped[int] = mapped_column(BigInteger, default=0)
    invalid: Mapped[int] = mapped_column(BigInteger, default=0)
    duplicates: Mapped[int] = mapped_column(BigInteger, default=0)
    matched: Mapped[int] = mapped_column(BigInteger, default=0)
    notices: Mapped[int] = mapped_column(BigInteger, default=0)


class Leak(IngestCounters, Base):
    """A third-party leak, made of one or more ingested files. Totals sum its files."""

    __tablename__ = "leak"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    slug: Mapped[str] = mapped_column(String(100), unique=True)
    # What the notices call the leak: ``name`` in every language without its own entry in
    # ``names`` ({"de": ...}); with neither, they use neutral wording, never the slug.
    name: Mapped[str | None] = mapped_column(MaskedText(200))
    names: Mapped[dict[str, str] | None] = mapped_column(MaskedJSON)
    source: Mapped[str | None] = mapped_column(MaskedText(500))
    # The leak's own date (when it appeared), as the operator knows it; not the ingest's.
    observed_at: Mapped[date | None] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Retracted (service/leaks/retract.py): ingested by mistake, its effects undone.
    retracted_at: Mapped[datetime | None]
    retracted_by: Mapped[str | None] = mapped_column(String(200))
    retraction_reason: Mapped[str | None] = mapped_column(MaskedText(500))


class LeakFile(IngestCounters, Base):
    """One file of a leak, known by the SHA-256 of its bytes; the unit of resumption.

    ``records_done`` counts the records whose effects are committed: a killed run restarts
    there, so a record is never applied twice and never skipped.
    """

    __tablename__ = "leak_file"
    __table_args__ = (UniqueConstraint("leak_id", "sha256", "read_as"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    leak_id: Mapped[int] = mapped_column(ForeignKey("leak.id", ondelete="CASCADE"))
    sha256: Mapped[bytes] = mapped_column(LargeBinary(32), index=True)
    # SHA-256 of the decompressed content (the bytes' own for a plain file): a gzip, bz2 or
    # xz copy of a file another leak has is refused like the file itself. None for a
    # compressed file recorded before revision 0018, known by its bytes alone.
    content_sha256: Mapped[bytes | None] = mapped_column(LargeBinary(32), index=True)
    # Hex SHA-256 of the content's first 64 KiB << k bytes (jobs.reader.stream.FileDigests):
    # a copy cut short or extended shares them up to its length, and is refused like the
    # file. None for a file recorded before revision 0018.
    content_prefixes: Mapped[list[str] | None] = mapped_column(JSON)
    # The same two of the content as text: decoded to UTF-8, without a BOM, every line end
    # LF (jobs.reader.stream.FileDigests), so a copy saved with CRLF, a BOM or as UTF-16 is
    # refused like the file. None where the text is the content byte for byte (a UTF-8 file
    # with LF line ends, no BOM), and for a file recorded before revision 0019: the
    # content's fingerprints stand for the text's.
    text_sha256: Mapped[bytes | None] = mapped_column(LargeBinary(32), index=True)
    text_prefixes: Mapped[list[str] | None] = mapped_column(JSON)
    # How the bytes were read (the format, and a CSV's columns): part of the file's
    # identity, so a file read under a wrong format can be ingested again under another.
    read_as: Mapped[str] = mapped_column(String(100))
    name: Mapped[str | None] = mapped_column(MaskedText(255))  # the file's basename
    ran_by: Mapped[str | None] = mapped_column(String(200))  # the operator who ran it
    size: Mapped[int] = mapped_column(BigInteger)
    format: Mapped[str] = mapped_column(String(10))
    compression: Mapped[str | None] = mapped_column(String(10))
    state: Mapped[LeakFileState] = mapped_column(str_enum(LeakFileState))
    records_done: Mapped[int] = mapped_column(BigInteger, default=0)
    # Line numbers only, never line content: the first few, for the operator's report.
    invalid_lines: Mapped[list[int]] = mapped_column(JSON, default=list)
    # Lines over the reader's cap (64 KiB) in a line format: each is one of the invalid
    # records, counted here with its reason, committed with its chunk like the counters.
    long_lines: Mapped[int] = mapped_column(BigInteger, default=0)
    # A compressed file cut short: how many of its bytes were read when its stream ended
    # without its end marker. Every record before the cut is ingested; the rest of the leak
    # is not in this file.
    truncated_after_bytes: Mapped[int | None] = mapped_column(BigInteger)
    runs: Mapped[int] = mapped_column(Integer, default=0)
    seconds: Mapped[float] = mapped_column(Float, default=0.0)  # all runs together
    # Seconds of each run, an interrupted one included (kept up to date at every commit).
    run_seconds: Mapped[list[float] | None] = mapped_column(JSON, default=list)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    # PostgreSQL: the oldest transaction the file's opening could not see (64-bit xid). An
    # account row written before it was in every run's account filter, so the file's end
    # need not look at it again (``service.db.bulk.late_accounts``). None on SQLite.
    accounts_xmin: Mapped[int | None] = mapped_column(BigInteger)
    finished_at: Mapped[datetime | None]
    # Split runs (``ingest --enqueue``): workers open the file by this path, in parts.
    path: Mapped[str | None] = mapped_column(String(1000))
    parts: Mapped[int] = mapped_column(Integer, default=0)


class LeakPart(IngestCounters, Base):
    """A byte range of a leak file, ingested by one rq job; its own unit of resumption."""

    __tablename__ = "leak_part"
    __table_args__ = (UniqueConstraint("leak_file_id", "seq"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    leak_file_id: Mapped[int] = mapped_column(ForeignKey("leak_file.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    first_byte: Mapped[int] = mapped_column(BigInteger)
    end_byte: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[LeakFileState] = mapped_column(str_enum(LeakFileState))
    records_done: Mapped[int] = mapped_column(BigInteger, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    finished_at: Mapped[datetime | None]


class LeakEntry(Base):
    """The watch list: the keyed hash of every address in a leak, never the address.

    Keyed by email_key first, so that an account created later finds its leaks with one
    index probe. The primary key is the table's only index and there is no foreign key:
    this table takes hundreds of millions of rows, and a second index or a per-row
    foreign-key check would slow every ingest for the sake of a rare leak deletion
    (``service.leaks.progress.forget_file`` deletes a leak only while it has none).
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
        # Housekeeping's expiry finds the oldest open ones without reading the ended ones
        # (a cron run with nothing to do is one short index probe).
        Index(
            "ix_exposure_open_created_at",
            "created_at",
            postgresql_where=text("state = 'open'"),
            sqlite_where=text("state = 'open'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"))
    # No foreign key to the leak, as in leak_entry: a row's check is a trigger a row on
    # PostgreSQL (a query each), a fifth of the ingest's cost of an exposure and its
    # warning (README "The matched accounts' rows"), and it would only ever check a leak
    # the writer has just read. A leak is deleted only while it has no watch-list entry,
    # exposure or warning (``service.leaks.progress.forget_file``, which removes any).
    leak_id: Mapped[int] = mapped_column(BigId, index=True)
    kind: Mapped[ExposureKind] = mapped_column(str_enum(ExposureKind))
    # argon2id of the leaked password (credential leaks, matched accounts only).
    password_hash: Mapped[str | None] = mapped_column(String(200))
    state: Mapped[ExposureState] = mapped_column(str_enum(ExposureState))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # When, by whom, why and for what cause it stopped being open (all None while open).
    resolved_at: Mapped[datetime | None]
    resolved_by: Mapped[str | None] = mapped_column(String(200))
    resolution: Mapped[str | None] = mapped_column(MaskedText(500))
    end_cause: Mapped[ExposureEndCause | None] = mapped_column(str_enum(ExposureEndCause))
