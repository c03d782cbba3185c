"""A test of your own code against the in-memory fakes (pytest with pytest-asyncio)."""

import pytest

from handoff_core.bootstrap import wire
from handoff_memory import (
    ManualClock,
    MemoryDatabase,
    MemoryPresence,
    RecordingMailSender,
    RecordingPushHub,
)


@pytest.mark.asyncio
async def test_an_online_senior_is_pushed_and_an_offline_one_emailed() -> None:
    db, clock, mail = MemoryDatabase(), ManualClock(), RecordingMailSender()
    presence, hub = MemoryPresence(), RecordingPushHub()
    library = wire(db, clock, mail, presence=presence, hub=hub)  # the service's own wiring
    for who in ("eve", "sam", "kim"):
        await library.members.upsert(
            "acme", who, email=f"{who}@acme.test", name=who, role="engineer"
        )
    presence.enter("acme", "sam")  # sam has a live stream open

    handoffs = library.handoffs
    session = await handoffs.start_session("acme", "eve", "VPN drops every 10 minutes")
    escalation = await handoffs.escalate("acme", "eve", session.id, "Checked the MTU")
    await library.delivery.dispatch("acme", escalation.id)

    assert [e.type for e in hub.received_by("acme", "sam")] == ["escalation.created"]
    assert list(mail.sent) == ["kim@acme.test"]  # offline: email
