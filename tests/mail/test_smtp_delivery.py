"""Durable delivery end to end: the core's DeliveryService over the in-memory store, sending
through the SMTP sender to a real aiosmtpd sink on 127.0.0.1."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest
from attrs import define

from handoff_core import (
    DeliveryService,
    DeliverySettings,
    DeliveryStatus,
    EventType,
    Handoff,
    HandoffService,
    MemberService,
    RetrySchedule,
)
from handoff_core.links import ClaimLinks
from handoff_core.model import Delivery, TimelineEvent
from handoff_mail import SmtpSender, SmtpSettings
from handoff_memory import ManualClock, MemoryDatabase

if TYPE_CHECKING:
    from conftest import SilentServer, Sink, SinkServer

SUMMARY = "VPN wön't connect after Win update"
SENIORS = {"bob": "engineer", "carol": "admin", "dan": "owner", "erin": "engineer"}
RETRY = RetrySchedule(base_seconds=10, cap_seconds=60, attempts=3)


@define
class World:
    db: MemoryDatabase
    clock: ManualClock
    handoffs: HandoffService
    handoff: Handoff
    senders: list[SmtpSender]

    def delivery_service(self, port: int, query: str = "") -> DeliveryService:
        sender = SmtpSender(
            SmtpSettings.from_url(f"smtp://127.0.0.1:{port}{query}", "Handoff <handoff@acme.test>")
        )
        self.senders.append(sender)
        settings = DeliverySettings(
            public_url="https://handoff.acme.test", retry=RETRY, claim_links=self.links()
        )
        return DeliveryService(self.db, self.clock, sender, settings=settings)

    def links(self) -> ClaimLinks:
        return ClaimLinks(
            "smtp-test-link-secret-of-32-bytes!", "https://handoff.acme.test", self.clock
        )

    async def deliveries(self) -> list[Delivery]:
        async with self.db() as uow:
            return await uow.deliveries.for_handoff("acme", self.handoff.id)

    async def by_recipient(self) -> dict[str, Delivery]:
        return {d.recipient_id: d for d in await self.deliveries()}

    async def timeline(self) -> list[TimelineEvent]:
        async with self.db() as uow:
            return await uow.timeline.for_session("acme", self.handoff.session_id)

    def past_any_backoff(self) -> None:
        self.clock.advance(RETRY.cap_seconds + 1)


@pytest.fixture
async def world() -> AsyncIterator[World]:
    """An account with an escalation raised by Alice; SMTP pools opened are closed at the end."""
    db, clock = MemoryDatabase(), ManualClock()
    members = MemberService(db, clock)
    await members.upsert("acme", "alice", email="alice@acme.test", name="Alice", role="engineer")
    for member_id, role in SENIORS.items():
        await members.upsert(
            "acme", member_id, email=f"{member_id}@acme.test", name=member_id.title(), role=role
        )
    await members.upsert("acme", "vic", email="vic@acme.test", name="Vic", role="viewer")
    await members.upsert(
        "acme", "ian", email="ian@acme.test", name="Ian", role="engineer", active=False
    )
    await members.upsert("other", "zed", email="zed@other.test", name="Zed", role="owner")
    handoffs = HandoffService(db, clock)
    session = await handoffs.start_session("acme", "alice", SUMMARY, {"messages": []})
    handoff = await handoffs.escalate("acme", "alice", session.id, "Stuck on the auth handshake")
    built = World(db=db, clock=clock, handoffs=handoffs, handoff=handoff, senders=[])
    yield built
    await asyncio.gather(*(sender.close() for sender in built.senders))


SENIOR_ADDRESSES = sorted(f"{m}@acme.test" for m in SENIORS)


async def test_every_eligible_senior_gets_exactly_one_message_with_the_summary(
    world: World, smtp_server: SinkServer, sink: Sink
) -> None:
    service = world.delivery_service(smtp_server.port)

    sent = await service.dispatch("acme", world.handoff.id)

    assert sent == len(SENIORS)
    assert sorted(sink.recipients()) == SENIOR_ADDRESSES
    deliveries = await world.deliveries()
    for message in sink.messages():
        assert message["Subject"] == f"Escalation: {SUMMARY}"
        plain = message.get_body(("plain",))
        assert plain is not None
        assert "Alice" in plain.get_content()
        # each recipient's own claim link, in both parts (quoted-printable undone)
        html = message.get_body(("html",))
        assert html is not None
        [token] = re.findall(r"https://handoff\.acme\.test/claim/([\w.-]+)", plain.get_content())
        assert f"https://handoff.acme.test/claim/{token}" in html.get_content()
        ticket = world.links().read(token)
        assert (ticket.handoff_id, f"{ticket.member_id}@acme.test") == (
            world.handoff.id,
            message["To"].split("<")[-1].rstrip(">"),
        )
    assert sorted(m["Message-ID"] for m in sink.messages()) == sorted(
        d.message_id for d in deliveries
    )
    assert {(d.status, d.attempts) for d in deliveries} == {(DeliveryStatus.SENT, 1)}
    sent_events = [e for e in await world.timeline() if e.type is EventType.DELIVERY_SENT]
    assert sorted(str(e.data["recipient_id"]) for e in sent_events) == sorted(SENIORS)


async def test_a_refused_address_fails_after_one_attempt_and_the_others_are_sent(
    world: World, smtp_server: SinkServer, sink: Sink
) -> None:
    sink.refuse["carol@acme.test"] = "550 5.1.1 No such user here"
    service = world.delivery_service(smtp_server.port)

    await service.dispatch("acme", world.handoff.id)
    world.past_any_backoff()
    await service.run_once()  # nothing left to retry: a 5xx is final

    by_recipient = await world.by_recipient()
    carol = by_recipient.pop("carol")
    assert (carol.status, carol.attempts) == (DeliveryStatus.FAILED, 1)
    assert carol.last_error is not None and carol.last_error.startswith("550")
    assert {d.status for d in by_recipient.values()} == {DeliveryStatus.SENT}
    assert sorted(sink.recipients()) == [a for a in SENIOR_ADDRESSES if a != "carol@acme.test"]
    failed = [e for e in await world.timeline() if e.type is EventType.DELIVERY_FAILED]
    assert [e.data["recipient_id"] for e in failed] == ["carol"]


async def test_a_relay_that_closes_after_each_message_delays_nobody(
    world: World, smtp_server: SinkServer, sink: Sink
) -> None:
    sink.close_after_message = True
    service = world.delivery_service(smtp_server.port, "?pool=1")

    sent = await service.dispatch("acme", world.handoff.id)

    assert sent == len(SENIORS)
    assert sorted(sink.recipients()) == SENIOR_ADDRESSES
    deliveries = await world.deliveries()
    assert {(d.status, d.attempts, d.last_error) for d in deliveries} == {
        (DeliveryStatus.SENT, 1, None)
    }


async def test_451_then_success_is_retried_after_the_backoff_and_sent(
    world: World, smtp_server: SinkServer, sink: Sink
) -> None:
    sink.defer_rcpt = 1
    service = world.delivery_service(smtp_server.port, "?pool=1")

    assert await service.dispatch("acme", world.handoff.id) == len(SENIORS) - 1
    (deferred,) = [d for d in await world.deliveries() if d.status is DeliveryStatus.PENDING]
    assert deferred.attempts == 1
    assert deferred.last_error is not None and deferred.last_error.startswith("451")

    assert await service.run_once() == 0  # not due yet: the backoff holds it back
    world.past_any_backoff()
    assert await service.run_once() == 1

    retried = (await world.by_recipient())[deferred.recipient_id]
    assert (retried.status, retried.attempts, retried.last_error) == (DeliveryStatus.SENT, 2, None)
    assert Counter(sink.recipients()) == Counter(SENIOR_ADDRESSES)
    (message,) = sink.to(deferred.address)
    assert message["Message-ID"] == deferred.message_id


async def test_with_smtp_down_deliveries_wait_and_go_out_once_when_it_is_back(
    world: World, stopped_smtp_server: SinkServer
) -> None:
    service = world.delivery_service(stopped_smtp_server.port, "?timeout=5")

    assert await service.dispatch("acme", world.handoff.id) == 0

    waiting = await world.deliveries()
    assert {(d.status, d.attempts) for d in waiting} == {(DeliveryStatus.PENDING, 1)}
    assert all(d.last_error and "could not connect" in d.last_error for d in waiting)

    stopped_smtp_server.start()
    world.past_any_backoff()
    assert await service.run_once() == len(SENIORS)
    world.past_any_backoff()
    assert await service.run_once() == 0

    assert sorted(stopped_smtp_server.sink.recipients()) == SENIOR_ADDRESSES
    assert {(d.status, d.attempts) for d in await world.deliveries()} == {(DeliveryStatus.SENT, 2)}


async def test_a_hanging_server_times_out_and_leaves_deliveries_pending(
    world: World, silent_server: SilentServer
) -> None:
    service = world.delivery_service(silent_server.port, "?timeout=0.5")

    async with asyncio.timeout(20):
        assert await service.dispatch("acme", world.handoff.id) == 0

    waiting = await world.deliveries()
    assert {(d.status, d.attempts) for d in waiting} == {(DeliveryStatus.PENDING, 1)}
    assert all(d.last_error and "timed out" in d.last_error for d in waiting)
    assert not [e for e in await world.timeline() if e.type.value.startswith("delivery.")]


async def test_after_the_last_transient_failure_a_delivery_is_dead(
    world: World, smtp_server: SinkServer, sink: Sink
) -> None:
    sink.defer_rcpt = 10_000
    service = world.delivery_service(smtp_server.port)

    await service.dispatch("acme", world.handoff.id)
    for _ in range(RETRY.attempts - 1):
        world.past_any_backoff()
        await service.run_once()

    deliveries = await world.deliveries()
    assert {(d.status, d.attempts) for d in deliveries} == {(DeliveryStatus.DEAD, RETRY.attempts)}
    world.past_any_backoff()
    assert await service.run_once() == 0
    assert sink.recipients() == []
    dead = [e for e in await world.timeline() if e.type is EventType.DELIVERY_DEAD]
    assert sorted(str(e.data["recipient_id"]) for e in dead) == sorted(SENIORS)


async def test_a_reminder_goes_out_worded_as_a_reminder(
    world: World, smtp_server: SinkServer, sink: Sink
) -> None:
    service = world.delivery_service(smtp_server.port)
    await service.dispatch("acme", world.handoff.id)

    world.clock.advance(10 * 60 + 1)
    assert await service.run_once() == len(SENIORS)

    messages = sink.messages()
    reminders = [m for m in messages if m["Subject"].startswith("Reminder")]
    originals = [m for m in messages if m["Subject"].startswith("Escalation")]
    assert len(reminders) == len(originals) == len(SENIORS) == len(messages) // 2
    assert sorted(str(m["To"].addresses[0].addr_spec) for m in reminders) == SENIOR_ADDRESSES
    assert {m["Subject"] for m in reminders} == {f"Reminder 1: still unclaimed: {SUMMARY}"}
    plain = reminders[0].get_body(("plain",))
    assert plain is not None and "still waiting for someone to claim it" in plain.get_content()
    assert {m["Message-ID"] for m in originals}.isdisjoint(m["Message-ID"] for m in reminders)
