"""50 claimers race for each of 20 escalations: exactly one wins every round, and every loser is
told who did (SPEC §4 rule 4, §9 B4)."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa

from handoff_core import AlreadyClaimed, Handoff, HandoffService, MemberService
from handoff_memory import ManualClock
from handoff_sql import SqlDatabase
from handoff_sql.tables import handoffs, sessions, timeline

CLAIMERS = 50
ROUNDS = 20


async def test_exactly_one_winner_every_round(sql_url: str) -> None:
    db = SqlDatabase(sql_url, pool_size=CLAIMERS, max_overflow=5)
    clock = ManualClock()
    service = HandoffService(db, clock)
    members = MemberService(db, clock)
    claimers = [f"senior{i:02d}" for i in range(CLAIMERS)]
    try:
        for member_id in ["escalator", *claimers]:
            await members.upsert(
                "acme", member_id, email=f"{member_id}@acme.test", name=member_id, role="engineer"
            )
        for _ in range(ROUNDS):
            session = await service.start_session("acme", "escalator", "race")
            escalation = await service.escalate("acme", "escalator", session.id, "first wins")
            outcomes = await asyncio.gather(
                *(service.claim("acme", c, escalation.id) for c in claimers),
                return_exceptions=True,
            )
            winners = [o for o in outcomes if isinstance(o, Handoff)]
            losers = [o for o in outcomes if isinstance(o, AlreadyClaimed)]
            assert len(winners) == 1, outcomes
            assert len(losers) == CLAIMERS - 1, [o for o in outcomes if not isinstance(o, Handoff)]
            winner = winners[0].claimed_by
            assert {loser.by for loser in losers} == {winner}

            async with db.engine.connect() as conn:
                stored = (
                    await conn.execute(
                        sa.select(handoffs.c.status, handoffs.c.claimed_by).where(
                            handoffs.c.id == escalation.id
                        )
                    )
                ).one()
                assignee = (
                    await conn.execute(
                        sa.select(sessions.c.assignee_id).where(sessions.c.id == session.id)
                    )
                ).scalar_one()
                claim_events = (
                    await conn.execute(
                        sa.select(sa.func.count()).where(
                            timeline.c.handoff_id == escalation.id,
                            timeline.c.type == "escalation.claimed",
                        )
                    )
                ).scalar_one()
            assert tuple(stored) == ("claimed", winner)
            assert assignee == winner
            assert claim_events == 1
    finally:
        await db.close()
