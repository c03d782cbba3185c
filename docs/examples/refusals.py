"""What the library refuses, and how a caller tells the refusals apart.

Two seniors claim the same escalation at once: exactly one wins, the other gets AlreadyClaimed
naming the winner. Another account sees nothing (NotFound), and a value past a limit of the model
is refused naming its field (ValidationError). A refusal changes nothing.
"""

import asyncio

from handoff_core import (
    AlreadyClaimed,
    HandoffService,
    MemberService,
    NotFound,
    ValidationError,
)
from handoff_memory import ManualClock, MemoryDatabase


async def main() -> None:
    db, clock = MemoryDatabase(), ManualClock()
    members = MemberService(db, clock)
    for member_id in ("eve", "sam", "kim"):
        email = f"{member_id}@acme.test"
        await members.upsert("acme", member_id, email=email, name=member_id, role="engineer")
    await members.upsert("globex", "gus", email="gus@globex.test", name="Gus", role="owner")

    handoffs = HandoffService(db, clock)
    session = await handoffs.start_session("acme", "eve", "Printer queue stuck")
    escalation = await handoffs.escalate("acme", "eve", session.id, "Spooler restarts did not help")

    results = await asyncio.gather(
        handoffs.claim("acme", "sam", escalation.id),
        handoffs.claim("acme", "kim", escalation.id),
        return_exceptions=True,
    )
    winners = [r for r in results if not isinstance(r, BaseException)]
    losers = [r for r in results if isinstance(r, AlreadyClaimed)]
    assert len(winners) == 1 and len(losers) == 1
    print("winner:", winners[0].claimed_by, "| loser told:", losers[0].by)

    try:
        await handoffs.claim("globex", "gus", escalation.id)
    except NotFound as refusal:
        print("another account's senior:", refusal.code)

    try:
        await handoffs.start_session("acme", "eve", "x" * 501)
    except ValidationError as refusal:
        print("too long:", refusal.code, refusal.field)


asyncio.run(main())
