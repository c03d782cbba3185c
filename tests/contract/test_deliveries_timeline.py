"""The outbox (deliveries and leases) and the timeline."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from attrs import evolve

from handoff_core.errors import Conflict
from handoff_core.model import (
    Channel,
    DeliveryStatus,
    EventType,
    NoticeKind,
    TimelineEvent,
)
from handoff_core.ports import UnitOfWorkFactory


async def test_add_many_then_for_handoff_in_a_stable_order(
    db: UnitOfWorkFactory, make: Any
) -> None:
    handoff = await make.handoff()
    other = await make.handoff()
    added = await make.deliveries(
        handoff,
        make.delivery_object(handoff, "carol", created_at=make.at(0)),
        make.delivery_object(handoff, "bob", channel=Channel.PUSH, created_at=make.at(0)),
        make.delivery_object(handoff, "bob", created_at=make.at(0)),
        make.delivery_object(
            handoff, "ann", kind=NoticeKind.REMINDER, round=1, created_at=make.at(60)
        ),
    )
    await make.deliveries(other, make.delivery_object(other, "zed"))
    async with db() as uow:
        listed = await uow.deliveries.for_handoff("acme", handoff.id)
        assert await uow.deliveries.for_handoff("acme", "missing") == []
    assert [(d.recipient_id, d.channel) for d in listed] == [
        ("bob", Channel.EMAIL),
        ("bob", Channel.PUSH),
        ("carol", Channel.EMAIL),
        ("ann", Channel.EMAIL),
    ]
    assert sorted(listed, key=lambda d: d.id) == sorted(added, key=lambda d: d.id)
    assert listed[0].message_id == f"<{listed[0].id}@handoff>"


async def test_add_many_of_nothing_adds_nothing(db: UnitOfWorkFactory, make: Any) -> None:
    handoff = await make.handoff()
    async with db() as uow:
        await uow.deliveries.add_many([])
        await uow.commit()
    async with db() as uow:
        assert await uow.deliveries.for_handoff("acme", handoff.id) == []


async def test_a_duplicate_delivery_id_is_a_conflict(db: UnitOfWorkFactory, make: Any) -> None:
    handoff = await make.handoff()
    (first,) = await make.deliveries(handoff, make.delivery_object(handoff))
    with pytest.raises(Conflict):
        async with db() as uow:
            await uow.deliveries.add_many([make.delivery_object(handoff, id=first.id)])
            await uow.commit()


async def test_cancel_pending_cancels_only_pending_of_those_kinds(
    db: UnitOfWorkFactory, make: Any
) -> None:
    handoff = await make.handoff()
    sent = make.delivery_object(handoff, "ann", status=DeliveryStatus.SENT, sent_at=make.at(1))
    await make.deliveries(
        handoff,
        sent,
        make.delivery_object(handoff, "bob"),
        make.delivery_object(handoff, "carol", kind=NoticeKind.REMINDER, round=1),
    )
    async with db() as uow:
        leased = await uow.deliveries.lease_due(make.at(0), owner="w1", until=make.at(3), limit=10)
        assert len(leased) == 2  # a lease that has run out by the time of the cancel
        cancelled = await uow.deliveries.cancel_pending(
            "acme", handoff.id, [NoticeKind.REMINDER], make.at(5)
        )
        await uow.commit()
    assert cancelled == 1
    async with db() as uow:
        by_recipient = {
            d.recipient_id: d for d in await uow.deliveries.for_handoff("acme", handoff.id)
        }
        again = await uow.deliveries.cancel_pending(
            "acme", handoff.id, list(NoticeKind), make.at(6)
        )
        await uow.commit()
    assert by_recipient["carol"].status is DeliveryStatus.CANCELLED
    assert by_recipient["carol"].leased_by is None
    assert by_recipient["carol"].last_error
    assert by_recipient["bob"].status is DeliveryStatus.PENDING
    assert by_recipient["ann"] == sent
    assert again == 1


async def test_lease_due_takes_due_unleased_deliveries_oldest_first(
    db: UnitOfWorkFactory, make: Any
) -> None:
    handoff = await make.handoff()
    other = await make.handoff(account="globex")
    second = make.delivery_object(handoff, "b", next_attempt_at=make.at(20))
    first = make.delivery_object(handoff, "a", next_attempt_at=make.at(10))
    later = make.delivery_object(handoff, "c", next_attempt_at=make.at(500))
    done = make.delivery_object(handoff, "d", status=DeliveryStatus.DEAD)
    elsewhere = make.delivery_object(other, "z", next_attempt_at=make.at(15))
    await make.deliveries(handoff, second, first, later, done)
    await make.deliveries(other, elsewhere)
    async with db() as uow:
        only_acme = await uow.deliveries.lease_due(
            make.at(100), owner="w1", until=make.at(400), limit=10, account_id="acme"
        )
        await uow.commit()
    assert [d.id for d in only_acme] == [first.id, second.id]
    assert all((d.leased_by, d.leased_until) == ("w1", make.at(400)) for d in only_acme)
    async with db() as uow:
        rest = await uow.deliveries.lease_due(
            make.at(100), owner="w2", until=make.at(400), limit=10
        )
        await uow.commit()
    assert [d.id for d in rest] == [elsewhere.id]


async def test_lease_due_honours_limit_and_handoff(db: UnitOfWorkFactory, make: Any) -> None:
    handoff = await make.handoff()
    other = await make.handoff()
    mine = [make.delivery_object(handoff, f"r{i}", next_attempt_at=make.at(i)) for i in range(3)]
    await make.deliveries(handoff, *mine)
    await make.deliveries(other, make.delivery_object(other, "x"))
    async with db() as uow:
        leased = await uow.deliveries.lease_due(
            make.at(10), owner="w", until=make.at(60), limit=2, handoff_id=handoff.id
        )
        await uow.commit()
    assert [d.id for d in leased] == [mine[0].id, mine[1].id]


async def test_two_concurrent_leases_never_share_a_delivery(
    db: UnitOfWorkFactory, make: Any
) -> None:
    handoff = await make.handoff()
    await make.deliveries(handoff, *(make.delivery_object(handoff, f"r{i}") for i in range(30)))

    async def lease(owner: str) -> list[str]:
        async with db() as uow:
            leased = await uow.deliveries.lease_due(
                make.at(1), owner=owner, until=make.at(300), limit=20
            )
            await uow.commit()
        return [d.id for d in leased]

    first, second = await asyncio.gather(lease("w1"), lease("w2"))
    assert not set(first) & set(second)
    assert len(first) + len(second) == 30
    async with db() as uow:
        owners = {d.id: d.leased_by for d in await uow.deliveries.for_handoff("acme", handoff.id)}
    assert all(owners[i] == "w1" for i in first)
    assert all(owners[i] == "w2" for i in second)


async def test_an_expired_lease_is_taken_over_and_the_old_holder_cannot_record(
    db: UnitOfWorkFactory, make: Any
) -> None:
    handoff = await make.handoff()
    await make.deliveries(handoff, make.delivery_object(handoff))
    async with db() as uow:
        (held,) = await uow.deliveries.lease_due(make.at(0), owner="w1", until=make.at(60), limit=5)
        assert (
            await uow.deliveries.lease_due(make.at(30), owner="w2", until=make.at(90), limit=5)
            == []
        )
        await uow.commit()
    async with db() as uow:
        (taken,) = await uow.deliveries.lease_due(
            make.at(61), owner="w2", until=make.at(120), limit=5
        )
        await uow.commit()
    assert taken.id == held.id and taken.leased_by == "w2"
    held.mark_sent(make.at(62))
    async with db() as uow:
        assert not await uow.deliveries.record(held)
        await uow.commit()
    taken.mark_deferred("451 try later", make.at(500))
    async with db() as uow:
        assert await uow.deliveries.record(taken)
        await uow.commit()
    async with db() as uow:
        (stored,) = await uow.deliveries.for_handoff("acme", handoff.id)
    assert stored.status is DeliveryStatus.PENDING
    assert (stored.attempts, stored.last_error) == (1, "451 try later")
    assert (stored.next_attempt_at, stored.leased_by, stored.leased_until) == (
        make.at(500),
        None,
        None,
    )


async def test_record_stores_the_outcome_and_ends_the_lease(
    db: UnitOfWorkFactory, make: Any
) -> None:
    handoff = await make.handoff()
    await make.deliveries(
        handoff, make.delivery_object(handoff), make.delivery_object(handoff, "c")
    )
    async with db() as uow:
        sent, refused = await uow.deliveries.lease_due(
            make.at(0), owner="w1", until=make.at(60), limit=5
        )
        await uow.commit()
    sent.mark_sent(make.at(3))
    refused.mark_refused("550 mailbox unavailable")
    async with db() as uow:
        assert await uow.deliveries.record(sent)
        assert await uow.deliveries.record(refused)
        await uow.commit()
    async with db() as uow:
        stored = {d.id: d for d in await uow.deliveries.for_handoff("acme", handoff.id)}
    assert stored[sent.id] == evolve(sent, leased_by=None, leased_until=None)
    assert stored[refused.id].status is DeliveryStatus.FAILED
    assert stored[refused.id].last_error == "550 mailbox unavailable"


@pytest.mark.parametrize(
    ("cancel_at", "cancelled", "kept"),
    [(1, 0, DeliveryStatus.SENT), (61, 1, DeliveryStatus.CANCELLED)],
    ids=["in-flight", "lease-ran-out"],
)
async def test_a_claim_leaves_a_delivery_in_flight_to_its_worker_until_its_lease_runs_out(
    db: UnitOfWorkFactory, make: Any, cancel_at: int, cancelled: int, kept: DeliveryStatus
) -> None:
    """While a worker holds the lease, what it really did is what is recorded (it sent it); once
    the lease ran out, the claim cancels it and the old holder can no longer record."""
    handoff = await make.handoff()
    await make.deliveries(handoff, make.delivery_object(handoff))
    async with db() as uow:
        (leased,) = await uow.deliveries.lease_due(
            make.at(0), owner="w1", until=make.at(60), limit=5
        )
        await uow.commit()
    async with db() as uow:
        kinds = list(NoticeKind)
        got = await uow.deliveries.cancel_pending("acme", handoff.id, kinds, make.at(cancel_at))
        assert got == cancelled
        await uow.commit()
    leased.mark_sent(make.at(cancel_at + 1))
    async with db() as uow:
        assert await uow.deliveries.record(leased) == (kept is DeliveryStatus.SENT)
        await uow.commit()
    async with db() as uow:
        (stored,) = await uow.deliveries.for_handoff("acme", handoff.id)
    assert stored.status is kept


async def test_release_gives_back_only_that_owners_pending_leases(
    db: UnitOfWorkFactory, make: Any
) -> None:
    handoff = await make.handoff()
    await make.deliveries(handoff, *(make.delivery_object(handoff, f"r{i}") for i in range(3)))
    async with db() as uow:
        mine = await uow.deliveries.lease_due(make.at(0), owner="w1", until=make.at(60), limit=2)
        theirs = await uow.deliveries.lease_due(make.at(0), owner="w2", until=make.at(60), limit=5)
        await uow.commit()
    assert len(mine) == 2 and len(theirs) == 1
    async with db() as uow:
        assert await uow.deliveries.release("w1") == 2
        await uow.commit()
    async with db() as uow:
        again = await uow.deliveries.lease_due(make.at(1), owner="w3", until=make.at(60), limit=5)
        await uow.commit()
    assert sorted(d.id for d in again) == sorted(d.id for d in mine)


def _event(session: Any, type: EventType, at: Any, **changes: Any) -> TimelineEvent:
    return TimelineEvent(
        account_id=session.account_id, session_id=session.id, type=type, at=at, **changes
    )


async def test_timeline_ids_grow_and_events_read_back(db: UnitOfWorkFactory, make: Any) -> None:
    session = await make.session("acme")
    handoff = await make.handoff(session)
    other = await make.session("acme")
    async with db() as uow:
        created = await uow.timeline.add(
            _event(session, EventType.SESSION_CREATED, make.at(0), actor_id="alice")
        )
        escalated = await uow.timeline.add(
            _event(
                session,
                EventType.SESSION_ESCALATED,
                make.at(1),
                handoff_id=handoff.id,
                actor_id="alice",
                data={"notes": "ünï", "recipients": 3, "nested": {"a": [1, None]}},
            )
        )
        elsewhere = await uow.timeline.add(_event(other, EventType.SESSION_CREATED, make.at(2)))
        await uow.commit()
    assert created.id is not None and escalated.id is not None and elsewhere.id is not None
    assert created.id < escalated.id < elsewhere.id
    async with db() as uow:
        later = await uow.timeline.add(_event(session, EventType.SESSION_RESOLVED, make.at(3)))
        await uow.commit()
    assert later.id is not None and later.id > elsewhere.id
    async with db() as uow:
        listed = await uow.timeline.for_session("acme", session.id)
    assert listed == [created, escalated, later]


async def test_timeline_first_and_after(db: UnitOfWorkFactory, make: Any) -> None:
    session = await make.session("acme")
    handoff = await make.handoff(session)
    reminded = EventType.ESCALATION_REMINDED
    stored = []
    async with db() as uow:
        for i, type in enumerate(
            [EventType.SESSION_ESCALATED, reminded, EventType.DELIVERY_SENT, reminded]
        ):
            stored.append(
                await uow.timeline.add(
                    _event(session, type, make.at(i), handoff_id=handoff.id, data={"i": i})
                )
            )
        await uow.commit()
    async with db() as uow:
        assert await uow.timeline.first("acme", handoff.id, reminded) == stored[1]
        assert await uow.timeline.first("acme", handoff.id, EventType.ESCALATION_CLAIMED) is None
        streamed = [EventType.SESSION_ESCALATED.value, reminded.value]
        assert await uow.timeline.after("acme", 0, streamed, 10) == [
            stored[0],
            stored[1],
            stored[3],
        ]
        assert await uow.timeline.after("acme", stored[0].id or 0, streamed, 1) == [stored[1]]
        assert await uow.timeline.after("acme", stored[3].id or 0, streamed, 10) == []
