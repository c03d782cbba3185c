import asyncio

from handoff_core import DeliveryService, HandoffService, MemberService, Queries
from handoff_memory import ManualClock, MemoryDatabase, RecordingMailSender


async def main() -> None:
    db, clock, mail = MemoryDatabase(), ManualClock(), RecordingMailSender()
    members = MemberService(db, clock)
    await members.upsert("acme", "eve", email="eve@acme.test", name="Eve", role="engineer")
    await members.upsert("acme", "sam", email="sam@acme.test", name="Sam", role="engineer")

    handoffs = HandoffService(db, clock)
    session = await handoffs.start_session("acme", "eve", "VPN won't connect after Win update")
    escalation = await handoffs.escalate("acme", "eve", session.id, "Stuck on auth handshake")

    sent = await DeliveryService(db, clock, mail).dispatch("acme", escalation.id)
    assert sent == 1 and mail.sent["sam@acme.test"][0].body.subject.startswith("Escalation:")

    claimed = await handoffs.claim("acme", "sam", escalation.id)
    print(claimed.status, claimed.claimed_by)  # claimed sam
    print(await Queries(db).analytics("acme", "sam"))  # counts, claim rate, time to claim


asyncio.run(main())
