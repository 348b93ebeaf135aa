"""leak_file.content_sha256 and content_prefixes: the decompressed content's fingerprints,
for the cross-leak guard

A recompressed copy of a file another leak has (gzip -c leak.txt > leak.txt.gz, or bz2, xz,
or a gzip with another name or time in its header) has other bytes but the same content,
and a copy cut short (or extended) the same first bytes: ``leakguard ingest`` refuses them
like the file itself, by these columns.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("leak_file") as batch:
        batch.add_column(sa.Column("content_sha256", sa.LargeBinary(length=32), nullable=True))
        batch.add_column(sa.Column("content_prefixes", sa.JSON(), nullable=True))
        batch.create_index("ix_leak_file_content_sha256", ["content_sha256"])
    # A plain file's content is its bytes: known without the file. A compressed file recorded
    # before this revision stays NULL (its content is not known without reading it again):
    # it is found by its bytes alone, as before.
    op.execute("UPDATE leak_file SET content_sha256 = sha256 WHERE compression IS NULL")


def downgrade() -> None:
    with op.batch_alter_table("leak_file") as batch:
        batch.drop_index("ix_leak_file_content_sha256")
        batch.drop_column("content_prefixes")
        batch.drop_column("content_sha256")
