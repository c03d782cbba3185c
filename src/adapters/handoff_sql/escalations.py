"""An escalation's reads and its writes, each one statement on PostgreSQL.

An escalation used to cost eleven statements inside its transaction (four reads, then the
handoff, the session, the timeline event, the webhook endpoints, the stream and the deliveries,
each a round trip through SQLAlchemy and asyncpg). Under a storm the request's CPU went mostly to
those round trips (issue 14: py-spy, and /work's bench B6), so on PostgreSQL:

- `inputs` reads the session, the policy, the account's current members (as one JSON array) and
  whether the account has webhook endpoints in one SELECT, from a one-row driving table so that
  it answers even when there is no such session;
- `add` writes the handoff, the session, the timeline event, the stream event and the deliveries
  in one statement of data-modifying CTEs. They all see the same snapshot and the foreign keys
  are checked at the statement's end, when every row is in. The event and the deliveries are
  drawn from the handoff's CTE, so a handoff refused (its id or Idempotency-Key taken) adds no
  row that would point at it, and `add` can say which refusal it was. The stream head's row
  stays locked from this statement to the commit, as `SqlStream.append` holds it, so the
  stream is still numbered in commit order.

SQLite, and an account with webhook endpoints (their deliveries are planned from the numbered
stream event), go repository by repository (`handoff_core.ports.add_by_parts`).
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from attrs import evolve
from sqlalchemy.dialects.postgresql import aggregate_order_by

from handoff_core.errors import Conflict
from handoff_core.model import Channel, Member, Role, TimelineEvent
from handoff_core.ports import EscalationInputs, Escalations, NewEscalation
from handoff_core.stream import StreamEvent
from handoff_sql import rows
from handoff_sql.outbox import SqlDeliveries, bind_array, numbered, pg_type
from handoff_sql.repositories import SESSION_COLUMNS, SqlHandoffs, SqlRepository, SqlWebhooks
from handoff_sql.statements import Statements
from handoff_sql.tables import (
    deliveries,
    handoffs,
    members,
    policies,
    sessions,
    stream_events,
    timeline,
    webhooks,
)

_ACCOUNT: sa.BindParameter[str] = sa.bindparam("account_id", type_=sa.String())
_CURRENT_MEMBERS = (
    sa.select(
        sa.func.coalesce(
            sa.func.json_agg(
                aggregate_order_by(
                    sa.func.json_build_array(
                        members.c.id, members.c.email, members.c.name, members.c.role,
                        members.c.active,
                    ),
                    members.c.id,
                )
            ),
            sa.text("'[]'::json"),
        )
    )
    .where(members.c.account_id == _ACCOUNT, members.c.deleted_at.is_(None))
    .scalar_subquery()
)  # fmt: skip
_HOOKED = sa.exists().where(webhooks.c.account_id == _ACCOUNT)
_ONE = sa.select(sa.literal(1).label("one")).subquery("one")
_INPUTS = sa.select(
    *sessions.c,
    policies.c.policy.label("account_policy"),
    _CURRENT_MEMBERS.label("current_members"),
    _HOOKED.label("hooked"),
).select_from(
    _ONE.outerjoin(
        sessions,
        sa.and_(sessions.c.account_id == _ACCOUNT, sessions.c.id == sa.bindparam("session_id")),
    ).outerjoin(policies, policies.c.account_id == _ACCOUNT)
)


def _values(table: sa.Table, prefix: str, names: list[str]) -> str:
    """`CAST(:<prefix><name> AS <type>), …`: the placeholders of one row of `table`."""
    return ", ".join(f"CAST(:{prefix}{n} AS {pg_type(table.c[n])})" for n in names)


_HANDOFF_NAMES = [c.name for c in handoffs.c]
_EVENT_NAMES = [c.name for c in timeline.c if c.name != "id"]
_STREAM_NAMES = ["type", "handoff_id", "audience", "data", "at"]
_DELIVERY_NAMES = [c.name for c in deliveries.c]
_PUSH = Channel.PUSH.value
_ADD = sa.text(
    f"WITH h AS (INSERT INTO handoffs ({', '.join(_HANDOFF_NAMES)}) "
    f"VALUES ({_values(handoffs, 'h_', _HANDOFF_NAMES)}) ON CONFLICT DO NOTHING RETURNING 1), "
    "s AS (UPDATE sessions SET "
    + ", ".join(f"{n} = CAST(:s_{n} AS {pg_type(sessions.c[n])})" for n in SESSION_COLUMNS)
    + ", version = CAST(:s_version AS INTEGER) WHERE account_id = CAST(:w_account_id AS VARCHAR)"
    " AND id = CAST(:w_id AS VARCHAR) AND version = CAST(:w_version AS INTEGER) RETURNING 1), "
    f"t AS (INSERT INTO timeline ({', '.join(_EVENT_NAMES)}) "
    f"SELECT {_values(timeline, 't_', _EVENT_NAMES)} FROM h RETURNING id), "
    "bumped AS (INSERT INTO stream_heads (account_id, head, floor) VALUES "
    "(CAST(:h_account_id AS VARCHAR), 1, 0) ON CONFLICT (account_id) DO UPDATE "
    "SET head = stream_heads.head + 1 RETURNING head), "
    f"added AS (INSERT INTO stream_events (account_id, seq, {', '.join(_STREAM_NAMES)}) "
    f"SELECT CAST(:h_account_id AS VARCHAR), bumped.head, "
    f"{_values(stream_events, 'e_', _STREAM_NAMES)} FROM bumped), "
    f"d AS (INSERT INTO deliveries ({', '.join(_DELIVERY_NAMES)}) SELECT "
    + ", ".join(
        f"CASE WHEN r.channel = '{_PUSH}' THEN bumped.head ELSE r.stream_seq END"
        if n == "stream_seq"
        else f"CAST(r.{n} AS JSON)"
        if isinstance(deliveries.c[n].type, sa.JSON)
        else f"r.{n}"
        for n in _DELIVERY_NAMES
    )
    + " FROM h, bumped, unnest("
    + ", ".join(f"CAST(:d_{n} AS {pg_type(deliveries.c[n])}[])" for n in _DELIVERY_NAMES)
    + f") AS r({', '.join(_DELIVERY_NAMES)})) "
    "SELECT (SELECT count(*) FROM h) AS handoffs, (SELECT count(*) FROM s) AS sessions, "
    "(SELECT id FROM t) AS event_id, (SELECT head FROM bumped) AS head"
)


def _member(account_id: str, item: list[Any]) -> Member:
    member_id, email, name, role, active = item
    return Member(
        id=member_id,
        account_id=account_id,
        email=email,
        name=name,
        role=Role(role),
        active=bool(active),
        deleted_at=None,
    )


def _scalars(table: sa.Table, prefix: str, values: dict[str, Any]) -> dict[str, Any]:
    """One row's values as bound parameters named `<prefix><column>`, each as its column's type
    binds it (the same rules as the array binding of handoff_sql.outbox)."""
    return {f"{prefix}{n}": bind_array(table.c[n], [v])[0] for n, v in values.items()}


class SqlEscalations(SqlRepository, Escalations):
    """One statement each on PostgreSQL; elsewhere `by_parts` (the repositories one by one)."""

    def __init__(self, uow: Statements, by_parts: Escalations) -> None:
        super().__init__(uow)
        self._by_parts = by_parts

    async def inputs(self, account_id: str, session_id: str) -> EscalationInputs:
        if self._uow.dialect != "postgresql":
            return await self._by_parts.inputs(account_id, session_id)
        params = {"account_id": account_id, "session_id": session_id}
        row = (await self._uow.execute(_INPUTS, params)).mappings().one()
        listed = row["current_members"]
        listed = json.loads(listed) if isinstance(listed, str) else listed
        hooked = row["hooked"]
        endpoints = await SqlWebhooks(self._uow).of_account(account_id) if hooked else []
        return EscalationInputs(
            session=rows.session_of(row) if row["id"] is not None else None,
            policy=rows.policy_of(row["account_policy"]),
            members=[_member(account_id, item) for item in listed],
            endpoints=endpoints,
        )

    async def add(self, escalation: NewEscalation) -> tuple[TimelineEvent, StreamEvent]:
        if self._uow.dialect != "postgresql":
            return await self._by_parts.add(escalation)
        handoff, session, event = escalation.handoff, escalation.session, escalation.event
        changed = rows.session_values(session)
        params = {
            **_scalars(handoffs, "h_", rows.handoff_values(handoff)),
            **_scalars(sessions, "s_", {n: changed[n] for n in SESSION_COLUMNS}),
            "s_version": session.version + 1,
            "w_account_id": session.account_id,
            "w_id": session.id,
            "w_version": session.version,
            **_scalars(timeline, "t_", {n: rows.event_values(event)[n] for n in _EVENT_NAMES}),
            **_scalars(
                stream_events,
                "e_",
                {n: rows.stream_values(escalation.notice)[n] for n in _STREAM_NAMES},
            ),
            **SqlDeliveries.arrays(escalation.deliveries, "d_"),
        }
        result = await self._uow.execute(_ADD, params, doing="add an escalation")
        written = result.mappings().one()
        if written["handoffs"] != 1:
            await SqlHandoffs(self._uow).refuse(handoff)
        if written["sessions"] != 1:
            raise Conflict(f"session {session.id} was changed by someone else; reload and retry")
        session.version += 1
        [streamed] = numbered([escalation.notice], int(written["head"]))
        return evolve(event, id=int(written["event_id"])), streamed
