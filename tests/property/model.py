"""A plain model of SPEC §4 and §5 for the state machine: dicts and sets, no library code.

Each `expect_*` returns the refusals the spec allows for an action; empty means it must succeed.
Where two refusals both apply (a viewer acting on a session in the wrong state), either may come.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from attrs import define, field

from handoff_core import (
    AlreadyClaimed,
    Conflict,
    Forbidden,
    HandoffError,
    HandoffStatus,
    Intent,
    InvalidTransition,
    NotFound,
    Role,
    SessionStatus,
)

Refusals = set[type[HandoffError]]
SENIOR = {Role.OWNER, Role.ADMIN, Role.ENGINEER}
MANAGER = {Role.OWNER, Role.ADMIN}


@define
class ModelMember:
    role: Role
    active: bool = True
    deleted: bool = False

    @property
    def current(self) -> bool:
        return self.active and not self.deleted

    @property
    def can_act(self) -> bool:
        return self.current and self.role in SENIOR

    @property
    def manager(self) -> bool:
        return self.can_act and self.role in MANAGER


@define
class ModelPolicy:
    roles: frozenset[Role] = frozenset(SENIOR)
    email_online_too: bool = False
    remind_after: int = 600
    max_reminders: int = 2


@define
class ModelSession:
    account: str
    owner: str
    assignee: str
    status: SessionStatus = SessionStatus.ACTIVE
    handoffs: list[str] = field(factory=list)


@define
class ModelHandoff:
    account: str
    session: str
    intent: Intent
    created_by: str
    created_at: datetime
    policy: ModelPolicy | None = None
    status: HandoffStatus = HandoffStatus.OPEN
    claimed_by: str | None = None
    recipients: frozenset[str] = frozenset()
    online: frozenset[str] = frozenset()
    reminders_sent: int = 0
    next_reminder_at: datetime | None = None
    reminded: dict[int, frozenset[str]] = field(factory=dict)


@define
class World:
    members: dict[tuple[str, str], ModelMember] = field(factory=dict)
    policies: dict[str, ModelPolicy] = field(factory=dict)
    online: set[tuple[str, str]] = field(factory=set)
    sessions: dict[str, ModelSession] = field(factory=dict)
    handoffs: dict[str, ModelHandoff] = field(factory=dict)

    def member(self, account: str, person: str) -> ModelMember | None:
        return self.members.get((account, person))

    def current(self, account: str, person: str) -> bool:
        m = self.member(account, person)
        return m is not None and m.current

    def can_act(self, account: str, person: str) -> bool:
        m = self.member(account, person)
        return m is not None and m.can_act

    def manager(self, account: str, person: str) -> bool:
        m = self.member(account, person)
        return m is not None and m.manager

    def policy(self, account: str) -> ModelPolicy:
        return self.policies.get(account, ModelPolicy())

    def eligible(self, account: str, roles: frozenset[Role], escalator: str) -> frozenset[str]:
        return frozenset(
            person
            for (acc, person), m in self.members.items()
            if acc == account and m.current and m.role in roles and person != escalator
        )

    def open_handoff(self, session_id: str) -> ModelHandoff | None:
        for hid in self.sessions[session_id].handoffs:
            if self.handoffs[hid].status is HandoffStatus.OPEN:
                return self.handoffs[hid]
        return None

    # --- what the spec allows ---------------------------------------------------------------

    def expect_manage(self, account: str, actor: str | None) -> Refusals:
        return set() if actor is None or self.manager(account, actor) else {Forbidden}

    def expect_owner_kept(self, account: str, person: str, actor: str | None) -> Refusals:
        """An actor's change that takes away the account's last current owner is a Conflict."""
        owners = {
            p
            for (a, p), m in self.members.items()
            if a == account and m.current and m.role is Role.OWNER
        }
        return {Conflict} if actor is not None and owners == {person} else set()

    def expect_worker(self, session_id: str, actor: str, wanted: SessionStatus) -> Refusals:
        """Park, escalate and resolve: the assignee or a manager, from one status."""
        s = self.sessions[session_id]
        if not self.current(s.account, actor):
            return {Forbidden}
        refusals: Refusals = set()
        if not self.can_act(s.account, actor) or (
            actor != s.assignee and not self.manager(s.account, actor)
        ):
            refusals.add(Forbidden)
        if s.status is not wanted:
            refusals.add(InvalidTransition)
        return refusals

    def expect_resume(self, session_id: str, actor: str) -> Refusals:
        s = self.sessions[session_id]
        if not self.current(s.account, actor):
            return {Forbidden}
        refusals: Refusals = set()
        if not self.can_act(s.account, actor):
            refusals.add(Forbidden)
        parked = self.open_handoff(session_id)
        if s.status is not SessionStatus.PAUSED or parked is None:
            refusals.add(InvalidTransition)
        elif actor != parked.created_by and not self.manager(s.account, actor):
            refusals.add(Forbidden)
        return refusals

    def _closed(self, h: ModelHandoff) -> Refusals:
        if h.status is HandoffStatus.CLAIMED:
            return {AlreadyClaimed}
        return set() if h.status is HandoffStatus.OPEN else {InvalidTransition}

    def _on_escalation(self, h: ModelHandoff, actor: str, barred: bool) -> Refusals:
        """Claim and withdraw: a current senior member, on an escalation (not a park) still open;
        `barred` is the one rule that differs, who of them may not."""
        if not self.current(h.account, actor):
            return {Forbidden}
        refusals: Refusals = set()
        if not self.can_act(h.account, actor):
            refusals.add(Forbidden)
        if h.intent is Intent.PARK:
            return refusals | {InvalidTransition}
        if barred:
            refusals.add(Forbidden)
        return refusals | self._closed(h)

    def expect_claim(self, handoff_id: str, actor: str) -> Refusals:
        h = self.handoffs[handoff_id]
        return self._on_escalation(h, actor, barred=actor == h.created_by)

    def expect_withdraw(self, handoff_id: str, actor: str) -> Refusals:
        h = self.handoffs[handoff_id]
        barred = actor != h.created_by and not self.manager(h.account, actor)
        return self._on_escalation(h, actor, barred)

    def expect_elsewhere(self, account: str, actor: str) -> Refusals:
        """Another account's object, asked for by `actor` of `account`: it does not exist."""
        return {NotFound} if self.current(account, actor) else {Forbidden}

    # --- what happens when it is allowed ----------------------------------------------------

    def raise_handoff(
        self, handoff_id: str, session_id: str, actor: str, intent: Intent, now: datetime
    ) -> None:
        s = self.sessions[session_id]
        h = ModelHandoff(s.account, session_id, intent, actor, now)
        if intent is Intent.ESCALATE:
            p = self.policy(s.account)
            h.policy = p
            h.recipients = self.eligible(s.account, p.roles, actor)
            h.online = frozenset(m for m in h.recipients if (s.account, m) in self.online)
            if p.max_reminders >= 1:
                h.next_reminder_at = now + timedelta(seconds=p.remind_after)
            s.status = SessionStatus.ESCALATED
        else:
            s.status = SessionStatus.PAUSED
        self.handoffs[handoff_id] = h
        s.handoffs.append(handoff_id)

    def close(self, handoff_id: str, status: HandoffStatus, actor: str) -> None:
        h = self.handoffs[handoff_id]
        h.status = status
        h.next_reminder_at = None
        s = self.sessions[h.session]
        s.status = SessionStatus.ACTIVE
        if status is HandoffStatus.CLAIMED:
            h.claimed_by = actor
            s.assignee = actor

    def remind_due(self, now: datetime) -> int:
        """One pass of reminders: each open escalation that is due moves on by one round."""
        raised = 0
        for h in self.handoffs.values():
            if h.status is not HandoffStatus.OPEN or h.next_reminder_at is None:
                continue
            if h.next_reminder_at > now or h.policy is None:
                continue
            round = h.reminders_sent + 1
            h.reminders_sent = round
            # Told only while the copied policy and the account's policy now both name them.
            h.reminded[round] = self.eligible(
                h.account, h.policy.roles & self.policy(h.account).roles, h.created_by
            )
            # One catch-up after a pause of the workers, then the normal spacing (SPEC §11).
            h.next_reminder_at = (
                max(
                    h.created_at + timedelta(seconds=h.policy.remind_after * (round + 1)),
                    now + timedelta(seconds=h.policy.remind_after),
                )
                if round + 1 <= h.policy.max_reminders
                else None
            )
            raised += 1
        return raised
