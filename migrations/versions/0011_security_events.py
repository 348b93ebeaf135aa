"""security events: the outbox of Security Event Tokens to the login service

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | None = None
depends_on: str | None = None

UTC = sa.DateTime(timezone=True)
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "security_event",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("jti", sa.String(length=64), nullable=False),
        sa.Column(
            "receiver",
            sa.Enum("push", "poll", name="eventreceiver", native_enum=False, length=20),
            nullable=False,
        ),
        sa.Column("account_id", BIG_ID, nullable=False),
        sa.Column("event_type", sa.String(length=200), nullable=False),
        sa.Column("claims", sa.JSON(), nullable=False),
        sa.Column(
            "state",
            sa.Enum(
                "pending",
                "queued",
                "sending",
                "delivered",
                "dropped",
                "cancelled",
                name="eventstate",
                native_enum=False,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("not_before", UTC, nullable=True),
        sa.Column("queued_at", UTC, nullable=True),
        sa.Column("lease_until", UTC, nullable=True),
        sa.Column("delivered_at", UTC, nullable=True),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["account.id"],
            name=op.f("fk_security_event_account_id_account"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_security_event")),
        sa.UniqueConstraint("jti", "receiver", name=op.f("uq_security_event_jti_receiver")),
    )
    op.create_index(
        "ix_security_event_receiver_state", "security_event", ["receiver", "state"], unique=False
    )
    op.create_index(
        "ix_security_event_account_receiver",
        "security_event",
        ["account_id", "receiver"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_security_event_account_receiver", table_name="security_event")
    op.drop_index("ix_security_event_receiver_state", table_name="security_event")
    op.drop_table("security_event")
