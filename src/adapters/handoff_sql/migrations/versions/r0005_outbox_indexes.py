"""A cheaper outbox to write (issue 14): the indexes for pushes hold pushes only, the lease
column loses its index, and PostgreSQL leaves room on each page of deliveries.

Every delivery is written three times (queued, leased, recorded), and each write used to add an
entry to all six of its indexes. Now an email never enters the two push indexes, and taking a
lease changes no indexed column, so PostgreSQL can rewrite the row on its own page without
touching any index (a HOT update) while the page has room; fillfactor 85 keeps some. Releasing a
worker's leases at its stop finds them through the pending index instead. Measured with B6 quick
(`python -m bench b6 --quick`), back to back: PostgreSQL CPU per escalation 4.5-4.9 ms before,
3.5-3.9 ms after.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None

PUSHES = "channel = 'push'"
PUSH_INDEXES = {
    "ix_deliveries_account_id_recipient_id_seen_at": ["account_id", "recipient_id", "seen_at"],
    "ix_deliveries_status_confirm_by": ["status", "confirm_by"],
}


def upgrade() -> None:
    op.drop_index("ix_deliveries_leased_by", table_name="deliveries")
    for name, columns in PUSH_INDEXES.items():
        op.drop_index(name, table_name="deliveries")
        op.create_index(
            name,
            "deliveries",
            columns,
            postgresql_where=sa.text(PUSHES),
            sqlite_where=sa.text(PUSHES),
        )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE deliveries SET (fillfactor = 85)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE deliveries RESET (fillfactor)")
    for name, columns in PUSH_INDEXES.items():
        op.drop_index(name, table_name="deliveries")
        op.create_index(name, "deliveries", columns)
    op.create_index("ix_deliveries_leased_by", "deliveries", ["leased_by"])
