"""leak_file.text_sha256 and text_prefixes: the content's fingerprints as text, for the
cross-leak guard

A copy of a file another leak has, saved with CRLF line ends, with a UTF-8 BOM added or
removed, or re-encoded as UTF-16, has other content bytes but the same text: ``leakguard
ingest`` refuses it like the file itself, by these columns. They are NULL where the text is
the content byte for byte (a UTF-8 file with LF line ends and no BOM), and for every file
recorded before this revision: its content's fingerprints stand for its text's, so it is
still found by what it stored.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("leak_file") as batch:
        batch.add_column(sa.Column("text_sha256", sa.LargeBinary(length=32), nullable=True))
        batch.add_column(sa.Column("text_prefixes", sa.JSON(), nullable=True))
        batch.create_index("ix_leak_file_text_sha256", ["text_sha256"])


def downgrade() -> None:
    with op.batch_alter_table("leak_file") as batch:
        batch.drop_index("ix_leak_file_text_sha256")
        batch.drop_column("text_prefixes")
        batch.drop_column("text_sha256")
