"""The stream log (SPEC §10) and the outbox's seen/unconfirmed pushes, on every store alike."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from handoff_core.model import Channel, DeliveryStatus, HandoffStatus
from handoff_core.ports import UnitOfWorkFactory
from handoff_core.stream import StreamEvent, StreamEventType


def event(account: str, handoff: str = "h1", **changes: Any) -> StreamEvent:
    values: dict[str, Any] = {
        "account_id": account,
        "type": StreamEventType.ESCALATION_CLAIMED,
        "handoff_id": handoff,
        "data": {"handoff_id": handoff, "at": "2026-01-05T09:00:00+00:00", "n": [1, "é"]},
    }
    values.update(changes)
    return StreamEvent(**values)


async def append(db: UnitOfWorkFactory, *events: StreamEvent) -> list[StreamEvent]:
    async with db() as uow:
        stored = await uow.stream.append(events)
        await uow.commit()
    return stored


async def test_each_account_has_its_own_gap_free_sequence(db: UnitOfWorkFactory) -> None:
    first = await append(db, event("acme", "a"), event("acme", "b"))
    other = await append(db, event("other", "z"))
    later = await append(db, event("acme", "c", audience=frozenset({"bob", "carol"})))
    assert [e.seq for e in first] == [1, 2]
    assert [e.seq for e in other] == [1]
    assert [e.seq for e in later] == [3]
    async with db() as uow:
        read = await uow.stream.after("acme", 0, 10)
        assert await uow.stream.bounds("acme") == (0, 3)
        assert await uow.stream.bounds("nobody") == (0, 0)
        assert [e.seq for e in await uow.stream.after("acme", 1, 1)] == [2]
    assert read == [*first, *later]  # the same events, data and audience, as written
    assert read[2].audience == frozenset({"bob", "carol"}) and read[0].audience is None


async def test_a_rolled_back_append_gives_its_numbers_back(db: UnitOfWorkFactory) -> None:
    await append(db, event("acme"))
    async with db() as uow:
        await uow.stream.append([event("acme", "lost")])  # never committed
    [kept] = await append(db, event("acme", "kept"))
    assert kept.seq == 2
    async with db() as uow:
        assert [e.handoff_id for e in await uow.stream.after("acme", 0, 10)] == ["h1", "kept"]


@pytest.mark.postgres
async def test_concurrent_writers_are_numbered_in_commit_order(db: UnitOfWorkFactory) -> None:
    """The second writer is numbered only once the first has committed or rolled back."""
    started = asyncio.Event()
    release = asyncio.Event()

    async def slow() -> list[StreamEvent]:
        async with db() as uow:
            stored = await uow.stream.append([event("acme", "slow")])
            started.set()
            await release.wait()
            await uow.commit()
        return stored

    async def fast() -> list[StreamEvent]:
        await started.wait()
        async with db() as uow:
            stored = await uow.stream.append([event("acme", "fast")])
            await uow.commit()
        return stored

    slow_task = asyncio.create_task(slow())
    fast_task = asyncio.create_task(fast())
    await started.wait()
    await asyncio.sleep(0.2)
    assert not fast_task.done()  # waiting for the slow writer's transaction
    release.set()
    [s], [f] = await asyncio.gather(slow_task, fast_task)
    assert (s.seq, f.seq) == (1, 2)


async def test_prune_forgets_old_events_and_raises_the_floor(
    db: UnitOfWorkFactory, make: Any
) -> None:
    old = {"handoff_id": "old", "at": make.at(0).isoformat()}
    new = {"handoff_id": "new", "at": make.at(3600).isoformat()}
    await append(db, event("acme", "old", data=old), event("acme", "new", data=new))
    async with db() as uow:
        assert await uow.stream.prune(make.at(60)) == 1
        await uow.commit()
    async with db() as uow:
        assert await uow.stream.bounds("acme") == (1, 2)
        assert [e.handoff_id for e in await uow.stream.after("acme", 0, 10)] == ["new"]
    [next_one] = await append(db, event("acme", "next"))
    assert next_one.seq == 3


async def test_mark_seen_marks_a_recipients_pushes_up_to_the_id(
    db: UnitOfWorkFactory, make: Any
) -> None:
    handoff = await make.handoff()
    pushes = [
        make.delivery_object(handoff, "bob", channel=Channel.PUSH, stream_seq=n) for n in (1, 2, 3)
    ]
    others = [
        make.delivery_object(handoff, "carol", channel=Channel.PUSH, stream_seq=1),
        make.delivery_object(handoff, "bob", channel=Channel.EMAIL),
    ]
    await make.deliveries(handoff, *pushes, *others)
    async with db() as uow:
        assert await uow.deliveries.mark_seen("acme", "bob", 2, make.at(5)) == 2
        assert await uow.deliveries.mark_seen("acme", "bob", 2, make.at(9)) == 0
        assert await uow.deliveries.mark_seen("other", "bob", 3, make.at(9)) == 0
        await uow.commit()
    async with db() as uow:
        stored = {d.id: d for d in await uow.deliveries.for_handoff("acme", handoff.id)}
    assert [stored[p.id].seen_at for p in pushes] == [make.at(5), make.at(5), None]
    assert all(stored[d.id].seen_at is None for d in others)


async def test_take_unconfirmed_takes_unseen_pushes_of_open_escalations_once(
    db: UnitOfWorkFactory, make: Any
) -> None:
    open_ = await make.handoff()
    closed = await make.handoff(status=HandoffStatus.CLAIMED)

    def sent_push(handoff: Any, recipient: str, **changes: Any) -> Any:
        values: dict[str, Any] = {
            "channel": Channel.PUSH,
            "status": DeliveryStatus.SENT,
            "attempts": 1,
            "stream_seq": 1,
            "sent_at": make.at(0),
            "confirm_by": make.at(30),
        }
        return make.delivery_object(handoff, recipient, **{**values, **changes})

    due = sent_push(open_, "bob")
    seen = sent_push(open_, "carol", seen_at=make.at(10))
    later = sent_push(open_, "dan", confirm_by=make.at(90))
    of_closed = sent_push(closed, "bob")
    await make.deliveries(open_, due, seen, later)
    await make.deliveries(closed, of_closed)

    async with db() as uow:
        taken = await uow.deliveries.take_unconfirmed(make.at(60), 10, "unconfirmed: test")
        await uow.commit()
    assert [d.id for d in taken] == [due.id]
    assert (taken[0].status, taken[0].last_error) == (
        DeliveryStatus.UNCONFIRMED,
        "unconfirmed: test",
    )
    async with db() as uow:
        assert await uow.deliveries.take_unconfirmed(make.at(60), 10, "again") == []
        stored = {d.id: d for d in await uow.deliveries.for_handoff("acme", open_.id)}
    assert stored[due.id].status is DeliveryStatus.UNCONFIRMED
    assert {stored[d.id].status for d in (seen, later)} == {DeliveryStatus.SENT}
    assert stored[later.id].confirm_by == make.at(90)
