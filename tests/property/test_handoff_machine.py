"""What must hold after every step of the state machine (SPEC §4, §5), checked against the store.

Each invariant compares the in-memory store with the plain model; the shrinker hands back a
replayable program when one breaks.
"""

from __future__ import annotations

from collections import Counter

from hypothesis import settings
from hypothesis.stateful import invariant
from tests.property.machine import HandoffMachine

from handoff_core import (
    Channel,
    DeliveryStatus,
    EventType,
    HandoffStatus,
    Intent,
    NoticeKind,
    SessionStatus,
)


class CheckedHandoffMachine(HandoffMachine):
    # --- invariants -------------------------------------------------------------------------

    @invariant()
    def members_agree_with_the_model(self) -> None:
        for (account, person), member in self.read().members.items():
            mm = self.model.members[(account, person)]
            assert member is not None and member.account_id == account
            assert (member.role, member.active) == (mm.role, mm.active)
            assert (member.deleted_at is not None) == mm.deleted

    @invariant()
    def sessions_agree_with_the_model_and_their_open_handoff(self) -> None:
        stored = self.read()
        for session_id, ms in self.model.sessions.items():
            session = stored.sessions[session_id]
            assert (session.status, session.assignee_id) == (ms.status, ms.assignee)
            handoffs = stored.handoffs[session_id]
            assert session.handoff_count == len(handoffs) == len(ms.handoffs)
            open_ = [h for h in handoffs if h.status is HandoffStatus.OPEN]
            assert len(open_) <= 1
            intents = {h.intent for h in open_}
            assert (session.status is SessionStatus.PAUSED) == (intents == {Intent.PARK})
            assert (session.status is SessionStatus.ESCALATED) == (intents == {Intent.ESCALATE})

    @invariant()
    def an_escalation_has_at_most_one_claimer(self) -> None:
        stored = self.read()
        for session_id, handoffs in stored.handoffs.items():
            claims = Counter(
                e.handoff_id
                for e in stored.timeline[session_id]
                if e.type is EventType.ESCALATION_CLAIMED
            )
            for h in handoffs:
                mh = self.model.handoffs[h.id]
                assert (h.status, h.claimed_by) == (mh.status, mh.claimed_by)
                claimed = h.status is HandoffStatus.CLAIMED
                assert claimed == (h.claimed_by is not None) == (h.claimed_at is not None)
                assert claims[h.id] == (1 if claimed else 0)

    @invariant()
    def deliveries_reach_exactly_the_eligible_members(self) -> None:
        stored = self.read()
        for handoff_id, deliveries in stored.deliveries.items():
            mh = self.model.handoffs[handoff_id]
            if mh.intent is Intent.PARK:
                assert deliveries == []
                continue
            assert mh.policy is not None
            for d in deliveries:
                assert d.account_id == mh.account
                assert d.address == f"{d.recipient_id}@{mh.account}.test"
            first = [d for d in deliveries if d.kind is NoticeKind.ESCALATION]
            assert {d.recipient_id for d in first} == mh.recipients
            for person in mh.recipients:
                channels = Counter(d.channel for d in first if d.recipient_id == person)
                if person not in mh.online:
                    assert channels == Counter({Channel.EMAIL: 1})
                elif mh.policy.email_online_too:
                    assert channels == Counter({Channel.PUSH: 1, Channel.EMAIL: 1})
                else:
                    assert channels[Channel.PUSH] == 1 and channels[Channel.EMAIL] <= 1
            reminders = [d for d in deliveries if d.kind is NoticeKind.REMINDER]
            assert {d.round for d in reminders} <= set(mh.reminded)
            for round, wanted in mh.reminded.items():
                got = [d for d in reminders if d.round == round]
                assert sorted(d.recipient_id for d in got) == sorted(wanted)
                assert {d.channel for d in got} <= {Channel.EMAIL}
            if mh.status in (HandoffStatus.WITHDRAWN, HandoffStatus.CLAIMED):
                # A claim or a withdrawal stops every unsent notice (SPEC §11).
                assert all(d.status is not DeliveryStatus.PENDING for d in deliveries)

    @invariant()
    def nothing_crosses_accounts(self) -> None:
        stored = self.read()
        for session_id, session in stored.sessions.items():
            account = self.model.sessions[session_id].account
            assert session.account_id == account
            ids = {h.id for h in stored.handoffs[session_id]}
            assert ids == set(self.model.sessions[session_id].handoffs)
            for h in stored.handoffs[session_id]:
                assert (h.account_id, h.session_id) == (account, session_id)
                assert all(d.account_id == account for d in stored.deliveries[h.id])
            for e in stored.timeline[session_id]:
                assert (e.account_id, e.session_id) == (account, session_id)
                assert e.handoff_id is None or e.handoff_id in ids


CheckedHandoffMachine.TestCase.settings = settings(stateful_step_count=50, deadline=None)
TestHandoffMachine = CheckedHandoffMachine.TestCase
