"""The outbox (deliveries and their leases) and the timeline.

A lease is one statement: UPDATE … WHERE (account_id, id) IN (SELECT … FOR UPDATE SKIP LOCKED)
RETURNING. On PostgreSQL concurrent workers skip each other's rows instead of waiting on them; on
SQLite the unit of work already holds the only write lock, so the same statement is exclusive.

What runs for every escalation and every batch is built once with bound parameters (see
handoff_sql.repositories).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from attrs import evolve
from sqlalchemy.dialects import postgresql

from handoff_core.model import (
    Delivery,
    DeliveryStatus,
    HandoffStatus,
    NoticeKind,
    TimelineEvent,
)
from handoff_core.ports import Deliveries, Stream, Timeline
from handoff_core.stream import StreamEvent
from handoff_sql import rows
from handoff_sql.repositories import SqlRepository
from handoff_sql.statements import upsert_insert
from handoff_sql.tables import (
    PUSH_CHANNEL,
    UtcDateTime,
    deliveries,
    handoffs,
    stream_events,
    stream_heads,
    timeline,
)

CANCELLED_REASON = "the escalation was closed"
OUTCOME_COLUMNS = ("status", "attempts", "last_error", "sent_at", "next_attempt_at", "confirm_by")

# RETURNING makes SQLAlchemy send a batch as one multi-row INSERT ("insertmanyvalues"), where a
# plain executemany runs the INSERT once per row on the server (SQLite).
_ADD_DELIVERIES = sa.insert(deliveries).returning(deliveries.c.id)
# PostgreSQL: one array per column, unnested into rows. The statement's text is the same for any
# number of rows (prepared once per connection), and SQLAlchemy does not render and bind ~20
# values a row: an escalation's 20 deliveries took 0.82 ms of the process's CPU that way and
# 0.45 ms this way (measured in-process on these machines; issue 14's note).
_POSTGRESQL: sa.Dialect = postgresql.dialect()  # type: ignore[no-untyped-call]


def pg_type(column: sa.Column[Any]) -> str:
    """The PostgreSQL type a column's value is cast to where the statement cannot infer it."""
    if isinstance(column.type, UtcDateTime):
        return "TIMESTAMPTZ"
    if isinstance(column.type, sa.BigInteger):
        return "BIGINT"
    if isinstance(column.type, sa.Integer):
        return "INTEGER"
    if isinstance(column.type, sa.Boolean):
        return "BOOLEAN"
    return "JSON" if isinstance(column.type, sa.JSON) else "VARCHAR"


def _pg_array(column: sa.Column[Any]) -> str:
    """The PostgreSQL array type a column's values travel in (JSON as text, cast on insert)."""
    return "TEXT[]" if isinstance(column.type, sa.JSON) else f"{pg_type(column)}[]"


_ADD_DELIVERIES_UNNEST = sa.text(
    "INSERT INTO deliveries ({names}) SELECT {picks} FROM unnest({arrays}) AS r({names})".format(
        names=", ".join(c.name for c in deliveries.c),
        picks=", ".join(
            f"CAST(r.{c.name} AS JSON)" if isinstance(c.type, sa.JSON) else f"r.{c.name}"
            for c in deliveries.c
        ),
        arrays=", ".join(f"CAST(:{c.name} AS {_pg_array(c)})" for c in deliveries.c),
    )
)
# A constant, not a bound parameter, so that the partial indexes apply.
_PUSH = sa.literal_column(f"deliveries.{PUSH_CHANNEL}", sa.Boolean)
_ADD_EVENTS = sa.insert(timeline).returning(timeline.c.id, sort_by_parameter_order=True)
_ADD_STREAM_EVENTS = sa.insert(stream_events)
# The outcome of a group of rows still leased by `token`: which ones were is what it returns.
_RECORD = (
    sa.update(deliveries)
    .where(
        deliveries.c.account_id == sa.bindparam("b_account_id"),
        deliveries.c.id.in_(sa.bindparam("b_ids", expanding=True)),
        deliveries.c.leased_by == sa.bindparam("b_token"),
    )
    .values(
        {
            **{name: sa.bindparam(f"b_{name}") for name in OUTCOME_COLUMNS},
            "leased_by": None,
            "leased_until": None,
        }
    )
    .returning(deliveries.c.id)
)

_CANCEL = (
    sa.update(deliveries)
    .where(
        deliveries.c.account_id == sa.bindparam("w_account_id"),
        deliveries.c.handoff_id == sa.bindparam("w_handoff_id"),
        deliveries.c.status == DeliveryStatus.PENDING,
        deliveries.c.kind.in_(sa.bindparam("kinds", expanding=True)),
        sa.or_(
            deliveries.c.leased_until.is_(None),
            deliveries.c.leased_until <= sa.bindparam("at", type_=deliveries.c.leased_until.type),
        ),
    )
    .values(
        status=DeliveryStatus.CANCELLED,
        last_error=CANCELLED_REASON,
        leased_by=None,
        leased_until=None,
    )
)


@functools.cache
def _lease(by_account: bool, by_handoff: bool) -> Any:
    """The lease statement, with or without an account and a handoff to keep to."""
    now = sa.bindparam("now", type_=deliveries.c.next_attempt_at.type)
    conditions: list[Any] = [
        deliveries.c.status == DeliveryStatus.PENDING,
        deliveries.c.next_attempt_at <= now,
        sa.or_(deliveries.c.leased_until.is_(None), deliveries.c.leased_until <= now),
    ]
    if by_account:
        conditions.append(deliveries.c.account_id == sa.bindparam("w_account_id"))
    if by_handoff:
        conditions.append(deliveries.c.handoff_id == sa.bindparam("w_handoff_id"))
    due = (
        sa.select(deliveries.c.account_id, deliveries.c.id)
        .where(*conditions)
        .order_by(deliveries.c.next_attempt_at, deliveries.c.id)
        .limit(sa.bindparam("limit", type_=sa.Integer))
        .with_for_update(skip_locked=True)
    )
    return (
        sa.update(deliveries)
        .where(sa.tuple_(deliveries.c.account_id, deliveries.c.id).in_(due))
        .values(leased_by=sa.bindparam("w_owner"), leased_until=sa.bindparam("w_until"))
        .returning(*deliveries.c)
    )


@functools.cache
def _bump_head(dialect: str) -> Any:
    """Add `head` to the account's stream head (a new row starts there); returns the new head."""
    insert = upsert_insert(dialect, stream_heads)
    return (
        insert.values(account_id=sa.bindparam("account_id"), head=sa.bindparam("head"), floor=0)
        .on_conflict_do_update(
            index_elements=[stream_heads.c.account_id],
            set_={"head": stream_heads.c.head + insert.excluded.head},
        )
        .returning(stream_heads.c.head)
    )


def bind_array(column: sa.Column[Any], values: Sequence[Any]) -> list[Any]:
    """A column's values, one per row, as its type binds each on PostgreSQL (the column types'
    own rules: aware UTC times, enum values); JSON as the text sa.JSON(none_as_null=True)
    would send."""
    kind = column.type
    if isinstance(kind, sa.JSON):
        return [None if x is None else json.dumps(x) for x in values]
    if isinstance(kind, sa.TypeDecorator):
        # An escalation's rows share most values (its account, times, kind, status): each
        # distinct value is bound once.
        bound: dict[Any, Any] = {}
        out = []
        for x in values:
            if x not in bound:
                bound[x] = kind.process_bind_param(x, _POSTGRESQL)
            out.append(bound[x])
        return out
    return list(values)


def _columns(
    table: sa.Table, names: Sequence[str], values: Sequence[Any], prefix: str = ""
) -> dict[str, Any]:
    """Rows (`values`, dicts by column name) as one array per column of `names`, each bound
    as `<prefix><name>`."""
    return {
        f"{prefix}{name}": bind_array(table.c[name], [v[name] for v in values]) for name in names
    }


class SqlDeliveries(SqlRepository, Deliveries):
    @staticmethod
    def arrays(batch: Sequence[Delivery], prefix: str = "") -> dict[str, Any]:
        """PostgreSQL: the rows as one bound array per column, named `<prefix><column>`."""
        values = [rows.delivery_values(d) for d in batch]
        return _columns(deliveries, [c.name for c in deliveries.c], values, prefix)

    async def add_many(self, batch: Sequence[Delivery]) -> None:
        """One INSERT of every row (see _ADD_DELIVERIES and, on PostgreSQL,
        _ADD_DELIVERIES_UNNEST)."""
        if not batch:
            return
        if self._uow.dialect == "postgresql":
            arrays = self.arrays(batch)
            await self._uow.execute(_ADD_DELIVERIES_UNNEST, arrays, doing="add deliveries")
            return
        await self._uow.execute(
            _ADD_DELIVERIES, [rows.delivery_values(d) for d in batch], doing="add deliveries"
        )

    async def for_handoff(self, account_id: str, handoff_id: str) -> list[Delivery]:
        query = (
            sa.select(deliveries)
            .where(deliveries.c.account_id == account_id, deliveries.c.handoff_id == handoff_id)
            .order_by(
                deliveries.c.created_at,
                deliveries.c.recipient_id,
                deliveries.c.channel,
                deliveries.c.id,
            )
        )
        return [rows.delivery_of(r) for r in (await self._uow.execute(query)).mappings()]

    async def cancel_pending(
        self, account_id: str, handoff_id: str, kinds: Collection[NoticeKind], at: datetime
    ) -> int:
        params = {
            "w_account_id": account_id,
            "w_handoff_id": handoff_id,
            "kinds": [NoticeKind(k) for k in kinds],
            "at": at,
        }
        result = await self._uow.execute(_CANCEL, params, doing="cancel deliveries")
        return int(result.rowcount)

    async def lease_due(
        self,
        now: datetime,
        *,
        owner: str,
        until: datetime,
        limit: int,
        account_id: str | None = None,
        handoff_id: str | None = None,
    ) -> list[Delivery]:
        statement = _lease(account_id is not None, handoff_id is not None)
        params = {"now": now, "w_owner": owner, "w_until": until, "limit": limit}
        if account_id is not None:
            params["w_account_id"] = account_id
        if handoff_id is not None:
            params["w_handoff_id"] = handoff_id
        result = await self._uow.execute(statement, params, doing="lease deliveries")
        leased = [rows.delivery_of(r) for r in result.mappings()]
        leased.sort(key=lambda d: (d.next_attempt_at, d.id))
        return leased

    async def record(self, delivery: Delivery) -> bool:
        statement = (
            sa.update(deliveries)
            .where(
                deliveries.c.account_id == delivery.account_id,
                deliveries.c.id == delivery.id,
                deliveries.c.leased_by.is_not_distinct_from(delivery.leased_by),
            )
            .values(**rows.delivery_outcome(delivery), leased_by=None, leased_until=None)
            .returning(deliveries.c.id)
        )
        result = await self._uow.execute(statement, doing="record a delivery")
        return result.first() is not None

    async def record_many(self, batch: Sequence[Delivery]) -> set[str]:
        """One UPDATE … RETURNING per distinct outcome, for the rows still leased by their
        holder (a batch sent at once is one group: same status, time and attempt); the ids it
        returns are the rows recorded."""
        groups: dict[tuple[Any, ...], list[str]] = {}
        for d in batch:
            if d.leased_by is None:
                continue
            outcome = rows.delivery_outcome(d)
            key = (d.account_id, d.leased_by, *(outcome[name] for name in OUTCOME_COLUMNS))
            groups.setdefault(key, []).append(d.id)
        held: set[str] = set()
        for (account_id, token, *values), ids in groups.items():
            params = {
                "b_account_id": account_id,
                "b_ids": ids,
                "b_token": token,
                **{f"b_{name}": v for name, v in zip(OUTCOME_COLUMNS, values, strict=True)},
            }
            held.update(
                (await self._uow.execute(_RECORD, params, doing="record deliveries")).scalars()
            )
        return held

    async def mark_seen(
        self, account_id: str, recipient_id: str, up_to_seq: int, at: datetime
    ) -> int:
        statement = (
            sa.update(deliveries)
            .where(
                deliveries.c.account_id == account_id,
                deliveries.c.recipient_id == recipient_id,
                deliveries.c.seen_at.is_(None),
                _PUSH,
                deliveries.c.stream_seq <= up_to_seq,
                deliveries.c.status.in_([DeliveryStatus.PENDING, DeliveryStatus.SENT]),
            )
            .values(seen_at=at)
        )
        result = await self._uow.execute(statement, doing="mark pushes seen")
        return int(result.rowcount)

    async def take_unconfirmed(self, now: datetime, limit: int, reason: str) -> list[Delivery]:
        unseen = [
            _PUSH,
            deliveries.c.status == DeliveryStatus.SENT,
            deliveries.c.seen_at.is_(None),
            deliveries.c.confirm_by <= now,
        ]
        still_open = (
            sa.select(handoffs.c.id)
            .where(
                handoffs.c.account_id == deliveries.c.account_id,
                handoffs.c.id == deliveries.c.handoff_id,
                handoffs.c.status == HandoffStatus.OPEN,
            )
            .exists()
        )
        due = (
            sa.select(deliveries.c.account_id, deliveries.c.id)
            .where(*unseen, still_open)
            .order_by(deliveries.c.confirm_by, deliveries.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True, of=deliveries)
        )
        statement = (
            sa.update(deliveries)
            .where(sa.tuple_(deliveries.c.account_id, deliveries.c.id).in_(due), *unseen)
            .values(status=DeliveryStatus.UNCONFIRMED, last_error=rows.storable_text(reason))
            .returning(*deliveries.c)
        )
        result = await self._uow.execute(statement, doing="take unseen pushes")
        return [rows.delivery_of(r) for r in result.mappings()]

    async def release(self, owner: str) -> int:
        statement = (
            sa.update(deliveries)
            .where(deliveries.c.leased_by == owner, deliveries.c.status == DeliveryStatus.PENDING)
            .values(leased_by=None, leased_until=None)
        )
        result = await self._uow.execute(statement, doing="release leases")
        return int(result.rowcount)


class SqlTimeline(SqlRepository, Timeline):
    async def add(self, event: TimelineEvent) -> TimelineEvent:
        statement = sa.insert(timeline).values(rows.event_values(event)).returning(timeline.c.id)
        new_id = (await self._uow.execute(statement, doing="add a timeline event")).scalar_one()
        return evolve(event, id=int(new_id), data=rows.copied(event.data))

    async def add_many(self, events: Sequence[TimelineEvent]) -> list[TimelineEvent]:
        """One INSERT for the batch, its ids returned in the order of the events (each with
        the data it was given: the caller built it for this call, so it is not copied)."""
        if not events:
            return []
        result = await self._uow.execute(
            _ADD_EVENTS, [rows.event_values(e) for e in events], doing="add timeline events"
        )
        ids = [int(i) for i in result.scalars()]
        return [evolve(e, id=i) for e, i in zip(events, ids, strict=True)]

    async def _events(self, query: sa.Select[Any]) -> list[TimelineEvent]:
        return [rows.event_of(r) for r in (await self._uow.execute(query)).mappings()]

    async def for_session(self, account_id: str, session_id: str) -> list[TimelineEvent]:
        return await self._events(
            sa.select(timeline)
            .where(timeline.c.account_id == account_id, timeline.c.session_id == session_id)
            .order_by(timeline.c.id)
        )

    async def first(self, account_id: str, handoff_id: str, type: str) -> TimelineEvent | None:
        found = await self._events(
            sa.select(timeline)
            .where(
                timeline.c.account_id == account_id,
                timeline.c.handoff_id == handoff_id,
                timeline.c.type == str(type),
            )
            .order_by(timeline.c.id)
            .limit(1)
        )
        return found[0] if found else None

    async def after(
        self, account_id: str, after_id: int, types: Collection[str], limit: int
    ) -> list[TimelineEvent]:
        return await self._events(
            sa.select(timeline)
            .where(
                timeline.c.account_id == account_id,
                timeline.c.id > after_id,
                timeline.c.type.in_([str(t) for t in types]),
            )
            .order_by(timeline.c.id)
            .limit(limit)
        )


# PostgreSQL: the head bumped and the events numbered from it in one statement (one round trip
# instead of two; a data-modifying WITH runs to completion whether or not it is read). The
# events go in as one array per column, in order: seq = new head - count + position.
_APPEND_STREAM = sa.text(
    "WITH bumped AS (INSERT INTO stream_heads (account_id, head, floor) VALUES (:account_id, "
    ":count, 0) ON CONFLICT (account_id) DO UPDATE SET head = stream_heads.head + excluded.head "
    "RETURNING head), "
    "added AS (INSERT INTO stream_events (account_id, seq, type, handoff_id, audience, data, at) "
    "SELECT :account_id, bumped.head - :count + r.n, r.type, r.handoff_id, "
    "CAST(r.audience AS JSON), CAST(r.data AS JSON), r.at FROM bumped, "
    "unnest(CAST(:type AS VARCHAR[]), CAST(:handoff_id AS VARCHAR[]), CAST(:audience AS TEXT[]), "
    "CAST(:data AS TEXT[]), CAST(:at AS TIMESTAMPTZ[])) WITH ORDINALITY "
    "AS r(type, handoff_id, audience, data, at, n)) "
    "SELECT head FROM bumped"
)


def numbered(group: Sequence[StreamEvent], head: int) -> list[StreamEvent]:
    """The account's new events numbered up to `head`, the head after the bump."""
    first = head - len(group) + 1
    return [evolve(e, seq=first + i, data=rows.copied(e.data)) for i, e in enumerate(group)]


class SqlStream(SqlRepository, Stream):
    """The stream log. `append` bumps the account's head row with one upsert, which holds that
    row until the transaction ends: on PostgreSQL a second writer of the same account waits for
    the first to commit (or roll back) before it is numbered, so ids follow commit order; SQLite
    has one writer at a time anyway."""

    async def append(self, events: Sequence[StreamEvent]) -> list[StreamEvent]:
        stored: list[StreamEvent] = []
        by_account: dict[str, list[StreamEvent]] = {}
        for event in events:
            by_account.setdefault(event.account_id, []).append(event)
        for account_id, group in by_account.items():
            if self._uow.dialect == "postgresql":
                stored.extend(await self._append_at_once(account_id, group))
                continue
            bump = _bump_head(self._uow.dialect)
            params = {"account_id": account_id, "head": len(group)}
            bumped = await self._uow.execute(bump, params, doing="number stream events")
            this_account = numbered(group, int(bumped.scalar_one()))
            await self._uow.execute(
                _ADD_STREAM_EVENTS,
                [rows.stream_values(e) for e in this_account],
                doing="add stream events",
            )
            stored.extend(this_account)
        return stored

    async def _append_at_once(
        self, account_id: str, group: Sequence[StreamEvent]
    ) -> list[StreamEvent]:
        values = [rows.stream_values(e) for e in group]
        params = {
            "account_id": account_id,
            "count": len(group),
            **_columns(stream_events, ("type", "handoff_id", "audience", "data", "at"), values),
        }
        bumped = await self._uow.execute(_APPEND_STREAM, params, doing="add stream events")
        return numbered(group, int(bumped.scalar_one()))

    async def after(self, account_id: str, after_seq: int, limit: int) -> list[StreamEvent]:
        query = (
            sa.select(stream_events)
            .where(stream_events.c.account_id == account_id, stream_events.c.seq > after_seq)
            .order_by(stream_events.c.seq)
            .limit(limit)
        )
        return [rows.stream_of(r) for r in (await self._uow.execute(query)).mappings()]

    async def bounds(self, account_id: str) -> tuple[int, int]:
        query = sa.select(stream_heads.c.floor, stream_heads.c.head).where(
            stream_heads.c.account_id == account_id
        )
        row = (await self._uow.execute(query)).mappings().first()
        return (int(row["floor"]), int(row["head"])) if row is not None else (0, 0)

    async def prune(self, before: datetime) -> int:
        query = (
            sa.select(stream_events.c.account_id, sa.func.max(stream_events.c.seq).label("cut"))
            .where(stream_events.c.at < before)
            .group_by(stream_events.c.account_id)
        )
        cutoffs = [
            (r["account_id"], int(r["cut"])) for r in (await self._uow.execute(query)).mappings()
        ]
        pruned = 0
        for account_id, cutoff in cutoffs:
            result = await self._uow.execute(
                sa.delete(stream_events).where(
                    stream_events.c.account_id == account_id, stream_events.c.seq <= cutoff
                ),
                doing="prune the stream",
            )
            pruned += int(result.rowcount)
            await self._uow.execute(
                sa.update(stream_heads)
                .where(stream_heads.c.account_id == account_id, stream_heads.c.floor < cutoff)
                .values(floor=cutoff),
                doing="prune the stream",
            )
        return pruned
