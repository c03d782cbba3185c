"""The library and a plain model side by side (SPEC §4, §5), across two accounts.

Hypothesis drives sessions, handoffs, members, presence, policies, dispatch and reminders; after
every step the invariants compare what the in-memory store holds with the model. Rules are
synchronous, so the machine owns one event loop and runs each use case to completion on it.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Coroutine
from itertools import count
from typing import Any, TypeVar

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
)

from handoff_core import (
    AlreadyClaimed,
    Channel,
    Delivery,
    DeliveryService,
    DeliveryStatus,
    EscalationPolicy,
    EventType,
    Handoff,
    HandoffError,
    HandoffService,
    HandoffStatus,
    Intent,
    MemberService,
    NoticeKind,
    Queries,
    Role,
    Session,
    SessionStatus,
    TimelineEvent,
)
from handoff_memory import (
    ManualClock,
    MemoryDatabase,
    MemoryPresence,
    RecordingMailSender,
    RecordingPushHub,
)
from tests.property.model import ModelMember, ModelPolicy, Refusals, World

T = TypeVar("T")
ACCOUNTS = ("acme", "other")
PEOPLE = ("p0", "p1", "p2", "p3", "p4")  # the same ids in both accounts, on purpose
SEED = {"p0": Role.OWNER, "p1": Role.ENGINEER, "p2": Role.ENGINEER, "p3": Role.VIEWER}

accounts = st.sampled_from(ACCOUNTS)
people = st.sampled_from(PEOPLE)
roles = st.sampled_from(list(Role))


def elsewhere(account: str) -> str:
    return ACCOUNTS[1] if account == ACCOUNTS[0] else ACCOUNTS[0]


class HandoffMachine(RuleBasedStateMachine):
    sessions = Bundle("sessions")
    handoffs = Bundle("handoffs")

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.db = MemoryDatabase()
        self.clock = ManualClock()
        self.presence = MemoryPresence()
        numbers = count(1)

        def make_id() -> str:
            return f"x{next(numbers)}"

        self.members = MemberService(self.db, self.clock)
        self.service = HandoffService(self.db, self.clock, presence=self.presence, make_id=make_id)
        self.delivery = DeliveryService(
            self.db,
            self.clock,
            RecordingMailSender(),
            hub=RecordingPushHub(),
            presence=self.presence,
            make_id=make_id,
        )
        self.queries = Queries(self.db)
        self.model = World()

    def teardown(self) -> None:
        self.loop.close()

    def run(self, action: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(action)

    def attempt(self, action: Coroutine[Any, Any, T], refusals: Refusals) -> T | None:
        """Run `action`: it must succeed when nothing is expected, else raise one of `refusals`."""
        try:
            result = self.run(action)
        except HandoffError as error:
            assert refusals, f"refused unexpectedly: {error!r}"
            assert isinstance(error, tuple(refusals)), f"{error!r} is not one of {refusals}"
            return None
        assert not refusals, f"succeeded, but the spec refuses it with one of {refusals}"
        return result

    # --- members, presence, policy ----------------------------------------------------------

    @initialize()
    def seed_teams(self) -> None:
        for account in ACCOUNTS:
            for person, role in SEED.items():
                self.put_member(account, person, role, True, None)

    @rule(account=accounts, person=people, role=roles, active=st.booleans(), actor=people | st.none())
    def put_member(
        self, account: str, person: str, role: Role, active: bool, actor: str | None
    ) -> None:
        action = self.members.upsert(
            account, person, email=f"{person}@{account}.test", name=person, role=role,
            active=active, actor_id=actor,
        )
        if self.attempt(action, self.model.expect_manage(account, actor)) is not None:
            self.model.members[(account, person)] = ModelMember(role, active)

    @rule(account=accounts, person=people, actor=people | st.none())
    def remove_member(self, account: str, person: str, actor: str | None) -> None:
        refusals = self.model.expect_manage(account, actor)
        member = self.model.member(account, person)
        if member is None or member.deleted:
            refusals.add(NotFound)
        self.attempt(self.members.remove(account, person, actor_id=actor), refusals)
        if not refusals:
            assert member is not None
            member.deleted = True

    @rule(account=accounts, person=people)
    def toggle_presence(self, account: str, person: str) -> None:
        key = (account, person)
        if key in self.model.online:
            self.presence.leave(account, person)
            self.model.online.discard(key)
        else:
            self.presence.enter(account, person)
            self.model.online.add(key)

    @rule(
        account=accounts,
        chosen=st.frozensets(st.sampled_from([Role.OWNER, Role.ADMIN, Role.ENGINEER]), min_size=1),
        email_online_too=st.booleans(),
        remind_after=st.sampled_from([60, 600]),
        max_reminders=st.integers(min_value=0, max_value=2),
    )
    def set_policy(
        self,
        account: str,
        chosen: frozenset[Role],
        email_online_too: bool,
        remind_after: int,
        max_reminders: int,
    ) -> None:
        policy = EscalationPolicy(chosen, email_online_too, remind_after, max_reminders)
        self.run(self.members.set_policy(account, policy))
        self.model.policies[account] = ModelPolicy(
            chosen, email_online_too, remind_after, max_reminders
        )

    # --- sessions and handoffs --------------------------------------------------------------

    @rule(target=sessions, account=accounts, actor=people)
    def start_session(self, account: str, actor: str) -> Any:
        refusals: Refusals = set() if self.model.can_act(account, actor) else {Forbidden}
        session = self.attempt(self.service.start_session(account, actor, "summary"), refusals)
        if session is None:
            return multiple()
        self.model.sessions[session.id] = ModelSession(account, actor, actor)
        return session.id

    @rule(target=handoffs, session_id=sessions, actor=people, intent=st.sampled_from(list(Intent)))
    def hand_off(self, session_id: str, actor: str, intent: Intent) -> Any:
        account = self.model.sessions[session_id].account
        refusals = self.model.expect_worker(session_id, actor, SessionStatus.ACTIVE)
        action = self.service.hand_off(account, actor, session_id, intent, "notes")
        handoff = self.attempt(action, refusals)
        if handoff is None:
            return multiple()
        self.model.raise_handoff(handoff.id, session_id, actor, intent, self.clock.now())
        return handoff.id

    @rule(session_id=sessions, actor=people)
    def resume(self, session_id: str, actor: str) -> None:
        account = self.model.sessions[session_id].account
        parked = self.model.open_handoff(session_id)
        refusals = self.model.expect_resume(session_id, actor)
        if self.attempt(self.service.resume(account, actor, session_id), refusals) is not None:
            assert parked is not None
            parked.status = HandoffStatus.RESUMED
            self.model.sessions[session_id].status = SessionStatus.ACTIVE

    @rule(session_id=sessions, actor=people)
    def resolve(self, session_id: str, actor: str) -> None:
        account = self.model.sessions[session_id].account
        refusals = self.model.expect_worker(session_id, actor, SessionStatus.ACTIVE)
        if self.attempt(self.service.resolve(account, actor, session_id), refusals) is not None:
            self.model.sessions[session_id].status = SessionStatus.RESOLVED

    def _claim(self, handoff_id: str, actor: str) -> None:
        h = self.model.handoffs[handoff_id]
        refusals = self.model.expect_claim(handoff_id, actor)
        try:
            result = self.attempt(self.service.claim(h.account, actor, handoff_id), refusals)
        except AssertionError:
            raise
        if result is not None:
            self.model.close(handoff_id, HandoffStatus.CLAIMED, actor)
        elif refusals == {AlreadyClaimed}:
            winner = self.run(self.queries.handoff(h.account, actor, handoff_id)).claimed_by
            assert winner == h.claimed_by

    @rule(handoff_id=handoffs, actor=people)
    def claim(self, handoff_id: str, actor: str) -> None:
        self._claim(handoff_id, actor)

    @precondition(lambda self: any(h.intent is Intent.ESCALATE and h.status is HandoffStatus.OPEN
                                   for h in self.model.handoffs.values()))
    @rule(data=st.data(), actor=people)
    def claim_an_open_escalation(self, data: st.DataObject, actor: str) -> None:
        open_ones = sorted(
            hid
            for hid, h in self.model.handoffs.items()
            if h.intent is Intent.ESCALATE and h.status is HandoffStatus.OPEN
        )
        self._claim(data.draw(st.sampled_from(open_ones)), actor)

    @rule(handoff_id=handoffs, actor=people)
    def withdraw(self, handoff_id: str, actor: str) -> None:
        h = self.model.handoffs[handoff_id]
        refusals = self.model.expect_withdraw(handoff_id, actor)
        if self.attempt(self.service.withdraw(h.account, actor, handoff_id), refusals) is not None:
            self.model.close(handoff_id, HandoffStatus.WITHDRAWN, actor)

    @rule(session_id=sessions, handoff_id=handoffs, actor=people, which=st.integers(0, 5))
    def reach_across_accounts(self, session_id: str, handoff_id: str, actor: str, which: int) -> None:
        """Another account's ids, however they are used, name nothing."""
        s, h = self.model.sessions[session_id], self.model.handoffs[handoff_id]
        there = elsewhere(s.account)
        svc = self.service
        action: Coroutine[Any, Any, object] = [
            svc.hand_off(there, actor, session_id, "escalate", "x"),
            svc.resume(there, actor, session_id),
            svc.resolve(there, actor, session_id),
            self.queries.timeline(there, actor, session_id),
            svc.claim(elsewhere(h.account), actor, handoff_id),
            svc.withdraw(elsewhere(h.account), actor, handoff_id),
        ][which]
        self.attempt(action, self.model.expect_elsewhere(there if which < 4 else elsewhere(h.account), actor))
