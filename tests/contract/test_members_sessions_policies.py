"""Members, Sessions and Policies keep the same promises on every store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from handoff_core.errors import Conflict
from handoff_core.model import EscalationPolicy, Role, SessionStatus
from handoff_core.ports import UnitOfWorkFactory

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


async def test_a_saved_member_comes_back_as_saved(db: UnitOfWorkFactory, make: Any) -> None:
    saved = await make.member("acme", "alice", Role.ADMIN)
    async with db() as uow:
        loaded = await uow.members.get("acme", "alice")
        missing = await uow.members.get("acme", "nobody")
    assert loaded == saved
    assert missing is None


async def test_saving_a_member_again_replaces_it(db: UnitOfWorkFactory, make: Any) -> None:
    member = await make.member("acme", "alice")
    member.name, member.role, member.active = "Alice B.", Role.OWNER, False
    member.deleted_at = T0
    async with db() as uow:
        await uow.members.save(member)
        await uow.commit()
    async with db() as uow:
        assert await uow.members.get("acme", "alice") == member


async def test_current_lists_members_not_deleted_ordered_by_id(
    db: UnitOfWorkFactory, make: Any
) -> None:
    for member_id in ("carol", "alice", "bob"):
        await make.member("acme", member_id)
    await make.member("acme", "dan", deleted_at=T0)
    await make.member("acme", "erin", active=False)
    async with db() as uow:
        current = await uow.members.current("acme")
    assert [m.id for m in current] == ["alice", "bob", "carol", "erin"]


async def test_eligible_is_active_not_deleted_and_holding_a_role(
    db: UnitOfWorkFactory, make: Any
) -> None:
    await make.member("acme", "ann", Role.OWNER)
    await make.member("acme", "bob", Role.ENGINEER)
    await make.member("acme", "cat", Role.VIEWER)
    await make.member("acme", "dan", Role.ENGINEER, active=False)
    await make.member("acme", "eve", Role.ADMIN, deleted_at=T0)
    async with db() as uow:
        seniors = await uow.members.eligible("acme", [Role.OWNER, Role.ADMIN, Role.ENGINEER])
        owners = await uow.members.eligible("acme", [Role.OWNER])
        nobody = await uow.members.eligible("acme", [])
    assert [m.id for m in seniors] == ["ann", "bob"]
    assert [m.id for m in owners] == ["ann"]
    assert nobody == []


async def test_a_session_round_trips_with_aware_times(db: UnitOfWorkFactory, make: Any) -> None:
    plus_two = timezone(timedelta(hours=2))
    session = make.session_object(
        "acme",
        created_at=datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=plus_two),
        updated_at=datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=plus_two),
        context={"nested": {"list": [1, 2.5, None, True, "ünïcödé ✓"]}, "empty": {}},
        escalation_package={"handoff_id": "h1", "snapshot": {"a": [1]}},
        handoff_count=3,
    )
    async with db() as uow:
        await uow.sessions.add(session)
        await uow.commit()
    assert session.version == 1
    async with db() as uow:
        loaded = await uow.sessions.get("acme", session.id)
    assert loaded == session
    assert loaded is not None
    assert loaded.created_at.utcoffset() is not None
    assert loaded.created_at == datetime(2026, 3, 1, 10, 30, 15, 123456, tzinfo=UTC)


async def test_adding_a_session_twice_is_a_conflict(db: UnitOfWorkFactory, make: Any) -> None:
    session = await make.session("acme")
    with pytest.raises(Conflict):
        async with db() as uow:
            await uow.sessions.add(make.session_object("acme", id=session.id))


async def test_update_bumps_the_version_and_a_stale_update_is_refused(
    db: UnitOfWorkFactory, make: Any
) -> None:
    await make.session("acme")
    session = await make.session("acme")
    async with db() as uow:
        first = await uow.sessions.get("acme", session.id)
        second = await uow.sessions.get("acme", session.id)
    assert first is not None and second is not None
    first.status, first.problem_summary = SessionStatus.PAUSED, "edited"
    first.updated_at = T0 + timedelta(minutes=1)
    async with db() as uow:
        await uow.sessions.update(first)
        await uow.commit()
    assert first.version == 2
    second.problem_summary = "a concurrent edit"
    with pytest.raises(Conflict):
        async with db() as uow:
            await uow.sessions.update(second)
            await uow.commit()
    async with db() as uow:
        stored = await uow.sessions.get("acme", session.id)
    assert stored == first


async def test_updating_a_session_that_does_not_exist_is_a_conflict(
    db: UnitOfWorkFactory, make: Any
) -> None:
    ghost = make.session_object("acme", version=1)
    with pytest.raises(Conflict):
        async with db() as uow:
            await uow.sessions.update(ghost)
    async with db() as uow:
        assert await uow.sessions.get("acme", ghost.id) is None


async def test_policies_are_absent_until_put_then_replaced(db: UnitOfWorkFactory) -> None:
    first = EscalationPolicy(roles=frozenset({Role.ADMIN}), email_online_too=True)
    second = EscalationPolicy(remind_after_seconds=60, max_reminders=5)
    async with db() as uow:
        assert await uow.policies.get("acme") is None
        await uow.policies.put("acme", first)
        await uow.commit()
    async with db() as uow:
        assert await uow.policies.get("acme") == first
        await uow.policies.put("acme", second)
        await uow.commit()
    async with db() as uow:
        assert await uow.policies.get("acme") == second
        assert await uow.policies.get("other") is None
