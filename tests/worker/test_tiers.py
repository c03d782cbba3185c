"""SPEC §14 end to end on PostgreSQL with two `handoff worker` processes: every tier of every
escalation is told once (one conditional write decides which worker raises it), and an
escalation claimed before its later tiers came due tells nobody more."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import sqlalchemy as sa
from tests.worker.harness import (
    ACCOUNT,
    ESCALATOR,
    SinkServer,
    Store,
    WorkerProcess,
    add_team,
    escalate,
    eventually,
    worker_env,
)

from handoff_app.container import SystemClock
from handoff_core import HandoffService, MemberService
from handoff_sql import SqlDatabase
from handoff_sql.tables import deliveries, handoffs, timeline

ENGINEERS, ADMINS, OWNERS = 6, 3, 2
TIERS = [
    {"roles": ["engineer"], "after_seconds": 0},
    {"roles": ["admin"], "after_seconds": 1},
    {"roles": ["owner"], "after_seconds": 2},
]


async def _prepare(url: str) -> None:
    await add_team(url, ENGINEERS)
    db = SqlDatabase(url)
    try:
        members = MemberService(db, SystemClock())
        for prefix, role, n in (("a", "admin", ADMINS), ("o", "owner", OWNERS)):
            for i in range(n):
                await members.upsert(
                    ACCOUNT, f"{prefix}{i}", email=f"{prefix}{i}@acme.test", name=role, role=role
                )
        await members.set_policy(
            ACCOUNT, {"tiers": TIERS, "max_reminders": 0, "push_confirm_seconds": 0}
        )
    finally:
        await db.close()


async def _claim(url: str, handoff_id: str) -> None:
    db = SqlDatabase(url)
    try:
        await HandoffService(db, SystemClock()).claim(ACCOUNT, "s0000", handoff_id)
    finally:
        await db.close()


async def test_two_workers_tell_each_tier_once_and_nothing_after_a_claim(
    postgres_url: str,
    start_sink: Callable[..., SinkServer],
    start_worker: Callable[..., WorkerProcess],
    open_store: Callable[[str], Store],
) -> None:
    await _prepare(postgres_url)
    store = open_store(postgres_url)
    server = start_sink()
    workers = [
        start_worker(worker_env(postgres_url, server.url, HANDOFF_WORKER_BATCH="7"), name)
        for name in ("left", "right")
    ]
    for worker in workers:
        await worker.started()

    ids = await escalate(postgres_url, 6)
    claimed, still_open = ids[:2], ids[2:]
    for handoff_id in claimed:  # within a second: before their second tier is due
        await _claim(postgres_url, handoff_id)

    async def settled() -> bool:
        reached = await store._select(
            sa.select(handoffs.c.id, handoffs.c.tiers_reached).where(handoffs.c.id.in_(still_open))
        )
        pending = await store.count(deliveries, status="pending")
        return all(r["tiers_reached"] == 3 for r in reached) and pending == 0

    await eventually(settled, timeout=30, what="every open escalation reached its third tier")

    rows = await store._select(sa.select(deliveries))
    sent_ids = server.sink.message_ids()
    assert all(n == 1 for n in sent_ids.values()), "a message went out twice"
    sent = {f"<{r['id']}@handoff>" for r in rows if str(r["status"]) == "sent"}
    assert set(sent_ids) == sent

    seniors = (
        {f"s{n:04d}" for n in range(ENGINEERS)}
        | {f"a{i}" for i in range(ADMINS)}
        | {f"o{i}" for i in range(OWNERS)}
    )
    for handoff_id in still_open:
        told = Counter(
            r["recipient_id"]
            for r in rows
            if r["handoff_id"] == handoff_id and str(r["status"]) == "sent"
        )
        assert told == Counter(seniors), handoff_id  # each senior once, the escalator never
    late = {f"a{i}" for i in range(ADMINS)} | {f"o{i}" for i in range(OWNERS)}
    for handoff_id in claimed:
        mine = [r for r in rows if r["handoff_id"] == handoff_id]
        assert not [r for r in mine if r["recipient_id"] in late], "told after the claim"
        assert all(str(r["status"]) in ("sent", "cancelled") for r in mine)

    reached = await store._select(
        sa.select(timeline.c.handoff_id, timeline.c.data).where(
            timeline.c.type == "escalation.tier_reached"
        )
    )
    per_handoff = Counter((r["handoff_id"], r["data"]["tier"]) for r in reached)
    assert per_handoff == Counter({(h, t): 1 for h in still_open for t in (2, 3)})
    rows_of = await store._select(sa.select(handoffs.c.id, handoffs.c.tiers_reached))
    assert {r["id"]: r["tiers_reached"] for r in rows_of if r["id"] in claimed} == {
        h: 1 for h in claimed
    }
    assert ESCALATOR not in {r["recipient_id"] for r in rows}
