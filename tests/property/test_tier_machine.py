"""SPEC §14 tiers as a state machine: escalate, let time pass, claim, withdraw, edit the policy
mid-flight. The library (memory adapters, a manual clock, the worker's own passes) runs beside a
plain model; who was told of each escalation, and when, must be exactly the model's, and so must
the audiences of its `escalation.created` stream events and its `escalation.tier_reached` records.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from datetime import datetime
from itertools import count
from typing import Any, TypeVar

from attrs import define, field
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from handoff_core import (
    Channel,
    DeliveryService,
    DeliveryStatus,
    EscalationPolicy,
    HandoffError,
    HandoffService,
    MemberService,
    NoticeKind,
    Queries,
)
from handoff_core.model import EventType, Role
from handoff_memory import ManualClock, MemoryDatabase, RecordingMailSender

T = TypeVar("T")
ACME = "acme"
ESCALATOR = "erin"
ROLES = {"olga": "owner", "adam": "admin", "erin": "engineer", "eve": "engineer", "ed": "engineer"}
CLAIMERS = sorted(p for p in ROLES if p != ESCALATOR)
ROLE_NAMES = ("owner", "admin", "engineer")


@st.composite
def tier_lists(draw: st.DrawFn) -> list[dict[str, Any]]:
    """One to three tiers, the first at 0 s, each later one 60-900 s after the one before."""
    size = draw(st.integers(min_value=1, max_value=3))
    tiers, after = [], 0
    for index in range(size):
        if index:
            after += draw(st.integers(min_value=60, max_value=900))
        roles = draw(st.lists(st.sampled_from(ROLE_NAMES), min_size=1, max_size=3, unique=True))
        tiers.append({"roles": roles, "after_seconds": after})
    return tiers


@define
class ModelEscalation:
    policy: EscalationPolicy
    raised_at: datetime
    open: bool = True
    reached: int = 1
    pending: set[str] = field(factory=set)  # told-to-be, not sent yet
    told: dict[str, datetime] = field(factory=dict)
    audience: set[str] = field(factory=set)


class TierMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.db = MemoryDatabase()
        self.clock = ManualClock()
        numbers = count(1)

        def make_id() -> str:
            return f"x{next(numbers):05d}"

        self.members = MemberService(self.db, self.clock)
        self.handoffs = HandoffService(self.db, self.clock, make_id=make_id)
        self.delivery = DeliveryService(self.db, self.clock, RecordingMailSender())
        self.queries = Queries(self.db)
        self.policy = EscalationPolicy()
        self.model: dict[str, ModelEscalation] = {}
        self.sessions: dict[str, str] = {}
        for person, role in ROLES.items():
            self.run(
                self.members.upsert(
                    ACME, person, email=f"{person}@acme.test", name=person, role=role
                )
            )
        self.set_policy_to([{"roles": ["engineer"], "after_seconds": 0}])

    def teardown(self) -> None:
        self.loop.close()

    def run(self, action: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(action)

    def set_policy_to(self, tiers: list[dict[str, Any]]) -> None:
        raw = {"tiers": tiers, "max_reminders": 0, "push_confirm_seconds": 0}
        self.policy = self.run(self.members.set_policy(ACME, raw, actor_id="olga"))

    def _new_members(self, esc: ModelEscalation, tier: int) -> set[str]:
        roles = esc.policy.new_roles(tier)
        return {
            p
            for p, role in ROLES.items()
            if p != ESCALATOR and Role(role) in roles and Role(role) in self.policy.roles
        }

    # --- rules ------------------------------------------------------------------------------

    @rule(tiers=tier_lists())
    def edit_the_policy(self, tiers: list[dict[str, Any]]) -> None:
        self.set_policy_to(tiers)

    @rule()
    def escalate(self) -> None:
        async def go() -> tuple[str, str]:
            session = await self.handoffs.start_session(ACME, ESCALATOR, "printer")
            handoff = await self.handoffs.escalate(ACME, ESCALATOR, session.id, "notes")
            return handoff.id, session.id

        handoff_id, session_id = self.run(go())
        esc = ModelEscalation(policy=self.policy, raised_at=self.clock.now())
        roles = esc.policy.new_roles(1)
        esc.pending = {p for p, role in ROLES.items() if p != ESCALATOR and Role(role) in roles}
        esc.audience = set(esc.pending)
        self.model[handoff_id] = esc
        self.sessions[handoff_id] = session_id

    @rule(seconds=st.sampled_from([0, 30, 59, 60, 61, 300, 899, 900, 1800]))
    def let_time_pass(self, seconds: int) -> None:
        now = self.clock.advance(seconds)

        async def work() -> None:
            for _ in range(50):
                raised = await self.delivery.raise_tiers_due()
                sent = await self.delivery.run_once()
                if not raised and not sent:
                    return
            raise AssertionError("the worker never settled")

        self.run(work())
        for esc in self.model.values():
            if not esc.open:
                continue
            for person in esc.pending:  # sent at this pass, if the policy still tells them
                if Role(ROLES[person]) in self.policy.roles:
                    esc.told[person] = now
            esc.pending = set()
            steps = esc.policy.steps
            while esc.reached < len(steps):
                due = esc.policy.tier_at(esc.raised_at, esc.reached + 1)
                assert due is not None
                if due > now:
                    break
                esc.reached += 1
                new = self._new_members(esc, esc.reached)
                esc.audience |= new
                for person in new:
                    esc.told.setdefault(person, now)

    @rule(data=st.data(), claimer=st.sampled_from(CLAIMERS), claim=st.booleans())
    @precondition(lambda self: bool(self.model))
    def close(self, data: st.DataObject, claimer: str, claim: bool) -> None:
        handoff_id = data.draw(st.sampled_from(sorted(self.model)))
        esc = self.model[handoff_id]
        try:
            if claim:
                self.run(self.handoffs.claim(ACME, claimer, handoff_id))
            else:
                self.run(self.handoffs.withdraw(ACME, ESCALATOR, handoff_id))
        except HandoffError:
            assert not esc.open
            return
        assert esc.open
        esc.open = False
        esc.pending = set()

    # --- what must hold ---------------------------------------------------------------------

    @invariant()
    def who_was_told_when_is_the_model(self) -> None:
        for handoff_id, esc in self.model.items():
            deliveries = self.run(self.queries.deliveries(ACME, "olga", handoff_id))
            told = {
                d.recipient_id: d.sent_at
                for d in deliveries
                if d.kind is NoticeKind.ESCALATION
                and d.channel is Channel.EMAIL
                and d.status is DeliveryStatus.SENT
            }
            assert len(told) == sum(
                1
                for d in deliveries
                if d.kind is NoticeKind.ESCALATION and d.status is DeliveryStatus.SENT
            ), "someone was told twice"
            assert told == esc.told, handoff_id

    @invariant()
    def the_stream_and_the_timeline_follow_the_tiers(self) -> None:
        events = self.run(self.db().__aenter__())
        try:
            stream = self.run(events.stream.after(ACME, 0, 10_000))
        finally:
            self.run(events.rollback())
        for handoff_id, esc in self.model.items():
            audiences = [
                e.audience or frozenset()
                for e in stream
                if e.handoff_id == handoff_id and e.type == "escalation.created"
            ]
            assert set().union(*audiences) == esc.audience
            assert sum(len(a) for a in audiences) == len(esc.audience), "told twice on the stream"
            timeline = self.run(self.queries.timeline(ACME, "olga", self.sessions[handoff_id]))
            reached = [e for e in timeline if e.type is EventType.ESCALATION_TIER_REACHED]
            assert [e.data["tier"] for e in reached] == list(range(2, esc.reached + 1))
            handoff = self.run(self.queries.handoff(ACME, "olga", handoff_id))
            assert handoff.tiers_reached == esc.reached


TestTiers = TierMachine.TestCase
