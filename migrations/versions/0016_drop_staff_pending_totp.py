"""staff_user.pending_totp_secret dropped: the enrolment page derives its secret from the link

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # Unwritten since the enrolment secret became a derivation of the link's token
    # (``service.staff.users.StaffSecrets``): every row holds NULL, so nothing is lost.
    with op.batch_alter_table("staff_user") as batch:
        batch.drop_column("pending_totp_secret")


def downgrade() -> None:
    with op.batch_alter_table("staff_user") as batch:
        batch.add_column(sa.Column("pending_totp_secret", sa.LargeBinary(length=128)))
