"""leak parts: byte ranges of a leak file for parallel workers

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("leak_file") as batch:
        batch.add_column(sa.Column("path", sa.String(length=1000), nullable=True))
        batch.add_column(sa.Column("parts", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("leak_file") as batch:
        batch.alter_column("parts", server_default=None)
    op.create_table(
        "leak_part",
        sa.Column("id", BigId, nullable=False),
        sa.Column("leak_file_id", BigId, nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("first_byte", sa.BigInteger(), nullable=False),
        sa.Column("end_byte", sa.BigInteger(), nullable=False),
        sa.Column(
            "state",
            sa.Enum("running", "complete", name="leakfilestate", native_enum=False, length=20),
            nullable=False,
        ),
        sa.Column("records_done", sa.BigInteger(), nullable=False),
        *[
            sa.Column(name, sa.BigInteger(), nullable=False)
            for name in ("lines", "valid", "invalid", "duplicates", "matched", "notices")
        ],
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["leak_file_id"],
            ["leak_file.id"],
            name=op.f("fk_leak_part_leak_file_id_leak_file"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_leak_part")),
        sa.UniqueConstraint("leak_file_id", "seq", name=op.f("uq_leak_part_leak_file_id_seq")),
    )


def downgrade() -> None:
    op.drop_table("leak_part")
    with op.batch_alter_table("leak_file") as batch:
        batch.drop_column("parts")
        batch.drop_column("path")
