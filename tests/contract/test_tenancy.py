"""Another account's objects do not exist: every method, given them, finds and changes nothing."""

from __future__ import annotations

from typing import Any

import pytest
from attrs import evolve

from handoff_core.errors import Conflict
from handoff_core.model import (
    EscalationPolicy,
    EventType,
    HandoffStatus,
    NoticeKind,
    Role,
    TimelineEvent,
)
from handoff_core.ports import UnitOfWorkFactory


async def _everything(db: UnitOfWorkFactory, ids: dict[str, str]) -> tuple[Any, ...]:
    async with db() as uow:
        return (
            await uow.members.current("acme"),
            await uow.sessions.get("acme", ids["session"]),
            await uow.handoffs.for_session("acme", ids["session"]),
            await uow.deliveries.for_handoff("acme", ids["handoff"]),
            await uow.timeline.for_session("acme", ids["session"]),
            await uow.policies.get("acme"),
        )


async def test_the_other_accounts_ids_find_nothing_and_change_nothing(
    db: UnitOfWorkFactory, make: Any
) -> None:
    await make.member("acme", "alice", Role.OWNER)
    await make.member("acme", "bob", Role.ENGINEER)
    session = await make.session("acme")
    handoff = await make.handoff(session, idempotency_key="key", next_reminder_at=make.at(60))
    (delivery,) = await make.deliveries(handoff, make.delivery_object(handoff, "bob"))
    async with db() as uow:
        event = await uow.timeline.add(
            TimelineEvent(
                account_id="acme",
                session_id=session.id,
                type=EventType.SESSION_ESCALATED,
                at=make.at(0),
                handoff_id=handoff.id,
            )
        )
        await uow.policies.put("acme", EscalationPolicy(max_reminders=7))
        (leased,) = await uow.deliveries.lease_due(
            make.at(0), owner="w1", until=make.at(600), limit=5
        )
        await uow.commit()
    ids = {"session": session.id, "handoff": handoff.id}
    before = await _everything(db, ids)
    other = "globex"
    async with db() as uow:
        assert await uow.members.get(other, "alice") is None
        assert await uow.members.current(other) == []
        assert await uow.members.eligible(other, list(Role)) == []
        assert await uow.sessions.get(other, session.id) is None
        assert await uow.handoffs.get(other, handoff.id) is None
        assert await uow.handoffs.by_idempotency_key(other, "key") is None
        assert await uow.handoffs.open_for_session(other, session.id) is None
        assert await uow.handoffs.for_session(other, session.id) == []
        assert not await uow.handoffs.claim(other, handoff.id, "bob", make.at(1))
        assert not await uow.handoffs.close(other, handoff.id, HandoffStatus.WITHDRAWN, make.at(1))
        assert await uow.handoffs.escalations(other) == []
        assert not await uow.handoffs.advance_reminder(other, handoff.id, 1, None)
        assert await uow.deliveries.for_handoff(other, handoff.id) == []
        assert (
            await uow.deliveries.cancel_pending(other, handoff.id, list(NoticeKind), make.at(1))
            == 0
        )
        assert (
            await uow.deliveries.lease_due(
                make.at(1000), owner="w2", until=make.at(2000), limit=5, account_id=other
            )
            == []
        )
        leased.mark_sent(make.at(2))
        assert not await uow.deliveries.record(evolve(leased, account_id=other))
        assert await uow.timeline.for_session(other, session.id) == []
        assert await uow.timeline.first(other, handoff.id, EventType.SESSION_ESCALATED) is None
        assert await uow.timeline.after(other, 0, [e.value for e in EventType], 10) == []
        assert await uow.policies.get(other) is None
        await uow.commit()
    with pytest.raises(Conflict):
        async with db() as uow:
            await uow.sessions.update(evolve(session, account_id=other, version=1))
    # The same ids are free for the other account to use, without touching the first one's.
    await make.member(other, "alice", Role.VIEWER)
    twin = await make.session(other, id=session.id)
    await make.handoff(twin, id=handoff.id, idempotency_key="key")
    after = await _everything(db, ids)
    assert after == before
    assert event in after[4] and delivery.id in {d.id for d in after[3]}
