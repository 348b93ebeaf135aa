"""exposure lifecycle: an end cause for every ended exposure; trusted devices; expiry indexes

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | None = None
depends_on: str | None = None

UTC = sa.DateTime(timezone=True)
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_CAUSES = ("address_changed", "support_resolved", "dismissed", "expired", "retracted")


def upgrade() -> None:
    with op.batch_alter_table("exposure") as batch:
        batch.add_column(
            sa.Column(
                "end_cause",
                sa.Enum(*_CAUSES, name="exposureendcause", native_enum=False, length=20),
                nullable=True,
            )
        )
    # Exposures ended before the cause was kept: retracted ones say so; support's
    # resolutions and dismissals say theirs.
    op.execute("UPDATE exposure SET end_cause = 'retracted' WHERE state = 'retracted'")
    op.execute("UPDATE exposure SET end_cause = 'support_resolved' WHERE state = 'resolved'")
    op.execute("UPDATE exposure SET end_cause = 'dismissed' WHERE state = 'dismissed'")
    op.create_index(
        "ix_exposure_open_created_at",
        "exposure",
        ["created_at"],
        unique=False,
        postgresql_where=sa.text("state = 'open'"),
        sqlite_where=sa.text("state = 'open'"),
    )
    op.create_index(
        "ix_step_up_challenge_expires_at", "step_up_challenge", ["expires_at"], unique=False
    )
    op.create_table(
        "trusted_device",
        sa.Column("account_id", BIG_ID, nullable=False),
        sa.Column("device_key", sa.LargeBinary(length=32), nullable=False),
        sa.Column("trusted_at", UTC, nullable=False),
        sa.Column("expires_at", UTC, nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["account.id"],
            name=op.f("fk_trusted_device_account_id_account"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", "device_key", name=op.f("pk_trusted_device")),
    )
    op.create_index("ix_trusted_device_expires_at", "trusted_device", ["expires_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_trusted_device_expires_at", table_name="trusted_device")
    op.drop_table("trusted_device")
    op.drop_index("ix_step_up_challenge_expires_at", table_name="step_up_challenge")
    op.drop_index("ix_exposure_open_created_at", table_name="exposure")
    with op.batch_alter_table("exposure") as batch:
        batch.drop_column("end_cause")
