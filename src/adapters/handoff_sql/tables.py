"""The schema, as SQLAlchemy Core tables. Only this adapter knows it; the core never does.

Every key and index leads with `account_id`, so one account's rows sit together and a query
that forgets the account cannot use an index by accident. The exceptions are the worker's
cross-account queues (due deliveries, due reminders, leases), the timeline's identity key and
presence streams and sign-in links (found by their code alone), each indexed for the query that
reads it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from handoff_core.model import (
    Channel,
    DeliveryStatus,
    HandoffStatus,
    Intent,
    NoticeKind,
    Role,
    SessionStatus,
)

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UtcDateTime(sa.TypeDecorator[datetime]):
    """Aware UTC in and out. SQLite keeps naive text, so the zone is put back on the way out."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r} cannot be stored; use aware UTC")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class EnumText(sa.TypeDecorator[Any]):
    """A StrEnum stored as its plain string value: no database enum type to migrate."""

    impl = sa.String()
    cache_ok = True

    def __init__(self, enum: type[StrEnum]) -> None:
        super().__init__()
        self.enum = enum

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else self.enum(value).value

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        return None if value is None else self.enum(value)


# JSON, not JSONB, on PostgreSQL too: JSONB rewrites numbers (1.2345678901234567e+20 comes back
# as an integer), reorders keys and refuses "\u0000", so what was saved would not be what is
# loaded. Nothing queries inside these documents.
Json = sa.JSON(none_as_null=True)
Id = sa.String()
Text = sa.String()
When = UtcDateTime()
TimelineId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

members = sa.Table(
    "members",
    metadata,
    sa.Column("account_id", Id, nullable=False),
    sa.Column("id", Id, nullable=False),
    sa.Column("email", Text, nullable=False),
    sa.Column("name", Text, nullable=False),
    sa.Column("role", EnumText(Role), nullable=False),
    sa.Column("active", sa.Boolean(), nullable=False),
    sa.Column("deleted_at", When, nullable=True),
    sa.PrimaryKeyConstraint("account_id", "id"),
)

sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("account_id", Id, nullable=False),
    sa.Column("id", Id, nullable=False),
    sa.Column("owner_id", Id, nullable=False),
    sa.Column("assignee_id", Id, nullable=False),
    sa.Column("status", EnumText(SessionStatus), nullable=False),
    sa.Column("problem_summary", Text, nullable=False),
    sa.Column("context", Json, nullable=False),
    sa.Column("handoff_count", sa.Integer(), nullable=False),
    sa.Column("escalation_package", Json, nullable=True),
    sa.Column("created_at", When, nullable=False),
    sa.Column("updated_at", When, nullable=False),
    sa.Column("version", sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint("account_id", "id"),
    sa.Index(None, "account_id", "assignee_id"),
)

handoffs = sa.Table(
    "handoffs",
    metadata,
    sa.Column("account_id", Id, nullable=False),
    sa.Column("id", Id, nullable=False),
    sa.Column("session_id", Id, nullable=False),
    sa.Column("intent", EnumText(Intent), nullable=False),
    sa.Column("engineer_notes", Text, nullable=False),
    sa.Column("created_by", Id, nullable=False),
    sa.Column("created_at", When, nullable=False),
    sa.Column("snapshot", Json, nullable=False),
    sa.Column("status", EnumText(HandoffStatus), nullable=False),
    sa.Column("claimed_by", Id, nullable=True),
    sa.Column("claimed_at", When, nullable=True),
    sa.Column("closed_at", When, nullable=True),
    sa.Column("policy", Json, nullable=True),
    sa.Column("reminders_sent", sa.Integer(), nullable=False),
    sa.Column("next_reminder_at", When, nullable=True),
    sa.Column("tiers_reached", sa.Integer(), nullable=False, server_default="1"),
    sa.Column("next_tier_at", When, nullable=True),
    sa.Column("idempotency_key", Text, nullable=True),
    sa.Column("request_fingerprint", Text, nullable=True),
    sa.PrimaryKeyConstraint("account_id", "id"),
    sa.ForeignKeyConstraint(["account_id", "session_id"], ["sessions.account_id", "sessions.id"]),
    sa.UniqueConstraint("account_id", "idempotency_key"),
    sa.Index(None, "account_id", "session_id", "status"),
    sa.Index(None, "account_id", "intent", "created_at"),
    sa.Index(None, "status", "next_reminder_at"),
    sa.Index(None, "status", "next_tier_at"),
)

# A partial index's condition, written as the queries that use it write it: the planner takes
# the index only when the query says the very same thing, as a constant (see `PUSH_CHANNEL`).
PUSH_CHANNEL = "channel = 'push'"
PUSHES_ONLY: dict[str, Any] = {
    "postgresql_where": sa.text(PUSH_CHANNEL),
    "sqlite_where": sa.text(PUSH_CHANNEL),
}

deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("account_id", Id, nullable=False),
    sa.Column("id", Id, nullable=False),
    sa.Column("handoff_id", Id, nullable=False),
    sa.Column("recipient_id", Id, nullable=False),
    sa.Column("address", Text, nullable=False),
    sa.Column("channel", EnumText(Channel), nullable=False),
    sa.Column("kind", EnumText(NoticeKind), nullable=False),
    sa.Column("created_at", When, nullable=False),
    sa.Column("next_attempt_at", When, nullable=False),
    sa.Column("status", EnumText(DeliveryStatus), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("last_error", Text, nullable=True),
    sa.Column("sent_at", When, nullable=True),
    sa.Column("round", sa.Integer(), nullable=False),
    sa.Column("leased_by", Text, nullable=True),
    sa.Column("leased_until", When, nullable=True),
    sa.Column("stream_seq", TimelineId, nullable=True),
    sa.Column("confirm_by", When, nullable=True),
    sa.Column("seen_at", When, nullable=True),
    sa.Column("payload", Json, nullable=True),
    sa.PrimaryKeyConstraint("account_id", "id"),
    sa.ForeignKeyConstraint(["account_id", "handoff_id"], ["handoffs.account_id", "handoffs.id"]),
    sa.Index(None, "account_id", "handoff_id", "status"),
    sa.Index(None, "status", "next_attempt_at"),
    # Pushes only: emails (most rows) never enter these, on insert or on any update.
    sa.Index(None, "account_id", "recipient_id", "seen_at", **PUSHES_ONLY),
    sa.Index(None, "status", "confirm_by", **PUSHES_ONLY),
    # Room on each page, so that taking a lease (leased_by, leased_until: no index holds them)
    # rewrites the row in place without touching any index (a HOT update).
    postgresql_with={"fillfactor": 85},
)

timeline = sa.Table(
    "timeline",
    metadata,
    sa.Column("id", TimelineId, sa.Identity(), primary_key=True),
    sa.Column("account_id", Id, nullable=False),
    sa.Column("session_id", Id, nullable=False),
    sa.Column("handoff_id", Id, nullable=True),
    sa.Column("type", Text, nullable=False),
    sa.Column("actor_id", Id, nullable=True),
    sa.Column("at", When, nullable=False),
    sa.Column("data", Json, nullable=False),
    sa.ForeignKeyConstraint(["account_id", "session_id"], ["sessions.account_id", "sessions.id"]),
    sa.ForeignKeyConstraint(["account_id", "handoff_id"], ["handoffs.account_id", "handoffs.id"]),
    sa.Index(None, "account_id", "id"),
    sa.Index(None, "account_id", "session_id", "id"),
    sa.Index(None, "account_id", "handoff_id", "type", "id"),
    sqlite_autoincrement=True,
)

policies = sa.Table(
    "policies",
    metadata,
    sa.Column("account_id", Id, nullable=False),
    sa.Column("policy", Json, nullable=False),
    sa.PrimaryKeyConstraint("account_id"),
)

presence = sa.Table(
    "presence",
    metadata,
    sa.Column("stream_id", Id, nullable=False),
    sa.Column("account_id", Id, nullable=False),
    sa.Column("member_id", Id, nullable=False),
    sa.Column("expires_at", When, nullable=False),
    sa.PrimaryKeyConstraint("stream_id"),
    sa.Index(None, "account_id", "member_id", "expires_at"),
    sa.Index(None, "expires_at"),
)

# The stream log (SPEC §10): one sequence per account, kept in `stream_heads`. Appending takes
# the account's head row for update, so numbers are given in commit order and a rollback gives
# its numbers back; `floor` is the highest seq pruned.
stream_heads = sa.Table(
    "stream_heads",
    metadata,
    sa.Column("account_id", Id, nullable=False),
    sa.Column("head", TimelineId, nullable=False),
    sa.Column("floor", TimelineId, nullable=False),
    sa.PrimaryKeyConstraint("account_id"),
)

stream_events = sa.Table(
    "stream_events",
    metadata,
    sa.Column("account_id", Id, nullable=False),
    sa.Column("seq", TimelineId, nullable=False),
    sa.Column("type", Text, nullable=False),
    sa.Column("handoff_id", Id, nullable=False),
    sa.Column("audience", Json, nullable=True),
    sa.Column("data", Json, nullable=False),
    sa.Column("at", When, nullable=False),
    sa.PrimaryKeyConstraint("account_id", "seq"),
    sa.Index(None, "at"),
)

# Outgoing webhook endpoints (SPEC §14). The secret signs what is sent; it is shown once.
webhooks = sa.Table(
    "webhooks",
    metadata,
    sa.Column("account_id", Id, nullable=False),
    sa.Column("id", Id, nullable=False),
    sa.Column("url", Text, nullable=False),
    sa.Column("events", Json, nullable=False),
    sa.Column("format", Text, nullable=False),
    sa.Column("secret", Text, nullable=False),
    sa.Column("created_at", When, nullable=False),
    sa.Column("updated_at", When, nullable=False),
    sa.PrimaryKeyConstraint("account_id", "id"),
)

login_links = sa.Table(
    "login_links",
    metadata,
    sa.Column("code_hash", Text, nullable=False),
    sa.Column("account_id", Id, nullable=False),
    sa.Column("member_id", Id, nullable=False),
    sa.Column("created_at", When, nullable=False),
    sa.Column("expires_at", When, nullable=False),
    sa.Column("used_at", When, nullable=True),
    sa.PrimaryKeyConstraint("code_hash"),
    sa.Index(None, "expires_at"),
)

# Children before parents: the order in which to empty the tables.
ALL_TABLES = (
    webhooks,
    login_links,
    stream_events,
    stream_heads,
    presence,
    policies,
    timeline,
    deliveries,
    handoffs,
    sessions,
    members,
)
