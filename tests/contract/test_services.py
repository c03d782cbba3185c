"""The core's use cases end to end over each store: what a user of the library would see."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from handoff_core import (
    AlreadyClaimed,
    Conflict,
    DeliveryStatus,
    Forbidden,
    HandoffStatus,
    IdempotencyConflict,
    InvalidTransition,
    NoticeKind,
    SessionStatus,
)
from handoff_core.bootstrap import wire
from handoff_core.ports import UnitOfWorkFactory
from handoff_memory import ManualClock, RecordingMailSender


class World:
    def __init__(self, db: UnitOfWorkFactory) -> None:
        self.clock = ManualClock()
        self.mail = RecordingMailSender()
        library = wire(db, self.clock, self.mail)
        self.members = library.members
        self.handoffs = library.handoffs
        self.delivery = library.delivery
        self.queries = library.queries

    async def team(self, account: str = "acme") -> None:
        for member_id, role in [
            ("alice", "engineer"),
            ("bob", "engineer"),
            ("carol", "admin"),
            ("vic", "viewer"),
        ]:
            await self.members.upsert(
                account, member_id, email=f"{member_id}@{account}.test", name=member_id, role=role
            )


@pytest.fixture
async def world(db: UnitOfWorkFactory) -> World:
    world = World(db)
    await world.team()
    return world


async def test_escalate_dispatch_claim_and_read_it_all_back(world: World) -> None:
    session = await world.handoffs.start_session(
        "acme", "alice", "VPN won't connect after Win update", {"messages": ["hi"]}
    )
    handoff = await world.handoffs.escalate("acme", "alice", session.id, "stuck on auth")
    assert await world.delivery.dispatch("acme", handoff.id) == 2
    assert sorted(world.mail.sent) == ["bob@acme.test", "carol@acme.test"]
    subject = world.mail.messages[0].body.subject
    assert subject == "Escalation: VPN won't connect after Win update"

    world.clock.advance(90)
    claimed = await world.handoffs.claim("acme", "bob", handoff.id)
    with pytest.raises(AlreadyClaimed) as lost:
        await world.handoffs.claim("acme", "carol", handoff.id)
    assert lost.value.by == "bob"
    assert (claimed.status, claimed.claimed_by) == (HandoffStatus.CLAIMED, "bob")

    stored = await world.queries.session("acme", "vic", session.id)
    assert (stored.status, stored.assignee_id, stored.handoff_count) == (
        SessionStatus.ACTIVE,
        "bob",
        1,
    )
    assert stored.escalation_package is not None
    assert stored.escalation_package["handoff_id"] == handoff.id
    deliveries = await world.queries.deliveries("acme", "vic", handoff.id)
    assert {(d.recipient_id, d.status) for d in deliveries} == {
        ("bob", DeliveryStatus.SENT),
        ("carol", DeliveryStatus.SENT),
    }
    timeline = await world.queries.timeline("acme", "vic", session.id)
    assert [e.type.value for e in timeline] == [
        "session.created",
        "session.escalated",
        "delivery.sent",
        "delivery.sent",
        "escalation.claimed",
    ]
    stats = await world.queries.analytics("acme", "carol")
    assert (stats.escalated, stats.claimed, stats.open) == (1, 1, 0)
    assert stats.time_to_claim_p50_s == 90.0
    assert stats.claims_by_member == {"bob": 1}
    assert [h.id for h in await world.queries.queue("acme", "vic", "claimed")] == [handoff.id]
    assert await world.queries.queue("acme", "vic", "open") == []


async def test_park_and_resume_notify_nobody(world: World) -> None:
    session = await world.handoffs.start_session("acme", "alice", "printer on fire")
    park = await world.handoffs.park("acme", "alice", session.id, "waiting for the logs")
    assert await world.delivery.dispatch("acme", park.id) == 0
    resumed = await world.handoffs.resume("acme", "alice", session.id)
    assert resumed.status is SessionStatus.ACTIVE
    handoffs = await world.queries.handoffs_of("acme", "alice", session.id)
    assert [(h.intent.value, h.status) for h in handoffs] == [("park", HandoffStatus.RESUMED)]
    assert world.mail.messages == []


async def test_an_idempotency_key_returns_the_first_handoff(world: World) -> None:
    session = await world.handoffs.start_session("acme", "alice", "disk full")
    first = await world.handoffs.escalate("acme", "alice", session.id, "help", idempotency_key="k1")
    again = await world.handoffs.escalate("acme", "alice", session.id, "help", idempotency_key="k1")
    assert again == first
    with pytest.raises(IdempotencyConflict):
        await world.handoffs.escalate("acme", "alice", session.id, "other", idempotency_key="k1")
    stored = await world.queries.session("acme", "alice", session.id)
    assert stored.handoff_count == 1
    assert len(await world.queries.handoffs_of("acme", "alice", session.id)) == 1
    assert len(await world.queries.deliveries("acme", "alice", first.id)) == 2


async def test_withdraw_cancels_what_was_not_sent(world: World) -> None:
    session = await world.handoffs.start_session("acme", "alice", "no sound")
    handoff = await world.handoffs.escalate("acme", "alice", session.id, "")
    await world.handoffs.withdraw("acme", "alice", handoff.id)
    assert await world.delivery.dispatch("acme", handoff.id) == 0
    deliveries = await world.queries.deliveries("acme", "alice", handoff.id)
    assert {d.status for d in deliveries} == {DeliveryStatus.CANCELLED}
    assert world.mail.messages == []
    with pytest.raises(InvalidTransition):
        await world.handoffs.claim("acme", "bob", handoff.id)


async def test_reminders_go_out_until_someone_claims(world: World) -> None:
    session = await world.handoffs.start_session("acme", "alice", "slow wifi")
    handoff = await world.handoffs.escalate("acme", "alice", session.id, "")
    await world.delivery.dispatch("acme", handoff.id)
    world.clock.advance(601)
    assert await world.delivery.run_once() == 2
    reminders = [n for n in world.mail.messages if n.body.subject.startswith("Reminder 1")]
    assert len(reminders) == 2
    await world.handoffs.claim("acme", "carol", handoff.id)
    world.clock.advance(601)
    assert await world.delivery.run_once() == 0
    kinds = [d.kind for d in await world.queries.deliveries("acme", "alice", handoff.id)]
    assert kinds.count(NoticeKind.REMINDER) == 2


async def test_a_deferred_email_is_retried_later_with_the_same_message_id(world: World) -> None:
    session = await world.handoffs.start_session("acme", "alice", "vpn")
    handoff = await world.handoffs.escalate("acme", "alice", session.id, "")
    world.mail.defer.add("bob@acme.test")
    assert await world.delivery.dispatch("acme", handoff.id) == 1
    (bob,) = [
        d
        for d in await world.queries.deliveries("acme", "alice", handoff.id)
        if d.recipient_id == "bob"
    ]
    assert (bob.status, bob.attempts, bob.last_error) == (
        DeliveryStatus.PENDING,
        1,
        "451 try again later",
    )
    world.mail.defer.clear()
    world.clock.advance(31)  # past the first backoff (at most 30 s), before any reminder
    assert await world.delivery.run_once() == 1
    (sent,) = world.mail.sent["bob@acme.test"]
    assert sent.message_id == bob.message_id


async def test_a_refused_escalation_changes_nothing(world: World) -> None:
    session = await world.handoffs.start_session("acme", "alice", "vpn")
    await world.handoffs.park("acme", "alice", session.id, "")
    with pytest.raises(InvalidTransition):
        await world.handoffs.escalate("acme", "alice", session.id, "")
    stored = await world.queries.session("acme", "alice", session.id)
    assert (stored.status, stored.handoff_count) == (SessionStatus.PAUSED, 1)
    assert len(await world.queries.handoffs_of("acme", "alice", session.id)) == 1
    assert len(await world.queries.timeline("acme", "alice", session.id)) == 2


class FirstCommitHeld:
    """The store, except that the first unit of work to commit waits at its commit until the
    test lets it go: the window in which a second change runs beside it."""

    def __init__(self, db: UnitOfWorkFactory) -> None:
        self.db = db
        self.reached = asyncio.Event()
        self.release = asyncio.Event()
        self.armed = False

    def __call__(self) -> Any:
        uow = self.db()
        if self.armed:
            self.armed = False
            commit = uow.commit

            async def held() -> None:
                self.reached.set()
                await self.release.wait()
                await commit()

            uow.commit = held  # type: ignore[method-assign]
        return uow


async def test_two_owners_demoting_each_other_at_once_leave_one_owner(
    db: UnitOfWorkFactory,
) -> None:
    """The last-owner guard holds under a race (SPEC §13): the second change runs while the first
    waits at its commit; on PostgreSQL the owners are locked, so it waits and then sees the
    first, and is refused."""
    held = FirstCommitHeld(db)
    members = wire(held, ManualClock(), RecordingMailSender()).members
    for owner in ("ann", "ben"):
        await members.upsert("acme", owner, email=f"{owner}@acme.test", name=owner, role="owner")

    async def demote(who: str, by: str) -> object:
        try:
            return await members.upsert(
                "acme", who, email=f"{who}@acme.test", name=who, role="engineer", actor_id=by
            )
        except (Conflict, Forbidden) as refused:  # the last owner, or no longer an owner
            return refused

    held.armed = True
    first = asyncio.create_task(demote("ann", "ben"))
    await held.reached.wait()
    second = asyncio.create_task(demote("ben", "ann"))
    await asyncio.sleep(0.3)  # the second change runs as far as it can
    held.release.set()
    outcomes = await asyncio.gather(first, second)
    assert sum(isinstance(o, Conflict | Forbidden) for o in outcomes) == 1
    left = [m for m in await members.members("acme") if m.role == "owner"]
    assert len(left) == 1
