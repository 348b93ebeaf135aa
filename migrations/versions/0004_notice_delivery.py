"""notice delivery: backoff, leases, reply codes, campaigns, undeliverable addresses

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None

UTC = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("account") as batch:
        batch.add_column(sa.Column("undeliverable_at", UTC, nullable=True))
    with op.batch_alter_table("notice") as batch:
        batch.add_column(sa.Column("reply_code", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("not_before", UTC, nullable=True))
        batch.add_column(sa.Column("lease_until", UTC, nullable=True))
        batch.create_unique_constraint(op.f("uq_notice_message_id"), ["message_id"])
    op.create_table(
        "campaign",
        sa.Column("leak_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("changed_at", UTC, nullable=False),
        sa.Column("changed_by", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(
            ["leak_id"], ["leak.id"], name=op.f("fk_campaign_leak_id_leak"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("leak_id", name=op.f("pk_campaign")),
    )


def downgrade() -> None:
    op.drop_table("campaign")
    with op.batch_alter_table("notice") as batch:
        batch.drop_constraint(op.f("uq_notice_message_id"), type_="unique")
        batch.drop_column("lease_until")
        batch.drop_column("not_before")
        batch.drop_column("reply_code")
    with op.batch_alter_table("account") as batch:
        batch.drop_column("undeliverable_at")
