"""leak facts for the notices (names per language, the leak's own date); retraction;
when a notice failed

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None

UTC = sa.DateTime(timezone=True)


def upgrade() -> None:
    # Exposure.state ("retracted") and Notice.state ("cancelled") are non-native enums
    # (VARCHAR(20)): their new values need no DDL.
    with op.batch_alter_table("leak") as batch:
        batch.alter_column("name", existing_type=sa.String(200), nullable=True)
        batch.add_column(sa.Column("names", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("observed_at", sa.Date(), nullable=True))
        batch.add_column(sa.Column("retracted_at", UTC, nullable=True))
        batch.add_column(sa.Column("retracted_by", sa.String(200), nullable=True))
        batch.add_column(sa.Column("retraction_reason", sa.String(500), nullable=True))
    # A name equal to the slug was the old default, not a name: the notices now say
    # "a leak at another company" instead of showing people the slug.
    op.execute("UPDATE leak SET name = NULL WHERE name = slug")
    with op.batch_alter_table("notice") as batch:
        batch.add_column(sa.Column("failed_at", UTC, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("notice") as batch:
        batch.drop_column("failed_at")
    op.execute("UPDATE notice SET state = 'failed' WHERE state = 'cancelled'")
    op.execute("UPDATE exposure SET state = 'dismissed' WHERE state = 'retracted'")
    op.execute("UPDATE leak SET name = slug WHERE name IS NULL")
    with op.batch_alter_table("leak") as batch:
        batch.drop_column("retraction_reason")
        batch.drop_column("retracted_by")
        batch.drop_column("retracted_at")
        batch.drop_column("observed_at")
        batch.drop_column("names")
        batch.alter_column("name", existing_type=sa.String(200), nullable=False)
