"""The outbox (deliveries and their leases) and the timeline.

A lease is one statement: UPDATE … WHERE (account_id, id) IN (SELECT … FOR UPDATE SKIP LOCKED)
RETURNING. On PostgreSQL concurrent workers skip each other's rows instead of waiting on them; on
SQLite the unit of work already holds the only write lock, so the same statement is exclusive.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from attrs import evolve

from handoff_core.model import Delivery, DeliveryStatus, NoticeKind, TimelineEvent
from handoff_sql import rows
from handoff_sql.repositories import SqlRepository
from handoff_sql.tables import deliveries, timeline

CANCELLED_REASON = "the escalation was closed"
OUTCOME_COLUMNS = ("status", "attempts", "last_error", "sent_at", "next_attempt_at")


class SqlDeliveries(SqlRepository):
    async def add_many(self, batch: Sequence[Delivery]) -> None:
        """One executemany of one INSERT: the driver sends the rows together."""
        if not batch:
            return
        await self._uow.execute(
            sa.insert(deliveries), [rows.delivery_values(d) for d in batch], doing="add deliveries"
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
        statement = (
            sa.update(deliveries)
            .where(
                deliveries.c.account_id == account_id,
                deliveries.c.handoff_id == handoff_id,
                deliveries.c.status == DeliveryStatus.PENDING,
                deliveries.c.kind.in_([NoticeKind(k) for k in kinds]),
            )
            .values(
                status=DeliveryStatus.CANCELLED,
                last_error=CANCELLED_REASON,
                leased_by=None,
                leased_until=None,
            )
        )
        result = await self._uow.execute(statement, doing="cancel deliveries")
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
        conditions: list[Any] = [
            deliveries.c.status == DeliveryStatus.PENDING,
            deliveries.c.next_attempt_at <= now,
            sa.or_(deliveries.c.leased_until.is_(None), deliveries.c.leased_until <= now),
        ]
        if account_id is not None:
            conditions.append(deliveries.c.account_id == account_id)
        if handoff_id is not None:
            conditions.append(deliveries.c.handoff_id == handoff_id)
        due = (
            sa.select(deliveries.c.account_id, deliveries.c.id)
            .where(*conditions)
            .order_by(deliveries.c.next_attempt_at, deliveries.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        statement = (
            sa.update(deliveries)
            .where(sa.tuple_(deliveries.c.account_id, deliveries.c.id).in_(due))
            .values(leased_by=owner, leased_until=until)
            .returning(*deliveries.c)
        )
        result = await self._uow.execute(statement, doing="lease deliveries")
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
        """Two statements for a whole batch: lock the rows still leased by their holder, then one
        executemany of the outcomes for those."""
        if not batch:
            return set()
        held: set[str] = set()
        groups: dict[tuple[str, str | None], list[str]] = {}
        for d in batch:
            groups.setdefault((d.account_id, d.leased_by), []).append(d.id)
        for (account_id, token), ids in groups.items():
            if token is None:
                continue
            query = (
                sa.select(deliveries.c.id)
                .where(
                    deliveries.c.account_id == account_id,
                    deliveries.c.id.in_(ids),
                    deliveries.c.leased_by == token,
                )
                .with_for_update()
            )
            held.update((await self._uow.execute(query, doing="check leases")).scalars())
        mine = [d for d in batch if d.id in held]
        if mine:
            statement = (
                sa.update(deliveries)
                .where(
                    deliveries.c.account_id == sa.bindparam("b_account_id"),
                    deliveries.c.id == sa.bindparam("b_id"),
                )
                .values(
                    {
                        **{name: sa.bindparam(f"b_{name}") for name in OUTCOME_COLUMNS},
                        "leased_by": None,
                        "leased_until": None,
                    }
                )
            )
            params = [
                {
                    "b_account_id": d.account_id,
                    "b_id": d.id,
                    **{f"b_{k}": v for k, v in rows.delivery_outcome(d).items()},
                }
                for d in mine
            ]
            await self._uow.execute(statement, params, doing="record deliveries")
        return held

    async def release(self, owner: str) -> int:
        statement = (
            sa.update(deliveries)
            .where(deliveries.c.leased_by == owner, deliveries.c.status == DeliveryStatus.PENDING)
            .values(leased_by=None, leased_until=None)
        )
        result = await self._uow.execute(statement, doing="release leases")
        return int(result.rowcount)


class SqlTimeline(SqlRepository):
    async def add(self, event: TimelineEvent) -> TimelineEvent:
        statement = sa.insert(timeline).values(rows.event_values(event)).returning(timeline.c.id)
        new_id = (await self._uow.execute(statement, doing="add a timeline event")).scalar_one()
        return evolve(event, id=int(new_id), data=rows.copied(event.data))

    async def add_many(self, events: Sequence[TimelineEvent]) -> list[TimelineEvent]:
        """One INSERT for the batch, its ids returned in the order of the events."""
        if not events:
            return []
        statement = sa.insert(timeline).returning(timeline.c.id, sort_by_parameter_order=True)
        result = await self._uow.execute(
            statement, [rows.event_values(e) for e in events], doing="add timeline events"
        )
        ids = [int(i) for i in result.scalars()]
        return [evolve(e, id=i, data=rows.copied(e.data)) for e, i in zip(events, ids, strict=True)]

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
