"""A unit of work is all or nothing: only `commit()` makes its writes visible."""

from __future__ import annotations

from typing import Any

import pytest

from handoff_core.model import EventType, HandoffStatus, Member, Role, TimelineEvent
from handoff_core.ports import UnitOfWork, UnitOfWorkFactory


class Boom(Exception):
    pass


async def _write_everything(uow: UnitOfWork, make: Any, session: Any) -> Any:
    """Escalate by hand: change the session, add a handoff, its deliveries and an event."""
    handoff = make.handoff_object(session)
    session.problem_summary = "changed inside the unit of work"
    await uow.sessions.update(session)
    await uow.handoffs.add(handoff)
    await uow.deliveries.add_many([make.delivery_object(handoff, "bob")])
    await uow.timeline.add(
        TimelineEvent(
            account_id="acme",
            session_id=session.id,
            type=EventType.SESSION_ESCALATED,
            at=make.at(1),
            handoff_id=handoff.id,
        )
    )
    await uow.members.save(
        Member(id="zoe", account_id="acme", email="zoe@acme.test", name="Zoe", role=Role.ADMIN)
    )
    await uow.policies.put("acme", handoff.policy)
    return handoff


async def _nothing_written(db: UnitOfWorkFactory, session: Any, handoff: Any) -> None:
    async with db() as uow:
        assert await uow.sessions.get("acme", session.id) == session
        assert await uow.handoffs.get("acme", handoff.id) is None
        assert await uow.handoffs.for_session("acme", session.id) == []
        assert await uow.deliveries.for_handoff("acme", handoff.id) == []
        assert await uow.timeline.for_session("acme", session.id) == []
        assert await uow.members.get("acme", "zoe") is None
        assert await uow.policies.get("acme") is None


async def test_a_unit_of_work_that_is_not_committed_leaves_nothing(
    db: UnitOfWorkFactory, make: Any
) -> None:
    original = await make.session("acme")
    async with db() as uow:
        working = await uow.sessions.get("acme", original.id)
        handoff = await _write_everything(uow, make, working)
    await _nothing_written(db, original, handoff)


async def test_a_unit_of_work_that_raises_leaves_nothing(db: UnitOfWorkFactory, make: Any) -> None:
    original = await make.session("acme")
    with pytest.raises(Boom):
        async with db() as uow:
            working = await uow.sessions.get("acme", original.id)
            handoff = await _write_everything(uow, make, working)
            raise Boom
    await _nothing_written(db, original, handoff)


async def test_an_explicit_rollback_leaves_nothing(db: UnitOfWorkFactory, make: Any) -> None:
    original = await make.session("acme")
    async with db() as uow:
        working = await uow.sessions.get("acme", original.id)
        handoff = await _write_everything(uow, make, working)
        await uow.rollback()
    await _nothing_written(db, original, handoff)


async def test_a_committed_unit_of_work_keeps_everything(db: UnitOfWorkFactory, make: Any) -> None:
    session = await make.session("acme")
    async with db() as uow:
        working = await uow.sessions.get("acme", session.id)
        handoff = await _write_everything(uow, make, working)
        await uow.commit()
    async with db() as uow:
        stored = await uow.sessions.get("acme", session.id)
        assert stored is not None and stored.problem_summary == "changed inside the unit of work"
        assert (await uow.handoffs.get("acme", handoff.id)) == handoff
        assert len(await uow.deliveries.for_handoff("acme", handoff.id)) == 1
        assert len(await uow.timeline.for_session("acme", session.id)) == 1
        assert await uow.members.get("acme", "zoe") is not None
        assert await uow.policies.get("acme") == handoff.policy


async def test_a_failed_conditional_write_changes_nothing(db: UnitOfWorkFactory, make: Any) -> None:
    handoff = await make.handoff()
    async with db() as uow:
        assert await uow.handoffs.close("acme", handoff.id, HandoffStatus.WITHDRAWN, make.at(1))
        await uow.commit()
    async with db() as uow:
        before = await uow.handoffs.get("acme", handoff.id)
        assert not await uow.handoffs.claim("acme", handoff.id, "bob", make.at(2))
        await uow.commit()
    async with db() as uow:
        assert await uow.handoffs.get("acme", handoff.id) == before
