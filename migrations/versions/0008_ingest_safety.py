"""leak files: identity includes how the file was read; its name, operator and run times

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("leak_file") as batch:
        batch.add_column(sa.Column("read_as", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("name", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("ran_by", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("run_seconds", sa.JSON(), nullable=True))
    # Files recorded before: read as their format; each finished one had one known run.
    op.execute("UPDATE leak_file SET read_as = format")
    with op.batch_alter_table("leak_file") as batch:
        batch.alter_column("read_as", existing_type=sa.String(length=100), nullable=False)
        batch.drop_constraint("uq_leak_file_leak_id_sha256", type_="unique")
        batch.create_unique_constraint(
            "uq_leak_file_leak_id_sha256_read_as", ["leak_id", "sha256", "read_as"]
        )
        batch.create_index("ix_leak_file_sha256", ["sha256"])


def downgrade() -> None:
    with op.batch_alter_table("leak_file") as batch:
        batch.drop_index("ix_leak_file_sha256")
        batch.drop_constraint("uq_leak_file_leak_id_sha256_read_as", type_="unique")
        batch.create_unique_constraint("uq_leak_file_leak_id_sha256", ["leak_id", "sha256"])
        batch.drop_column("run_seconds")
        batch.drop_column("ran_by")
        batch.drop_column("name")
        batch.drop_column("read_as")
