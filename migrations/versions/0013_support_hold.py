"""support hold: support's "step up required" on an account; audit_event by target

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | None = None
depends_on: str | None = None

UTC = sa.DateTime(timezone=True)
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "support_hold",
        sa.Column("account_id", BIG_ID, nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("placed_by", sa.String(length=200), nullable=False),
        sa.Column("placed_at", UTC, nullable=False),
        sa.Column("expires_at", UTC, nullable=True),
        sa.Column("cleared_at", UTC, nullable=True),
        sa.Column("cleared_by", sa.String(length=200), nullable=True),
        sa.Column("clear_reason", sa.String(length=500), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["account.id"],
            name=op.f("fk_support_hold_account_id_account"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_support_hold")),
    )
    # The staff audit page's account filter, the dossier's history and the funnel's
    # stepped-up count read one target's rows: without it, each scans the whole table.
    op.create_index(
        "ix_audit_event_target_action_at", "audit_event", ["target", "action", "at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_audit_event_target_action_at", table_name="audit_event")
    op.drop_table("support_hold")
