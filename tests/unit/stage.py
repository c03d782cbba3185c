"""The stage the unit tests play on: the library wired to its in-memory adapters and two teams.

Kept out of conftest.py so the tests can name its types; fixtures in conftest.py build it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from itertools import count
from typing import Any, TypeVar

from attrs import define, field, frozen

from handoff_core import (
    Delivery,
    DeliveryService,
    DeliverySettings,
    EscalationPolicy,
    Handoff,
    HandoffError,
    HandoffService,
    Member,
    MemberService,
    Queries,
    RetrySchedule,
    Session,
    StreamService,
    TimelineEvent,
)
from handoff_core.bootstrap import wire
from handoff_core.links import ClaimLinks
from handoff_memory import (
    ManualClock,
    MemoryDatabase,
    MemoryPresence,
    RecordingMailSender,
    RecordingPushHub,
)

ACME = "acme"
OTHER = "other"
SUMMARY = "VPN won't connect after Win update"

# (account, id, role, active, deleted). "audit" is a viewer kept only to read the world with.
TEAM: tuple[tuple[str, str, str, bool, bool], ...] = (
    (ACME, "alice", "engineer", True, False),
    (ACME, "bob", "engineer", True, False),
    (ACME, "carol", "admin", True, False),
    (ACME, "olga", "owner", True, False),
    (ACME, "vic", "viewer", True, False),
    (ACME, "dan", "engineer", True, True),
    (ACME, "ina", "engineer", False, False),
    (ACME, "audit", "viewer", True, False),
    (OTHER, "zed", "owner", True, False),
    (OTHER, "oscar", "engineer", True, False),
    (OTHER, "audit", "viewer", True, False),
)
# Who must hear of an escalation alice raises in acme, and nobody else.
ACME_SENIORS_BUT_ALICE = frozenset({"bob", "carol", "olga"})

E = TypeVar("E", bound=HandoffError)


def address_of(account_id: str, member_id: str) -> str:
    return f"{member_id}@{account_id}.test"


def instant_retry(attempts: int = 3) -> RetrySchedule:
    """A retry schedule without jitter (always the full step), so a test knows when it is due."""
    return RetrySchedule(
        base_seconds=30.0, cap_seconds=60.0, attempts=attempts, uniform=lambda low, high: high
    )


@frozen
class Observed:
    """Everything a member can read about the tracked sessions and the accounts' members."""

    sessions: tuple[Session, ...]
    handoffs: tuple[Handoff, ...]
    deliveries: tuple[Delivery, ...]
    timeline: tuple[TimelineEvent, ...]
    members: tuple[Member, ...]
    policies: tuple[EscalationPolicy, ...]


LINK_SECRET = "unit-test-link-secret-of-32-bytes!!"


@define
class Stage:
    db: MemoryDatabase
    clock: ManualClock
    mail: RecordingMailSender
    presence: MemoryPresence
    hub: RecordingPushHub
    members: MemberService
    handoffs: HandoffService
    delivery: DeliveryService
    queries: Queries
    streams: StreamService
    links: ClaimLinks
    tracked: list[tuple[str, str]] = field(factory=list)

    async def start(
        self,
        actor: str = "alice",
        summary: str = SUMMARY,
        context: dict[str, Any] | None = None,
        account: str = ACME,
    ) -> Session:
        """Start a session and remember it, so `observe` covers it."""
        session = await self.handoffs.start_session(
            account, actor, summary, context if context is not None else {"messages": []}
        )
        self.tracked.append((account, session.id))
        return session

    async def escalated(
        self, actor: str = "alice", notes: str = "Stuck on auth handshake", account: str = ACME
    ) -> tuple[Session, Handoff]:
        session = await self.start(actor, account=account)
        handoff = await self.handoffs.escalate(account, actor, session.id, notes)
        return session, handoff

    async def session(self, session_id: str, account: str = ACME) -> Session:
        return await self.queries.session(account, "audit", session_id)

    async def handoff(self, handoff_id: str, account: str = ACME) -> Handoff:
        return await self.queries.handoff(account, "audit", handoff_id)

    async def deliveries(self, handoff_id: str, account: str = ACME) -> list[Delivery]:
        return await self.queries.deliveries(account, "audit", handoff_id)

    async def timeline(self, session_id: str, account: str = ACME) -> list[TimelineEvent]:
        return await self.queries.timeline(account, "audit", session_id)

    async def observe(self) -> Observed:
        sessions, handoffs, deliveries, timeline = [], [], [], []
        for account, session_id in self.tracked:
            sessions.append(await self.session(session_id, account))
            for handoff in await self.queries.handoffs_of(account, "audit", session_id):
                handoffs.append(handoff)
                deliveries.extend(await self.deliveries(handoff.id, account))
            timeline.extend(await self.timeline(session_id, account))
        members = [m for a in (ACME, OTHER) for m in await self.members.members(a)]
        policies = [await self.members.policy(a) for a in (ACME, OTHER)]
        return Observed(
            tuple(sessions),
            tuple(handoffs),
            tuple(deliveries),
            tuple(timeline),
            tuple(members),
            tuple(policies),
        )

    async def refused(self, action: Callable[[], Awaitable[object]], error: type[E]) -> E:
        """Run `action`, which must be refused with `error` and leave everything as it was."""
        before = await self.observe()
        sent_before = len(self.mail.messages)
        try:
            await action()
        except error as exc:
            caught = exc
        else:
            raise AssertionError(f"expected {error.__name__}, but the action succeeded")
        assert await self.observe() == before
        assert len(self.mail.messages) == sent_before
        return caught


def build_stage(
    *, retry: RetrySchedule | None = None, public_url: str = "https://handoff.example"
) -> Stage:
    db = MemoryDatabase()
    clock = ManualClock()
    mail = RecordingMailSender()
    presence = MemoryPresence()
    hub = RecordingPushHub()
    ids = count(1)

    def make_id() -> str:
        return f"id{next(ids):04d}"

    links = ClaimLinks(LINK_SECRET, public_url, clock)
    settings = DeliverySettings(
        public_url=public_url, retry=retry or RetrySchedule(), claim_links=links
    )
    library = wire(db, clock, mail, presence=presence, hub=hub, settings=settings, make_id=make_id)
    return Stage(
        db=db,
        clock=clock,
        mail=mail,
        presence=presence,
        hub=hub,
        members=library.members,
        handoffs=library.handoffs,
        delivery=library.delivery,
        queries=library.queries,
        streams=library.streams,
        links=links,
    )


async def seed_team(stage: Stage) -> None:
    """The two accounts of TEAM, mirrored in as the host product would."""
    for account, member_id, role, active, deleted in TEAM:
        await stage.members.upsert(
            account,
            member_id,
            email=address_of(account, member_id),
            name=member_id.title(),
            role=role,
            active=active,
        )
        if deleted:
            await stage.members.remove(account, member_id)
