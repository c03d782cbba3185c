"""Tiers and outgoing webhooks (SPEC §14): on handoffs the tiers reached and when the next is
due; on deliveries a webhook's payload; the webhooks table.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None

When = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column(
        "handoffs",
        sa.Column("tiers_reached", sa.Integer(), nullable=False, server_default="1"),
    )
    op.add_column("handoffs", sa.Column("next_tier_at", When, nullable=True))
    op.create_index("ix_handoffs_status_next_tier_at", "handoffs", ["status", "next_tier_at"])
    op.add_column("deliveries", sa.Column("payload", sa.JSON(none_as_null=True), nullable=True))
    op.create_table(
        "webhooks",
        sa.Column("account_id", sa.String(), nullable=False),
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("url", sa.String(), nullable=False),
        sa.Column("events", sa.JSON(none_as_null=True), nullable=False),
        sa.Column("format", sa.String(), nullable=False),
        sa.Column("secret", sa.String(), nullable=False),
        sa.Column("created_at", When, nullable=False),
        sa.Column("updated_at", When, nullable=False),
        sa.PrimaryKeyConstraint("account_id", "id", name="pk_webhooks"),
    )


def downgrade() -> None:
    op.drop_table("webhooks")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("payload")
    op.drop_index("ix_handoffs_status_next_tier_at", table_name="handoffs")
    with op.batch_alter_table("handoffs") as batch:
        batch.drop_column("next_tier_at")
        batch.drop_column("tiers_reached")
