"""key fingerprint: what the stored hashes were keyed with, to refuse another key

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | None = None
depends_on: str | None = None

UTC = sa.DateTime(timezone=True)


def upgrade() -> None:
    # Empty after the upgrade: the first command that writes keys records its key's
    # fingerprint, after checking it against the stored accounts (service/keying.py).
    op.create_table(
        "key_fingerprint",
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("fingerprint", sa.LargeBinary(length=32), nullable=False),
        sa.Column("recorded_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_key_fingerprint")),
    )


def downgrade() -> None:
    op.drop_table("key_fingerprint")
