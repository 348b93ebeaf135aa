"""leak_file.long_lines and truncated_after_bytes: a file's reading faults, kept for leaks show

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # Files ingested before this revision were not counted: 0 and NULL say "none known",
    # as their runs reported them at the time.
    with op.batch_alter_table("leak_file") as batch:
        batch.add_column(
            sa.Column("long_lines", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("truncated_after_bytes", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("leak_file") as batch:
        batch.alter_column("long_lines", server_default=None)  # the model sets it


def downgrade() -> None:
    with op.batch_alter_table("leak_file") as batch:
        batch.drop_column("truncated_after_bytes")
        batch.drop_column("long_lines")
