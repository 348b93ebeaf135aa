"""leaks, watch list, exposures, notice outbox

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UTC = sa.DateTime(timezone=True)


def _enum(name: str, *values: str) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, length=20)


def _counters() -> list[sa.Column[int]]:
    return [
        sa.Column(name, sa.BigInteger(), nullable=False)
        for name in ("lines", "valid", "invalid", "duplicates", "matched", "notices")
    ]


def upgrade() -> None:
    op.create_table(
        "leak",
        sa.Column("id", BigId, nullable=False),
        sa.Column("slug", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("source", sa.String(length=500), nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        *_counters(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_leak")),
        sa.UniqueConstraint("slug", name=op.f("uq_leak_slug")),
    )
    op.create_table(
        "leak_file",
        sa.Column("id", BigId, nullable=False),
        sa.Column("leak_id", BigId, nullable=False),
        sa.Column("sha256", sa.LargeBinary(length=32), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("format", sa.String(length=10), nullable=False),
        sa.Column("compression", sa.String(length=10), nullable=True),
        sa.Column("state", _enum("leakfilestate", "running", "complete"), nullable=False),
        sa.Column("records_done", sa.BigInteger(), nullable=False),
        *_counters(),
        sa.Column("invalid_lines", sa.JSON(), nullable=False),
        sa.Column("runs", sa.Integer(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("started_at", UTC, nullable=False),
        sa.Column("finished_at", UTC, nullable=True),
        sa.ForeignKeyConstraint(
            ["leak_id"], ["leak.id"], name=op.f("fk_leak_file_leak_id_leak"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_leak_file")),
        sa.UniqueConstraint("leak_id", "sha256", name=op.f("uq_leak_file_leak_id_sha256")),
    )
    op.create_table(
        "leak_entry",
        sa.Column("email_key", sa.LargeBinary(length=16), nullable=False),
        sa.Column("leak_id", BigId, nullable=False),
        sa.PrimaryKeyConstraint("email_key", "leak_id", name=op.f("pk_leak_entry")),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "exposure",
        sa.Column("id", BigId, nullable=False),
        sa.Column("account_id", BigId, nullable=False),
        sa.Column("leak_id", BigId, nullable=False),
        sa.Column("kind", _enum("exposurekind", "email", "credential"), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=True),
        sa.Column("state", _enum("exposurestate", "open", "resolved", "dismissed"), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("resolved_at", UTC, nullable=True),
        sa.Column("resolved_by", sa.String(length=200), nullable=True),
        sa.Column("resolution", sa.String(length=500), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["account.id"],
            name=op.f("fk_exposure_account_id_account"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["leak_id"], ["leak.id"], name=op.f("fk_exposure_leak_id_leak"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_exposure")),
        sa.UniqueConstraint("account_id", "leak_id", name=op.f("uq_exposure_account_id_leak_id")),
    )
    op.create_index("ix_exposure_account_state", "exposure", ["account_id", "state"])
    op.create_index(op.f("ix_exposure_leak_id"), "exposure", ["leak_id"])
    op.create_table(
        "notice",
        sa.Column("id", BigId, nullable=False),
        sa.Column("account_id", BigId, nullable=False),
        sa.Column("leak_id", BigId, nullable=True),
        sa.Column("kind", _enum("noticekind", "leak_warning"), nullable=False),
        sa.Column(
            "state",
            _enum("noticestate", "pending", "queued", "sending", "sent", "failed"),
            nullable=False,
        ),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("message_id", sa.String(length=255), nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("queued_at", UTC, nullable=True),
        sa.Column("sent_at", UTC, nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["account.id"],
            name=op.f("fk_notice_account_id_account"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["leak_id"], ["leak.id"], name=op.f("fk_notice_leak_id_leak"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notice")),
        sa.UniqueConstraint(
            "account_id", "kind", "leak_id", name=op.f("uq_notice_account_id_kind_leak_id")
        ),
    )
    op.create_index(op.f("ix_notice_leak_id"), "notice", ["leak_id"])
    op.create_index("ix_notice_state", "notice", ["state"])


def downgrade() -> None:
    op.drop_table("notice")
    op.drop_table("exposure")
    op.drop_table("leak_entry")
    op.drop_table("leak_file")
    op.drop_table("leak")
