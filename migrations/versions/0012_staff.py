"""staff: the internal site's users and their server-side sessions

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | None = None
depends_on: str | None = None

UTC = sa.DateTime(timezone=True)
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "staff_user",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column(
            "role",
            sa.Enum("viewer", "agent", "admin", name="staffrole", native_enum=False, length=20),
            nullable=False,
        ),
        sa.Column("password_hash", sa.String(length=200), nullable=True),
        sa.Column("totp_secret", sa.LargeBinary(length=128), nullable=True),
        sa.Column("pending_totp_secret", sa.LargeBinary(length=128), nullable=True),
        sa.Column("totp_last_step", sa.BigInteger(), nullable=True),
        sa.Column("enrol_token_hash", sa.String(length=64), nullable=True),
        sa.Column("enrol_expires_at", UTC, nullable=True),
        sa.Column("enrolled_at", UTC, nullable=True),
        sa.Column("disabled_at", UTC, nullable=True),
        sa.Column("failed_logins", sa.Integer(), nullable=False),
        sa.Column("last_failed_login_at", UTC, nullable=True),
        sa.Column("last_login_at", UTC, nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staff_user")),
        sa.UniqueConstraint("email", name=op.f("uq_staff_user_email")),
        sa.UniqueConstraint("enrol_token_hash", name=op.f("uq_staff_user_enrol_token_hash")),
    )
    op.create_table(
        "staff_session",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("staff_id", BIG_ID, nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("last_seen_at", UTC, nullable=False),
        sa.Column("reauth_at", UTC, nullable=False),
        sa.Column("ended_at", UTC, nullable=True),
        sa.ForeignKeyConstraint(
            ["staff_id"],
            ["staff_user.id"],
            name=op.f("fk_staff_session_staff_id_staff_user"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_staff_session")),
    )
    op.create_index("ix_staff_session_staff_id", "staff_session", ["staff_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_staff_session_staff_id", table_name="staff_session")
    op.drop_table("staff_session")
    op.drop_table("staff_user")
