"""The rules of the state machine: the library and the plain model driven side by side.

Hypothesis drives sessions, handoffs, members, presence, policies, dispatch and reminders across
two accounts. Rules are synchronous, so the machine owns one event loop and runs each use case to
completion on it. The invariants live in test_handoff_machine.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from itertools import count
from typing import Any, TypeVar

from attrs import define, field
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    multiple,
    precondition,
    rule,
)
from tests.property.model import ModelMember, ModelPolicy, ModelSession, Refusals, World

from handoff_core import (
    AlreadyClaimed,
    Delivery,
    DeliveryStatus,
    EscalationPolicy,
    Forbidden,
    Handoff,
    HandoffError,
    HandoffStatus,
    Intent,
    Member,
    NotFound,
    Role,
    Session,
    SessionStatus,
    TimelineEvent,
)
from handoff_core.bootstrap import wire
from handoff_memory import (
    ManualClock,
    MemoryDatabase,
    MemoryPresence,
    RecordingMailSender,
)

T = TypeVar("T")
ACCOUNTS = ("acme", "other")
PEOPLE = ("p0", "p1", "p2", "p3", "p4")  # the same ids in both accounts, on purpose
SEED = {"p0": Role.OWNER, "p1": Role.ENGINEER, "p2": Role.ENGINEER, "p3": Role.VIEWER}

accounts = st.sampled_from(ACCOUNTS)
people = st.sampled_from(PEOPLE)
roles = st.sampled_from(list(Role))
intents = st.sampled_from(list(Intent))


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

        library = wire(
            self.db, self.clock, RecordingMailSender(), presence=self.presence, make_id=make_id
        )
        self.members = library.members
        self.service = library.handoffs
        self.delivery = library.delivery
        self.queries = library.queries
        self.model = World()
        self.seen: Stored | None = None

    def teardown(self) -> None:
        self.loop.close()

    def run(self, action: Coroutine[Any, Any, T]) -> T:
        self.seen = None  # whatever it did, the last read of the store is stale now
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

    @initialize(target=sessions)
    def seed(self) -> Any:
        """A small team and one session in each account, so every rule can run from the start."""
        for account in ACCOUNTS:
            for person, role in SEED.items():
                self.put_member(account, person, role, True, None)
        return multiple(*(self.start_session(account, "p1") for account in ACCOUNTS))

    @rule(
        account=accounts, person=people, role=roles, active=st.booleans(), actor=people | st.none()
    )
    def put_member(
        self, account: str, person: str, role: Role, active: bool, actor: str | None
    ) -> None:
        action = self.members.upsert(
            account,
            person,
            email=f"{person}@{account}.test",
            name=person,
            role=role,
            active=active,
            actor_id=actor,
        )
        refusals = self.model.expect_manage(account, actor)
        if not (active and role is Role.OWNER):
            refusals |= self.model.expect_owner_kept(account, person, actor)
        if self.attempt(action, refusals) is not None:
            self.model.members[(account, person)] = ModelMember(role, active)

    @rule(account=accounts, person=people, actor=people | st.none())
    def remove_member(self, account: str, person: str, actor: str | None) -> None:
        refusals = self.model.expect_manage(account, actor)
        member = self.model.member(account, person)
        if member is None or member.deleted:
            refusals.add(NotFound)
        refusals |= self.model.expect_owner_kept(account, person, actor)
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

    # Each action has a rule over the bundles (mostly refusals) and a rule that picks a target
    # in the state it starts from, with a likely actor, so that the happy paths run often too.

    def _hand_off(self, session_id: str, actor: str, intent: Intent) -> Any:
        account = self.model.sessions[session_id].account
        refusals = self.model.expect_worker(session_id, actor, SessionStatus.ACTIVE)
        action = self.service.hand_off(account, actor, session_id, intent, "notes")
        handoff = self.attempt(action, refusals)
        if handoff is None:
            return multiple()
        self.model.raise_handoff(handoff.id, session_id, actor, intent, self.clock.now())
        return handoff.id

    @rule(target=handoffs, session_id=sessions, actor=people, intent=intents)
    def hand_off(self, session_id: str, actor: str, intent: Intent) -> Any:
        return self._hand_off(session_id, actor, intent)

    @precondition(lambda self: bool(self.in_status(SessionStatus.ACTIVE)))
    @rule(target=handoffs, data=st.data(), intent=intents)
    def hand_off_an_active_session(self, data: st.DataObject, intent: Intent) -> Any:
        session_id = data.draw(st.sampled_from(self.in_status(SessionStatus.ACTIVE)))
        actor = data.draw(st.sampled_from([self.model.sessions[session_id].assignee, *PEOPLE]))
        return self._hand_off(session_id, actor, intent)

    def _resume(self, session_id: str, actor: str) -> None:
        account = self.model.sessions[session_id].account
        parked = self.model.open_handoff(session_id)
        refusals = self.model.expect_resume(session_id, actor)
        if self.attempt(self.service.resume(account, actor, session_id), refusals) is not None:
            assert parked is not None
            parked.status = HandoffStatus.RESUMED
            self.model.sessions[session_id].status = SessionStatus.ACTIVE

    @rule(session_id=sessions, actor=people)
    def resume(self, session_id: str, actor: str) -> None:
        self._resume(session_id, actor)

    @precondition(lambda self: bool(self.in_status(SessionStatus.PAUSED)))
    @rule(data=st.data())
    def resume_a_paused_session(self, data: st.DataObject) -> None:
        session_id = data.draw(st.sampled_from(self.in_status(SessionStatus.PAUSED)))
        parked = self.model.open_handoff(session_id)
        assert parked is not None
        self._resume(session_id, data.draw(st.sampled_from([parked.created_by, *PEOPLE])))

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
            self.run(self.service.claim(h.account, actor, handoff_id))
        except AlreadyClaimed as lost:
            assert AlreadyClaimed in refusals, f"refused unexpectedly: {lost!r}"
            assert lost.by == h.claimed_by  # the loser learns who won
        except HandoffError as error:
            assert isinstance(error, tuple(refusals)), f"{error!r} is not one of {refusals}"
        else:
            assert not refusals, f"claimed, but the spec refuses it with one of {refusals}"
            self.model.close(handoff_id, HandoffStatus.CLAIMED, actor)

    @rule(handoff_id=handoffs, actor=people)
    def claim(self, handoff_id: str, actor: str) -> None:
        self._claim(handoff_id, actor)

    @precondition(lambda self: bool(self.open_escalations()))
    @rule(data=st.data())
    def claim_an_open_escalation(self, data: st.DataObject) -> None:
        handoff_id = data.draw(st.sampled_from(self.open_escalations()))
        told = sorted(self.model.handoffs[handoff_id].recipients)
        self._claim(handoff_id, data.draw(st.sampled_from([*told, *PEOPLE])))

    def _withdraw(self, handoff_id: str, actor: str) -> None:
        h = self.model.handoffs[handoff_id]
        refusals = self.model.expect_withdraw(handoff_id, actor)
        if self.attempt(self.service.withdraw(h.account, actor, handoff_id), refusals) is not None:
            self.model.close(handoff_id, HandoffStatus.WITHDRAWN, actor)

    @rule(handoff_id=handoffs, actor=people)
    def withdraw(self, handoff_id: str, actor: str) -> None:
        self._withdraw(handoff_id, actor)

    @precondition(lambda self: bool(self.open_escalations()))
    @rule(data=st.data())
    def withdraw_an_open_escalation(self, data: st.DataObject) -> None:
        handoff_id = data.draw(st.sampled_from(self.open_escalations()))
        escalator = self.model.handoffs[handoff_id].created_by
        self._withdraw(handoff_id, data.draw(st.sampled_from([escalator, *PEOPLE])))

    def in_status(self, status: SessionStatus) -> list[str]:
        return sorted(sid for sid, s in self.model.sessions.items() if s.status is status)

    def open_escalations(self) -> list[str]:
        return sorted(
            hid
            for hid, h in self.model.handoffs.items()
            if h.intent is Intent.ESCALATE and h.status is HandoffStatus.OPEN
        )

    @rule(session_id=sessions, handoff_id=handoffs, actor=people, which=st.integers(0, 5))
    def reach_across_accounts(
        self, session_id: str, handoff_id: str, actor: str, which: int
    ) -> None:
        """Another account's ids, however they are used, name nothing."""
        svc = self.service
        s_there = elsewhere(self.model.sessions[session_id].account)
        h_there = elsewhere(self.model.handoffs[handoff_id].account)
        actions: list[tuple[str, Callable[[], Coroutine[Any, Any, object]]]] = [
            (s_there, lambda: svc.hand_off(s_there, actor, session_id, "escalate", "x")),
            (s_there, lambda: svc.resume(s_there, actor, session_id)),
            (s_there, lambda: svc.resolve(s_there, actor, session_id)),
            (s_there, lambda: self.queries.timeline(s_there, actor, session_id)),
            (h_there, lambda: svc.claim(h_there, actor, handoff_id)),
            (h_there, lambda: svc.withdraw(h_there, actor, handoff_id)),
        ]
        account, action = actions[which]
        self.attempt(action(), self.model.expect_elsewhere(account, actor))

    # --- sending ----------------------------------------------------------------------------

    @rule(handoff_id=handoffs)
    def dispatch(self, handoff_id: str) -> None:
        h = self.model.handoffs[handoff_id]
        before = self.sent(handoff_id)
        sent = self.run(self.delivery.dispatch(h.account, handoff_id))
        assert sent == self.sent(handoff_id) - before
        if h.intent is Intent.PARK:
            assert sent == 0

    @rule(
        seconds=st.sampled_from([30, 60, 300, 600, 1800]),
        work=st.sampled_from([False, False, False, True]),  # mostly leave them pending a while
    )
    def time_passes(self, seconds: int, work: bool) -> None:
        """Reminders that fell due are raised (one round per pass, so a late worker catches up
        pass by pass); with `work` a worker pass then sends a batch, else they wait."""
        self.clock.advance(seconds)
        while True:
            raised = self.run(self.delivery.remind_due())
            assert raised == self.model.remind_due(self.clock.now())
            if not raised:
                break
        if work:
            self.run(self.delivery.run_once())  # raises nothing more: the loop raised it all

    def sent(self, handoff_id: str) -> int:
        return sum(1 for d in self.read().deliveries[handoff_id] if d.status is DeliveryStatus.SENT)

    # --- what the store holds ---------------------------------------------------------------

    def read(self) -> Stored:
        """The store as it is now; read once per step however many invariants look at it."""
        if self.seen is None:
            self.seen = self.run(self._read())
        return self.seen

    async def _read(self) -> Stored:
        stored = Stored()
        async with self.db() as uow:
            for account, person in self.model.members:
                stored.members[(account, person)] = await uow.members.get(account, person)
            for session_id, ms in self.model.sessions.items():
                session = await uow.sessions.get(ms.account, session_id)
                assert session is not None, f"session {session_id} is gone"
                stored.sessions[session_id] = session
                stored.handoffs[session_id] = await uow.handoffs.for_session(ms.account, session_id)
                stored.timeline[session_id] = await uow.timeline.for_session(ms.account, session_id)
                for h in stored.handoffs[session_id]:
                    stored.deliveries[h.id] = await uow.deliveries.for_handoff(ms.account, h.id)
        return stored


@define
class Stored:
    """One consistent read of everything the model knows about."""

    members: dict[tuple[str, str], Member | None] = field(factory=dict)
    sessions: dict[str, Session] = field(factory=dict)
    handoffs: dict[str, list[Handoff]] = field(factory=dict)
    deliveries: dict[str, list[Delivery]] = field(factory=dict)
    timeline: dict[str, list[TimelineEvent]] = field(factory=dict)
