"""step-up: TOTP credentials, recovery codes, emailed-code challenges, account lockout

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None

UTC = sa.DateTime(timezone=True)
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("account") as batch:
        batch.add_column(
            sa.Column("failed_verifications", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("locked_until", UTC, nullable=True))
        batch.add_column(sa.Column("lock_count", sa.Integer(), nullable=False, server_default="0"))
    op.create_table(
        "totp_credential",
        sa.Column("account_id", BIG_ID, nullable=False),
        sa.Column("secret", sa.LargeBinary(length=128), nullable=True),
        sa.Column("pending_secret", sa.LargeBinary(length=128), nullable=True),
        sa.Column("last_counter", sa.BigInteger(), nullable=True),
        sa.Column("confirmed_at", UTC, nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["account.id"],
            name=op.f("fk_totp_credential_account_id_account"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_totp_credential")),
    )
    op.create_table(
        "recovery_code",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("account_id", BIG_ID, nullable=False),
        sa.Column("lookup", sa.String(length=8), nullable=False),
        sa.Column("code_hash", sa.String(length=200), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("used_at", UTC, nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["account.id"],
            name=op.f("fk_recovery_code_account_id_account"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recovery_code")),
    )
    op.create_index(
        "ix_recovery_code_account_lookup", "recovery_code", ["account_id", "lookup"], unique=False
    )
    op.create_table(
        "step_up_challenge",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("account_id", BIG_ID, nullable=False),
        sa.Column("method", sa.String(length=20), nullable=False),
        sa.Column(
            "state",
            sa.Enum(
                "pending", "passed", "void", name="challengestate", native_enum=False, length=20
            ),
            nullable=False,
        ),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("expires_at", UTC, nullable=False),
        sa.Column("used_at", UTC, nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["account.id"],
            name=op.f("fk_step_up_challenge_account_id_account"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_step_up_challenge")),
    )
    op.create_index(
        "ix_step_up_challenge_account_state",
        "step_up_challenge",
        ["account_id", "state"],
        unique=False,
    )
    with op.batch_alter_table("notice") as batch:
        batch.add_column(sa.Column("challenge_id", sa.String(length=36), nullable=True))
        batch.create_index(batch.f("ix_notice_challenge_id"), ["challenge_id"], unique=False)
        batch.create_foreign_key(
            batch.f("fk_notice_challenge_id_step_up_challenge"),
            "step_up_challenge",
            ["challenge_id"],
            ["id"],
            ondelete="CASCADE",
        )


def downgrade() -> None:
    with op.batch_alter_table("notice") as batch:
        batch.drop_constraint(
            batch.f("fk_notice_challenge_id_step_up_challenge"), type_="foreignkey"
        )
        batch.drop_index(batch.f("ix_notice_challenge_id"))
        batch.drop_column("challenge_id")
    op.drop_index("ix_step_up_challenge_account_state", table_name="step_up_challenge")
    op.drop_table("step_up_challenge")
    op.drop_index("ix_recovery_code_account_lookup", table_name="recovery_code")
    op.drop_table("recovery_code")
    op.drop_table("totp_credential")
    with op.batch_alter_table("account") as batch:
        batch.drop_column("lock_count")
        batch.drop_column("locked_until")
        batch.drop_column("failed_verifications")
