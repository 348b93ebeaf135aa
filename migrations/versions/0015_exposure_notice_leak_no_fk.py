"""exposure and notice: no foreign key to leak (a per-row trigger on every ingested match);
leak_file.accounts_xmin (the late-account look skips the accounts written before the file)

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # PostgreSQL checks a foreign key with a trigger and a query per inserted row: for the
    # leak, a fifth of what an ingested match's exposure and warning cost the server. The
    # columns keep their indexes; a leak is deleted only while nothing names it
    # (service.leaks.progress.forget_file).
    with op.batch_alter_table("exposure") as batch:
        batch.drop_constraint("fk_exposure_leak_id_leak", type_="foreignkey")
    with op.batch_alter_table("notice") as batch:
        batch.drop_constraint("fk_notice_leak_id_leak", type_="foreignkey")
    op.add_column("leak_file", sa.Column("accounts_xmin", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("leak_file") as batch:
        batch.drop_column("accounts_xmin")
    with op.batch_alter_table("notice") as batch:
        batch.create_foreign_key(
            "fk_notice_leak_id_leak", "leak", ["leak_id"], ["id"], ondelete="CASCADE"
        )
    with op.batch_alter_table("exposure") as batch:
        batch.create_foreign_key(
            "fk_exposure_leak_id_leak", "leak", ["leak_id"], ["id"], ondelete="CASCADE"
        )
