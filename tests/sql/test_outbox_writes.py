"""What migration 0005 promises of the outbox on PostgreSQL: a lease touches no index (a HOT
update), and the queries for pushes use the indexes that hold pushes only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from tests.support.databases import empty

from handoff_core.model import EscalationPolicy, Handoff, Member, Role, Session
from handoff_core.policy import plan
from handoff_sql import SqlDatabase
from handoff_sql.outbox import SqlDeliveries

pytestmark = pytest.mark.postgres

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


async def _escalation(db: SqlDatabase, seniors: int, online: int) -> Handoff:
    """An escalation to `seniors` seniors, the first `online` of them by push, queued."""
    team = [
        Member.register(account_id="acme", id=f"m{i}", email=f"m{i}@acme.test", name=f"M{i}",
                        role=Role.ENGINEER)
        for i in range(seniors + 1)
    ]  # fmt: skip
    session = Session.start(id="s1", owner=team[0], problem_summary="VPN", context={}, now=NOW)
    handoff = session.escalate(
        team[0], handoff_id="h1", notes="", policy=EscalationPolicy(), now=NOW
    )
    pushed = {m.id for m in team[1 : online + 1]}
    async with db() as uow:
        for member in team:
            await uow.members.save(member)
        await uow.sessions.add(session)
        await uow.handoffs.add(handoff)
        await uow.deliveries.add_many(plan(handoff, team, pushed, EscalationPolicy(), NOW))
        await uow.commit()
    return handoff


async def _this_transaction(uow: Any) -> dict[str, int]:
    """Row writes to deliveries so far in this transaction (PostgreSQL counts them at once)."""
    row = (
        await uow.execute(
            sa.text(
                "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_xact_user_tables "
                "WHERE relname = 'deliveries'"
            )
        )
    ).one()
    return {"updated": int(row.n_tup_upd), "hot": int(row.n_tup_hot_upd)}


async def test_taking_a_lease_touches_no_index(pg_url: str) -> None:
    """A lease changes no indexed column, so PostgreSQL rewrites the row on its own page (a HOT
    update) while the page has room; with the old index on leased_by it never could."""
    await empty(pg_url)
    db = SqlDatabase(pg_url)
    await db.start()
    try:
        await _escalation(db, seniors=4, online=0)
        async with db() as uow:
            leased = await uow.deliveries.lease_due(
                NOW, owner="w1", until=NOW + timedelta(minutes=5), limit=1
            )
            counts = await _this_transaction(uow)
            await uow.commit()
        assert len(leased) == 1
        assert counts == {"updated": 1, "hot": 1}
    finally:
        await db.close()


@pytest.mark.parametrize(
    ("statement", "index"),
    [
        ("mark_seen", "ix_deliveries_account_id_recipient_id_seen_at"),
        ("take_unconfirmed", "ix_deliveries_status_confirm_by"),
    ],
)
async def test_the_queries_for_pushes_use_the_push_only_indexes(
    pg_url: str, statement: str, index: str
) -> None:
    """With a generic plan (what a prepared statement gets after five runs), the partial index
    still applies: the queries say `channel = 'push'` as a constant."""
    await empty(pg_url)
    db = SqlDatabase(pg_url)
    await db.start()
    captured: list[str] = []

    @sa.event.listens_for(db.engine.sync_engine, "before_cursor_execute")
    def keep(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
        if sql.lstrip().upper().startswith(("UPDATE", "SELECT")) and "deliveries" in sql:
            captured.append(sql)

    try:
        await _escalation(db, seniors=30, online=10)
        async with db() as uow:
            assert isinstance(uow.deliveries, SqlDeliveries)
            if statement == "mark_seen":
                await uow.deliveries.mark_seen("acme", "m1", 10, NOW)
            else:
                await uow.deliveries.take_unconfirmed(NOW, 100, "unseen")
            await uow.rollback()
        sql = captured[-1]
        async with db.engine.connect() as conn:
            raw = (await conn.get_raw_connection()).driver_connection
            assert raw is not None
            count = len((await raw.prepare(sql)).get_parameters())
            await raw.execute("SET plan_cache_mode = force_generic_plan")
            await raw.execute(f"PREPARE pushes AS {sql}")
            rows = await raw.fetch(f"EXPLAIN EXECUTE pushes({', '.join(['NULL'] * count)})")
            await raw.execute("DEALLOCATE pushes; RESET plan_cache_mode")
            plan_text = "\n".join(str(r[0]) for r in rows)
        assert index in plan_text, plan_text
    finally:
        await db.close()
