"""The stream log and confirmed pushes (SPEC §10): stream_heads, stream_events, and on deliveries
the stream id a push points at, when it must be seen by, and when it was.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

When = sa.DateTime(timezone=True)
Seq = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "stream_heads",
        sa.Column("account_id", sa.String(), nullable=False),
        sa.Column("head", Seq, nullable=False),
        sa.Column("floor", Seq, nullable=False),
        sa.PrimaryKeyConstraint("account_id", name="pk_stream_heads"),
    )
    op.create_table(
        "stream_events",
        sa.Column("account_id", sa.String(), nullable=False),
        sa.Column("seq", Seq, nullable=False),
        sa.Column("type", sa.String(), nullable=False),
        sa.Column("handoff_id", sa.String(), nullable=False),
        sa.Column("audience", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("data", sa.JSON(none_as_null=True), nullable=False),
        sa.Column("at", When, nullable=False),
        sa.PrimaryKeyConstraint("account_id", "seq", name="pk_stream_events"),
    )
    op.create_index("ix_stream_events_at", "stream_events", ["at"])
    op.add_column("deliveries", sa.Column("stream_seq", Seq, nullable=True))
    op.add_column("deliveries", sa.Column("confirm_by", When, nullable=True))
    op.add_column("deliveries", sa.Column("seen_at", When, nullable=True))
    op.create_index(
        "ix_deliveries_account_id_recipient_id_seen_at",
        "deliveries",
        ["account_id", "recipient_id", "seen_at"],
    )
    op.create_index("ix_deliveries_status_confirm_by", "deliveries", ["status", "confirm_by"])


def downgrade() -> None:
    op.drop_index("ix_deliveries_status_confirm_by", table_name="deliveries")
    op.drop_index("ix_deliveries_account_id_recipient_id_seen_at", table_name="deliveries")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("seen_at")
        batch.drop_column("confirm_by")
        batch.drop_column("stream_seq")
    op.drop_index("ix_stream_events_at", table_name="stream_events")
    op.drop_table("stream_events")
    op.drop_table("stream_heads")
