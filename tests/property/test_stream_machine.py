"""SPEC §10 as a state machine: escalate, claim, withdraw, remove a member, connect, drop,
reconnect with the last id seen, mark seen. The library (memory adapters, the real relay of
handoff_push, the stream service) runs beside a plain model of the account's sequence; what each
member's client has received must be exactly the model's events for that member, in order.

A client here does what the HTTP stream does: subscribe, then either take the position (first
connection) or replay after its last id, then read live events, skipping ids it already has.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from contextlib import AbstractAsyncContextManager
from itertools import count
from typing import Any, TypeVar

from attrs import define, field
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from handoff_app.live import LogSource, StreamGuard
from handoff_core import (
    Channel,
    DeliveryStatus,
    HandoffError,
)
from handoff_core.bootstrap import wire
from handoff_memory import ManualClock, MemoryDatabase, MemoryPresence, RecordingMailSender
from handoff_push import InProcessHub, Subscription

T = TypeVar("T")
ACME = "acme"
ROLES = {"olga": "owner", "adam": "admin", "erin": "engineer", "eve": "engineer"}
PEOPLE = sorted(ROLES)
people = st.sampled_from(PEOPLE)


@define
class ModelEvent:
    seq: int
    type: str
    handoff_id: str
    audience: frozenset[str] | None  # None: every senior

    def visible_to(self, member: str) -> bool:
        return self.audience is None or member in self.audience


@define
class Client:
    """One member's browser: the events it got, and the id it would reconnect with."""

    received: list[tuple[int, str, str]] = field(factory=list)  # (seq, type, handoff_id)
    last: int | None = None
    start: int = 0  # the position of its very first connection
    sub: Subscription | None = None
    context: AbstractAsyncContextManager[Subscription] | None = None
    marked: int = 0


class StreamMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.db = MemoryDatabase()
        self.clock = ManualClock()
        self.presence = MemoryPresence()
        self.hub = InProcessHub(LogSource(self.db))
        numbers = count(1)

        def make_id() -> str:  # ids in step order, so a replayed program draws the same
            return f"x{next(numbers):04d}"

        library = wire(
            self.db,
            self.clock,
            RecordingMailSender(),
            presence=self.presence,
            hub=self.hub,
            make_id=make_id,
        )
        self.members = library.members
        self.handoffs = library.handoffs
        self.delivery = library.delivery
        self.streams = library.streams
        self.guard = StreamGuard(self.hub, self.db)
        self.events: list[ModelEvent] = []
        self.current = set(PEOPLE)
        self.open: dict[str, str] = {}  # handoff id -> escalator
        self.clients = {p: Client() for p in PEOPLE}
        for person, role in ROLES.items():
            self.run(
                self.members.upsert(
                    ACME, person, email=f"{person}@acme.test", name=person, role=role
                )
            )

    def teardown(self) -> None:
        for person in PEOPLE:
            self.drop(person)
        self.loop.close()

    def run(self, action: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(action)

    # --- the account ------------------------------------------------------------------------

    @rule(actor=people)
    def escalate(self, actor: str) -> None:
        async def go() -> str:
            session = await self.handoffs.start_session(ACME, actor, "printer")
            handoff = await self.handoffs.escalate(ACME, actor, session.id, "notes")
            await self.delivery.dispatch(ACME, handoff.id)
            return handoff.id

        try:
            handoff_id = self.run(go())
        except HandoffError:
            assert actor not in self.current
            return
        assert actor in self.current
        told = frozenset(p for p in self.current if p != actor)
        self.events.append(ModelEvent(len(self.events) + 1, "escalation.created", handoff_id, told))
        self.open[handoff_id] = actor

    @rule(data=st.data(), actor=people, claim=st.booleans())
    @precondition(lambda self: bool(self.open))
    def close(self, data: st.DataObject, actor: str, claim: bool) -> None:
        handoff_id = data.draw(st.sampled_from(sorted(self.open)))
        escalator = self.open[handoff_id]
        actor = actor if claim else escalator
        allowed = actor in self.current and (actor != escalator if claim else True)
        try:
            if claim:
                self.run(self.handoffs.claim(ACME, actor, handoff_id))
            else:
                self.run(self.handoffs.withdraw(ACME, actor, handoff_id))
        except HandoffError:
            assert not allowed
            return
        assert allowed
        kind = "escalation.claimed" if claim else "escalation.withdrawn"
        self.events.append(ModelEvent(len(self.events) + 1, kind, handoff_id, None))
        del self.open[handoff_id]

    @rule(person=people)
    @precondition(lambda self: len(self.current) > 2)
    def remove(self, person: str) -> None:
        if person not in self.current:
            return
        self.run(self.members.remove(ACME, person))
        self.current.discard(person)
        self.run(self.guard.sweep())  # what the guard does within two seconds
        client = self.clients[person]
        if client.sub is not None:
            assert client.sub.closed
            self.drop(person)

    # --- the clients ------------------------------------------------------------------------

    @rule(person=people)
    def connect(self, person: str) -> None:
        client = self.clients[person]
        if client.sub is not None or person not in self.current:
            return  # a removed member's token is refused (401) before any of this

        async def go() -> None:
            context = self.hub.subscribe(ACME, person)
            client.sub, client.context = await context.__aenter__(), context
            self.presence.enter(ACME, person)
            if client.last is None:
                client.last = client.start = await self.streams.position(ACME)
                return
            replay = await self.streams.replay(ACME, person, client.last)
            assert not replay.reset
            for event in replay.events:
                self.receive(client, event.seq or 0, event.type, event.handoff_id)

        self.run(go())

    @rule(person=people)
    def read(self, person: str) -> None:
        client = self.clients[person]
        if client.sub is None:
            return
        while not client.sub.queue.empty():
            event = client.sub.queue.get_nowait()
            if (event.seq or 0) > (client.last or 0):
                self.receive(client, event.seq or 0, event.type, event.handoff_id)

    @rule(person=people)
    def drop(self, person: str) -> None:
        client = self.clients[person]
        if client.context is None:
            return
        self.run(client.context.__aexit__(None, None, None))
        self.presence.leave(ACME, person)
        client.sub = client.context = None

    @rule(person=people)
    def mark_seen(self, person: str) -> None:
        client = self.clients[person]
        if person not in self.current or client.last is None:
            return
        self.run(self.streams.mark_seen(ACME, person, str(client.last)))
        client.marked = max(client.marked, client.last)

    def receive(self, client: Client, seq: int, type: str, handoff_id: str) -> None:
        client.received.append((seq, str(type), handoff_id))
        client.last = seq

    # --- what must hold ---------------------------------------------------------------------

    @invariant()
    def each_client_has_its_events_in_order_with_no_gap(self) -> None:
        for person, client in self.clients.items():
            mine = [e for e in self.events if e.visible_to(person) and e.seq > client.start]
            got = client.received
            assert [seq for seq, _, _ in got] == sorted({seq for seq, _, _ in got})
            assert got == [(e.seq, e.type, e.handoff_id) for e in mine[: len(got)]]

    @invariant()
    def a_connected_client_that_reads_is_up_to_date(self) -> None:
        for person in PEOPLE:
            client = self.clients[person]
            if client.sub is None:
                continue
            self.read(person)
            mine = [e for e in self.events if e.visible_to(person) and e.seq > client.start]
            assert len(client.received) == len(mine)

    @invariant()
    def seen_marks_exactly_the_pushes_up_to_the_id(self) -> None:
        async def pushes() -> list[Any]:
            async with self.db() as uow:
                found = []
                for handoff_id in {e.handoff_id for e in self.events}:
                    found += await uow.deliveries.for_handoff(ACME, handoff_id)
                return [d for d in found if d.channel is Channel.PUSH]

        for d in self.run(pushes()):
            if d.status is not DeliveryStatus.SENT:
                continue
            marked = self.clients[d.recipient_id].marked
            assert d.stream_seq is not None
            assert (d.seen_at is not None) == (d.stream_seq <= marked), d


StreamMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=40, deadline=None)
TestStreamMachine = StreamMachine.TestCase
