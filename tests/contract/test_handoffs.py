"""Handoffs: conditional claim and close, idempotency keys, the queue and reminders."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from handoff_core.errors import Conflict, IdempotencyConflict
from handoff_core.model import EscalationPolicy, HandoffStatus, Intent, Role
from handoff_core.ports import UnitOfWorkFactory


async def test_a_handoff_round_trips_with_its_policy(db: UnitOfWorkFactory, make: Any) -> None:
    session = await make.session("acme")
    policy = EscalationPolicy(roles=frozenset({Role.ADMIN, Role.OWNER}), max_reminders=3)
    handoff = make.handoff_object(
        session,
        policy=policy,
        next_reminder_at=make.at(600),
        idempotency_key="key-1",
        request_fingerprint="f" * 64,
        engineer_notes="notes with ünïcödé and\nnew lines",
    )
    async with db() as uow:
        await uow.handoffs.add(handoff)
        await uow.commit()
    async with db() as uow:
        loaded = await uow.handoffs.get("acme", handoff.id)
        park = make.handoff_object(session, intent=Intent.PARK, policy=None)
        await uow.handoffs.add(park)
        await uow.commit()
    assert loaded == handoff
    async with db() as uow:
        assert await uow.handoffs.get("acme", park.id) == park
        assert await uow.handoffs.get("acme", "missing") is None


async def test_adding_the_same_handoff_twice_is_a_conflict(
    db: UnitOfWorkFactory, make: Any
) -> None:
    handoff = await make.handoff()
    with pytest.raises(Conflict):
        async with db() as uow:
            await uow.handoffs.add(handoff)


async def test_an_idempotency_key_is_unique_per_account(db: UnitOfWorkFactory, make: Any) -> None:
    first = await make.handoff(idempotency_key="k")
    again = make.handoff_object(await make.session("acme"), idempotency_key="k")
    with pytest.raises(IdempotencyConflict):
        async with db() as uow:
            await uow.handoffs.add(again)
            await uow.commit()
    other_account = await make.handoff(account="globex", idempotency_key="k")
    no_key = [await make.handoff(idempotency_key=None) for _ in range(2)]
    async with db() as uow:
        assert await uow.handoffs.by_idempotency_key("acme", "k") == first
        assert await uow.handoffs.by_idempotency_key("globex", "k") == other_account
        assert await uow.handoffs.by_idempotency_key("acme", "other") is None
        assert await uow.handoffs.get("acme", again.id) is None
        for handoff in no_key:
            assert await uow.handoffs.get("acme", handoff.id) == handoff


async def test_open_for_session_and_for_session(db: UnitOfWorkFactory, make: Any) -> None:
    session = await make.session("acme")
    older = await make.handoff(session, intent=Intent.PARK, created_at=make.at(0))
    async with db() as uow:
        assert await uow.handoffs.open_for_session("acme", session.id) == older
        assert await uow.handoffs.close("acme", older.id, HandoffStatus.RESUMED, make.at(5))
        await uow.commit()
    newer = await make.handoff(session, created_at=make.at(10))
    await make.handoff(await make.session("acme"))
    async with db() as uow:
        assert await uow.handoffs.open_for_session("acme", session.id) == newer
        listed = await uow.handoffs.for_session("acme", session.id)
    assert [h.id for h in listed] == [older.id, newer.id]
    assert listed[0].status is HandoffStatus.RESUMED
    assert listed[0].closed_at == make.at(5)


async def test_claim_is_won_once_and_records_the_winner(db: UnitOfWorkFactory, make: Any) -> None:
    handoff = await make.handoff(next_reminder_at=make.at(600))
    async with db() as uow:
        assert await uow.handoffs.claim("acme", handoff.id, "bob", make.at(30))
        assert not await uow.handoffs.claim("acme", handoff.id, "carol", make.at(31))
        await uow.commit()
    async with db() as uow:
        assert not await uow.handoffs.claim("acme", handoff.id, "carol", make.at(32))
        stored = await uow.handoffs.get("acme", handoff.id)
    assert stored is not None
    assert (stored.status, stored.claimed_by) == (HandoffStatus.CLAIMED, "bob")
    assert stored.claimed_at == stored.closed_at == make.at(30)
    assert stored.next_reminder_at is None


async def test_concurrent_claims_have_exactly_one_winner(db: UnitOfWorkFactory, make: Any) -> None:
    handoff = await make.handoff()

    async def claim(claimer: str) -> bool:
        async with db() as uow:
            won = await uow.handoffs.claim("acme", handoff.id, claimer, make.at(1))
            await uow.commit()
            return won

    claimers = [f"m{i}" for i in range(8)]
    results = await asyncio.gather(*(claim(c) for c in claimers))
    assert results.count(True) == 1
    async with db() as uow:
        stored = await uow.handoffs.get("acme", handoff.id)
    assert stored is not None
    assert stored.claimed_by == claimers[results.index(True)]


async def test_only_an_open_escalation_can_be_claimed(db: UnitOfWorkFactory, make: Any) -> None:
    park = await make.handoff(intent=Intent.PARK, policy=None)
    withdrawn = await make.handoff()
    async with db() as uow:
        assert await uow.handoffs.close("acme", withdrawn.id, HandoffStatus.WITHDRAWN, make.at(1))
        assert not await uow.handoffs.claim("acme", park.id, "bob", make.at(2))
        assert not await uow.handoffs.claim("acme", withdrawn.id, "bob", make.at(2))
        assert not await uow.handoffs.claim("acme", "missing", "bob", make.at(2))
        await uow.commit()
    async with db() as uow:
        assert await uow.handoffs.get("acme", park.id) == park
        stored = await uow.handoffs.get("acme", withdrawn.id)
    assert stored is not None
    assert (stored.status, stored.claimed_by) == (HandoffStatus.WITHDRAWN, None)


async def test_close_changes_only_an_open_handoff(db: UnitOfWorkFactory, make: Any) -> None:
    handoff = await make.handoff(next_reminder_at=make.at(600))
    async with db() as uow:
        assert await uow.handoffs.close("acme", handoff.id, HandoffStatus.WITHDRAWN, make.at(9))
        assert not await uow.handoffs.close("acme", handoff.id, HandoffStatus.RESUMED, make.at(10))
        await uow.commit()
    async with db() as uow:
        stored = await uow.handoffs.get("acme", handoff.id)
    assert stored is not None
    assert stored.status is HandoffStatus.WITHDRAWN
    assert (stored.closed_at, stored.next_reminder_at) == (make.at(9), None)


async def test_escalations_filter_by_status_and_time_oldest_first(
    db: UnitOfWorkFactory, make: Any
) -> None:
    session = await make.session("acme")
    late = await make.handoff(session, created_at=make.at(300))
    early = await make.handoff(session, created_at=make.at(100))
    claimed = await make.handoff(session, created_at=make.at(200))
    await make.handoff(session, intent=Intent.PARK, policy=None, created_at=make.at(150))
    await make.handoff(account="globex", created_at=make.at(100))
    async with db() as uow:
        assert await uow.handoffs.claim("acme", claimed.id, "bob", make.at(250))
        await uow.commit()
    async with db() as uow:
        every = await uow.handoffs.escalations("acme")
        still_open = await uow.handoffs.escalations("acme", statuses=[HandoffStatus.OPEN])
        done = await uow.handoffs.escalations(
            "acme", statuses=[HandoffStatus.CLAIMED, HandoffStatus.WITHDRAWN]
        )
        window = await uow.handoffs.escalations("acme", since=make.at(100), until=make.at(300))
        none = await uow.handoffs.escalations("acme", statuses=[])
    assert [h.id for h in every] == [early.id, claimed.id, late.id]
    assert [h.id for h in still_open] == [early.id, late.id]
    assert [h.id for h in done] == [claimed.id]
    assert [h.id for h in window] == [early.id, claimed.id]
    assert none == []


async def test_reminders_due_across_accounts_in_due_order(db: UnitOfWorkFactory, make: Any) -> None:
    second = await make.handoff(next_reminder_at=make.at(200))
    first = await make.handoff(account="globex", next_reminder_at=make.at(100))
    await make.handoff(next_reminder_at=make.at(900))
    await make.handoff(next_reminder_at=None)
    claimed = await make.handoff(next_reminder_at=make.at(50))
    async with db() as uow:
        assert await uow.handoffs.claim("acme", claimed.id, "bob", make.at(60))
        await uow.commit()
    async with db() as uow:
        due = await uow.handoffs.reminders_due(make.at(600), limit=10)
        limited = await uow.handoffs.reminders_due(make.at(600), limit=1)
        nothing_yet = await uow.handoffs.reminders_due(make.at(99), limit=10)
    assert [h.id for h in due] == [first.id, second.id]
    assert [h.id for h in limited] == [first.id]
    assert nothing_yet == []


async def test_advance_reminder_happens_once_per_round(db: UnitOfWorkFactory, make: Any) -> None:
    handoff = await make.handoff(next_reminder_at=make.at(600))
    async with db() as uow:
        assert await uow.handoffs.advance_reminder("acme", handoff.id, 1, make.at(1200))
        assert not await uow.handoffs.advance_reminder("acme", handoff.id, 1, make.at(1200))
        assert not await uow.handoffs.advance_reminder("acme", handoff.id, 3, None)
        await uow.commit()
    async with db() as uow:
        stored = await uow.handoffs.get("acme", handoff.id)
        assert stored is not None
        assert (stored.reminders_sent, stored.next_reminder_at) == (1, make.at(1200))
        assert await uow.handoffs.advance_reminder("acme", handoff.id, 2, None)
        assert await uow.handoffs.close("acme", handoff.id, HandoffStatus.WITHDRAWN, make.at(5))
        assert not await uow.handoffs.advance_reminder("acme", handoff.id, 3, None)
        await uow.commit()
    async with db() as uow:
        stored = await uow.handoffs.get("acme", handoff.id)
    assert stored is not None
    assert (stored.reminders_sent, stored.next_reminder_at) == (2, None)
