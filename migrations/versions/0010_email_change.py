"""email change: requests, holds after a revert, the notices' link to their request

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

UTC = sa.DateTime(timezone=True)

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | None = None
depends_on: str | None = None

OPEN = "state IN ('awaiting_review', 'awaiting_confirmation')"
STATES = (
    "awaiting_review",
    "awaiting_confirmation",
    "confirmed",
    "reverted",
    "cancelled",
    "replaced",
    "denied",
    "expired",
)


def upgrade() -> None:
    op.create_table(
        "email_change_request",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column(
            "account_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "state",
            sa.Enum(*STATES, name="changestate", native_enum=False, length=30),
            nullable=False,
        ),
        sa.Column(
            "priority",
            sa.Enum("high", "normal", name="changepriority", native_enum=False, length=20),
            nullable=False,
        ),
        sa.Column("old_email", sa.String(length=320), nullable=False),
        sa.Column("old_email_key", sa.LargeBinary(length=32), nullable=False),
        sa.Column("new_email", sa.String(length=320), nullable=False),
        sa.Column("new_email_key", sa.LargeBinary(length=32), nullable=False),
        sa.Column("accepted_leaked", sa.Boolean(), nullable=False),
        sa.Column("assurance_jti", sa.String(length=64), nullable=True),
        sa.Column("assisted", sa.Boolean(), nullable=False),
        sa.Column("ticket", sa.String(length=100), nullable=True),
        sa.Column("requested_by", sa.String(length=200), nullable=False),
        sa.Column("reviewed_by", sa.String(length=200), nullable=True),
        sa.Column("review_reason", sa.String(length=500), nullable=True),
        sa.Column("link_generation", sa.Integer(), nullable=False),
        sa.Column("confirm_token_hash", sa.LargeBinary(length=32), nullable=True),
        sa.Column("confirm_expires_at", UTC, nullable=True),
        sa.Column("revert_token_hash", sa.LargeBinary(length=32), nullable=True),
        sa.Column("revert_expires_at", UTC, nullable=True),
        sa.Column("resent_at", UTC, nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("confirmed_at", UTC, nullable=True),
        sa.Column("reverted_at", UTC, nullable=True),
        sa.Column("closed_at", UTC, nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["account.id"],
            name=op.f("fk_email_change_request_account_id_account"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_email_change_request")),
        sa.UniqueConstraint("assurance_jti", name=op.f("uq_email_change_request_assurance_jti")),
        sa.UniqueConstraint(
            "confirm_token_hash", name=op.f("uq_email_change_request_confirm_token_hash")
        ),
        sa.UniqueConstraint(
            "revert_token_hash", name=op.f("uq_email_change_request_revert_token_hash")
        ),
    )
    with op.batch_alter_table("email_change_request") as batch:
        batch.create_index(
            "ux_email_change_request_open_account",
            ["account_id"],
            unique=True,
            sqlite_where=sa.text(OPEN),
            postgresql_where=sa.text(OPEN),
        )
        batch.create_index("ix_email_change_request_state_created", ["state", "created_at"])
        batch.create_index("ix_email_change_request_new_email_key", ["new_email_key"])
    op.create_table(
        "email_change_hold",
        sa.Column(
            "account_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("request_id", sa.String(length=36), nullable=True),
        sa.Column("reverted_at", UTC, nullable=False),
        sa.Column("cooling_until", UTC, nullable=False),
        sa.Column("cleared_at", UTC, nullable=True),
        sa.Column("cleared_by", sa.String(length=200), nullable=True),
        sa.Column("clear_reason", sa.String(length=500), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["account.id"],
            name=op.f("fk_email_change_hold_account_id_account"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["email_change_request.id"],
            name=op.f("fk_email_change_hold_request_id_email_change_request"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_email_change_hold")),
    )
    with op.batch_alter_table("account") as batch:
        batch.add_column(sa.Column("email_changed_at", UTC, nullable=True))
    with op.batch_alter_table("notice") as batch:
        batch.add_column(sa.Column("email_change_id", sa.String(length=36), nullable=True))
        batch.create_foreign_key(
            "fk_notice_email_change_id_email_change_request",
            "email_change_request",
            ["email_change_id"],
            ["id"],
            ondelete="CASCADE",
        )
        batch.create_index("ix_notice_email_change_id", ["email_change_id"])


def downgrade() -> None:
    with op.batch_alter_table("notice") as batch:
        batch.drop_index("ix_notice_email_change_id")
        batch.drop_constraint("fk_notice_email_change_id_email_change_request", type_="foreignkey")
        batch.drop_column("email_change_id")
    with op.batch_alter_table("account") as batch:
        batch.drop_column("email_changed_at")
    op.drop_table("email_change_hold")
    with op.batch_alter_table("email_change_request") as batch:
        batch.drop_index("ix_email_change_request_new_email_key")
        batch.drop_index("ix_email_change_request_state_created")
        batch.drop_index("ux_email_change_request_open_account")
    op.drop_table("email_change_request")
