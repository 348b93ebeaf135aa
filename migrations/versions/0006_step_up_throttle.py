"""step-up guess budget per method and subject; the account's security epoch; challenges
for ids without an account; audit targets as long as an account id

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None

UTC = sa.DateTime(timezone=True)
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "step_up_throttle",
        sa.Column("subject", sa.LargeBinary(length=16), nullable=False),
        sa.Column("scope", sa.String(length=20), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_failed_at", UTC, nullable=True),
        sa.Column("locked_until", UTC, nullable=True),
        sa.Column("lock_count", sa.Integer(), nullable=False),
        sa.Column("blocked_at", UTC, nullable=True),
        sa.PrimaryKeyConstraint("subject", "scope", name=op.f("pk_step_up_throttle")),
    )
    with op.batch_alter_table("account") as batch:
        batch.add_column(
            sa.Column("security_epoch", sa.Integer(), nullable=False, server_default="0")
        )
        # The account-wide lock gave way to per-method throttles: a lock in force today is
        # dropped with it (support's unlock would have ended it the same way).
        batch.drop_column("failed_verifications")
        batch.drop_column("locked_until")
        batch.drop_column("lock_count")
    with op.batch_alter_table("step_up_challenge") as batch:
        batch.alter_column("account_id", existing_type=BIG_ID, nullable=True)
    # "account:" and an external id of up to 255 characters: failures of unknown ids, which
    # may be that long, are audited too.
    with op.batch_alter_table("audit_event") as batch:
        batch.alter_column(
            "target", existing_type=sa.String(200), type_=sa.String(300), existing_nullable=True
        )


def downgrade() -> None:
    with op.batch_alter_table("audit_event") as batch:
        batch.alter_column(
            "target", existing_type=sa.String(300), type_=sa.String(200), existing_nullable=True
        )
    op.execute("DELETE FROM step_up_challenge WHERE account_id IS NULL")
    with op.batch_alter_table("step_up_challenge") as batch:
        batch.alter_column("account_id", existing_type=BIG_ID, nullable=False)
    with op.batch_alter_table("account") as batch:
        batch.add_column(
            sa.Column("failed_verifications", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("locked_until", UTC, nullable=True))
        batch.add_column(sa.Column("lock_count", sa.Integer(), nullable=False, server_default="0"))
        batch.drop_column("security_epoch")
    op.drop_table("step_up_throttle")
