"""The initial schema: members, sessions, handoffs, deliveries, timeline, policies, presence.

Revision ID: 0001
Revises:
Create Date: 2026-01-05

Written out in full rather than imported from tables.py, so that later changes to the models
never change what this revision did; a test checks that models and migrations agree.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

When = sa.DateTime(timezone=True)


def _key(*columns: str, table: str) -> sa.PrimaryKeyConstraint:
    return sa.PrimaryKeyConstraint(*columns, name=f"pk_{table}")


def _index(table: str, *columns: str, unique: bool = False) -> None:
    op.create_index(f"ix_{table}_{'_'.join(columns)}", table, list(columns), unique=unique)


def upgrade() -> None:
    op.create_table(
        "members",
        sa.Column("account_id", sa.String(), nullable=False),
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("email", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("role", sa.String(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("deleted_at", When, nullable=True),
        _key("account_id", "id", table="members"),
    )
    op.create_table(
        "sessions",
        sa.Column("account_id", sa.String(), nullable=False),
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("owner_id", sa.String(), nullable=False),
        sa.Column("assignee_id", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("problem_summary", sa.String(), nullable=False),
        sa.Column("context", sa.JSON(), nullable=False),
        sa.Column("handoff_count", sa.Integer(), nullable=False),
        sa.Column("escalation_package", sa.JSON(), nullable=True),
        sa.Column("created_at", When, nullable=False),
        sa.Column("updated_at", When, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        _key("account_id", "id", table="sessions"),
    )
    _index("sessions", "account_id", "assignee_id")
    op.create_table(
        "handoffs",
        sa.Column("account_id", sa.String(), nullable=False),
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("session_id", sa.String(), nullable=False),
        sa.Column("intent", sa.String(), nullable=False),
        sa.Column("engineer_notes", sa.String(), nullable=False),
        sa.Column("created_by", sa.String(), nullable=False),
        sa.Column("created_at", When, nullable=False),
        sa.Column("snapshot", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("claimed_by", sa.String(), nullable=True),
        sa.Column("claimed_at", When, nullable=True),
        sa.Column("closed_at", When, nullable=True),
        sa.Column("policy", sa.JSON(), nullable=True),
        sa.Column("reminders_sent", sa.Integer(), nullable=False),
        sa.Column("next_reminder_at", When, nullable=True),
        sa.Column("idempotency_key", sa.String(), nullable=True),
        sa.Column("request_fingerprint", sa.String(), nullable=True),
        _key("account_id", "id", table="handoffs"),
        sa.ForeignKeyConstraint(
            ["account_id", "session_id"],
            ["sessions.account_id", "sessions.id"],
            name="fk_handoffs_account_id_session_id_sessions",
        ),
        sa.UniqueConstraint(
            "account_id", "idempotency_key", name="uq_handoffs_account_id_idempotency_key"
        ),
    )
    _index("handoffs", "account_id", "session_id", "status")
    _index("handoffs", "account_id", "intent", "created_at")
    _index("handoffs", "status", "next_reminder_at")
    op.create_table(
        "deliveries",
        sa.Column("account_id", sa.String(), nullable=False),
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("handoff_id", sa.String(), nullable=False),
        sa.Column("recipient_id", sa.String(), nullable=False),
        sa.Column("address", sa.String(), nullable=False),
        sa.Column("channel", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("created_at", When, nullable=False),
        sa.Column("next_attempt_at", When, nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(), nullable=True),
        sa.Column("sent_at", When, nullable=True),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("leased_by", sa.String(), nullable=True),
        sa.Column("leased_until", When, nullable=True),
        _key("account_id", "id", table="deliveries"),
        sa.ForeignKeyConstraint(
            ["account_id", "handoff_id"],
            ["handoffs.account_id", "handoffs.id"],
            name="fk_deliveries_account_id_handoff_id_handoffs",
        ),
    )
    _index("deliveries", "account_id", "handoff_id", "status")
    _index("deliveries", "status", "next_attempt_at")
    _index("deliveries", "leased_by")
    op.create_table(
        "timeline",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            sa.Identity(),
            nullable=False,
        ),
        sa.Column("account_id", sa.String(), nullable=False),
        sa.Column("session_id", sa.String(), nullable=False),
        sa.Column("handoff_id", sa.String(), nullable=True),
        sa.Column("type", sa.String(), nullable=False),
        sa.Column("actor_id", sa.String(), nullable=True),
        sa.Column("at", When, nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        _key("id", table="timeline"),
        sa.ForeignKeyConstraint(
            ["account_id", "session_id"],
            ["sessions.account_id", "sessions.id"],
            name="fk_timeline_account_id_session_id_sessions",
        ),
        sa.ForeignKeyConstraint(
            ["account_id", "handoff_id"],
            ["handoffs.account_id", "handoffs.id"],
            name="fk_timeline_account_id_handoff_id_handoffs",
        ),
        sqlite_autoincrement=True,
    )
    _index("timeline", "account_id", "id")
    _index("timeline", "account_id", "session_id", "id")
    _index("timeline", "account_id", "handoff_id", "type", "id")
    op.create_table(
        "policies",
        sa.Column("account_id", sa.String(), nullable=False),
        sa.Column("policy", sa.JSON(), nullable=False),
        _key("account_id", table="policies"),
    )
    op.create_table(
        "presence",
        sa.Column("stream_id", sa.String(), nullable=False),
        sa.Column("account_id", sa.String(), nullable=False),
        sa.Column("member_id", sa.String(), nullable=False),
        sa.Column("expires_at", When, nullable=False),
        _key("stream_id", table="presence"),
    )
    _index("presence", "account_id", "member_id", "expires_at")
    _index("presence", "expires_at")


def downgrade() -> None:
    for table in (
        "presence",
        "policies",
        "timeline",
        "deliveries",
        "handoffs",
        "sessions",
        "members",
    ):
        op.drop_table(table)
