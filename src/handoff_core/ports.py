"""What the core needs from the world, one small Protocol per need.

Every repository method takes the account first: an object of another account simply does not
exist for it. The few cross-account methods are for the delivery worker and say so.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from types import TracebackType
from typing import Protocol, Self

from attrs import evolve, frozen

from handoff_core.links import LoginLink
from handoff_core.model import (
    Channel,
    Delivery,
    EscalationPolicy,
    Handoff,
    HandoffStatus,
    Member,
    NoticeKind,
    Role,
    Session,
    TimelineEvent,
)
from handoff_core.notice import Notice
from handoff_core.stream import StreamEvent
from handoff_core.webhooks import WebhookEndpoint, WebhookRequest


class Clock(Protocol):
    def now(self) -> datetime:
        """Timezone-aware UTC."""
        ...


class Members(Protocol):
    async def get(self, account_id: str, member_id: str) -> Member | None: ...

    async def current(self, account_id: str) -> list[Member]:
        """Every member not soft-deleted, ordered by id."""
        ...

    async def get_many(self, account_id: str, member_ids: Collection[str]) -> list[Member]:
        """These members as stored (deleted or not); unknown ids are left out."""
        ...

    async def eligible(self, account_id: str, roles: Collection[Role]) -> list[Member]:
        """Active, not deleted members holding one of `roles`."""
        ...

    async def owners_for_update(self, account_id: str) -> list[Member]:
        """The account's current owners, held until the unit of work ends: a concurrent change
        to an owner waits, so two owners demoting each other cannot both see the other stay."""
        ...

    async def save(self, member: Member) -> None:
        """Insert or replace the member with this (account_id, id)."""
        ...


class Sessions(Protocol):
    async def get(self, account_id: str, session_id: str) -> Session | None: ...

    async def add(self, session: Session) -> None: ...

    async def update(self, session: Session) -> None:
        """Write the session if nobody else wrote it since it was read (its `version`), and bump
        the version; otherwise raise Conflict."""
        ...


class Handoffs(Protocol):
    async def get(self, account_id: str, handoff_id: str) -> Handoff | None: ...

    async def add(self, handoff: Handoff) -> None:
        """Raise IdempotencyConflict if the account already used the handoff's idempotency key."""
        ...

    async def by_idempotency_key(self, account_id: str, key: str) -> Handoff | None: ...

    async def open_for_session(self, account_id: str, session_id: str) -> Handoff | None: ...

    async def for_session(self, account_id: str, session_id: str) -> list[Handoff]: ...

    async def claim(self, account_id: str, handoff_id: str, claimer_id: str, at: datetime) -> bool:
        """One conditional write: claim it only if it is still an open escalation (and clear its
        next reminder). True if this call won."""
        ...

    async def close(
        self, account_id: str, handoff_id: str, status: HandoffStatus, at: datetime
    ) -> bool:
        """One conditional write: open → `status` (clearing its next reminder). True if this call
        made the change."""
        ...

    async def escalations(
        self,
        account_id: str,
        *,
        statuses: Collection[HandoffStatus] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[Handoff]:
        """Escalations of the account, oldest first, filtered by status and raise time."""
        ...

    async def reminders_due(self, now: datetime, limit: int) -> list[Handoff]:
        """Across accounts (for the worker): open escalations whose next reminder is due."""
        ...

    async def advance_reminder(
        self, account_id: str, handoff_id: str, round: int, next_at: datetime | None
    ) -> bool:
        """One conditional write: record reminder `round` as sent if it was not already, and
        schedule the next. True if this call made the change."""
        ...

    async def tiers_due(self, now: datetime, limit: int) -> list[Handoff]:
        """Across accounts (for the worker): open escalations whose next tier is due."""
        ...

    async def advance_tier(
        self, account_id: str, handoff_id: str, tier: int, next_at: datetime | None
    ) -> bool:
        """One conditional write: record tier `tier` as reached if the escalation is still open
        and had reached the tier before it, and schedule the next (None: no more). True if this
        call made the change, so two workers never raise the same tier."""
        ...


class Deliveries(Protocol):
    async def add_many(self, deliveries: Sequence[Delivery]) -> None: ...

    async def for_handoff(self, account_id: str, handoff_id: str) -> list[Delivery]: ...

    async def cancel_pending(
        self, account_id: str, handoff_id: str, kinds: Collection[NoticeKind], at: datetime
    ) -> int:
        """Cancel the handoff's pending deliveries of these kinds that no worker holds a live
        lease on at `at`; how many. A held one is its worker's to settle: the worker checks the
        escalation at send time and records what it really did (cancelled, or sent)."""
        ...

    async def lease_due(
        self,
        now: datetime,
        *,
        owner: str,
        until: datetime,
        limit: int,
        account_id: str | None = None,
        handoff_id: str | None = None,
    ) -> list[Delivery]:
        """Take pending deliveries that are due and not leased by a live lease; mark them leased
        by `owner` until `until`. Two concurrent callers never get the same delivery."""
        ...

    async def record(self, delivery: Delivery) -> bool:
        """Store a leased delivery's outcome and release it, if `delivery.leased_by` still holds
        the lease. False if the lease was lost."""
        ...

    async def record_many(self, deliveries: Sequence[Delivery]) -> set[str]:
        """`record` for a batch in a few statements; the ids whose outcome was stored."""
        ...

    async def release(self, owner: str) -> int:
        """Give back every lease `owner` holds, making those deliveries due again."""
        ...

    async def mark_seen(
        self, account_id: str, recipient_id: str, up_to_seq: int, at: datetime
    ) -> int:
        """Mark seen every push sent to `recipient_id` whose stream event id is at most
        `up_to_seq` and that was not seen yet; how many it marked."""
        ...

    async def take_unconfirmed(self, now: datetime, limit: int, reason: str) -> list[Delivery]:
        """Across accounts (for the worker), in one conditional write: pushes sent whose
        `confirm_by` has passed unseen, of escalations still open, turned `unconfirmed` with
        `reason` as their last error, and returned. Two concurrent callers never get the same
        delivery."""
        ...


class Stream(Protocol):
    """The account's stream log: one sequence per account, numbered in commit order."""

    async def append(self, events: Sequence[StreamEvent]) -> list[StreamEvent]:
        """Store the events and return them with their `seq`. The sequence of an account is
        held from here to the end of the transaction, so ids follow commit order and a rolled
        back transaction leaves no gap. Append last, just before commit."""
        ...

    async def after(self, account_id: str, after_seq: int, limit: int) -> list[StreamEvent]:
        """Events with a seq above `after_seq`, oldest first, every audience."""
        ...

    async def bounds(self, account_id: str) -> tuple[int, int]:
        """(floor, head): the events floor+1 … head can be replayed; (0, 0) for a new account."""
        ...

    async def prune(self, before: datetime) -> int:
        """Forget each account's events up to its last one dated before `before`, raising its
        floor (a replay from below the floor is a reset); how many were forgotten."""
        ...


class Timeline(Protocol):
    async def add(self, event: TimelineEvent) -> TimelineEvent:
        """Store the event and return it with its id."""
        ...

    async def add_many(self, events: Sequence[TimelineEvent]) -> list[TimelineEvent]:
        """`add` for a batch in one statement; the events with their ids, in order."""
        ...

    async def for_session(self, account_id: str, session_id: str) -> list[TimelineEvent]: ...

    async def first(self, account_id: str, handoff_id: str, type: str) -> TimelineEvent | None:
        """The oldest event of this type about this handoff."""
        ...

    async def after(
        self, account_id: str, after_id: int, types: Collection[str], limit: int
    ) -> list[TimelineEvent]:
        """Events of these types with an id above `after_id`, oldest first (stream replay)."""
        ...


class Webhooks(Protocol):
    """An account's webhook endpoints (SPEC §14)."""

    async def get(self, account_id: str, endpoint_id: str) -> WebhookEndpoint | None: ...

    async def of_account(self, account_id: str) -> list[WebhookEndpoint]:
        """Every endpoint of the account, ordered by id."""
        ...

    async def save(self, endpoint: WebhookEndpoint) -> None:
        """Insert or replace the endpoint with this (account_id, id)."""
        ...

    async def delete(self, account_id: str, endpoint_id: str) -> bool:
        """Forget the endpoint; True if there was one."""
        ...


class Policies(Protocol):
    async def get(self, account_id: str) -> EscalationPolicy | None: ...

    async def put(self, account_id: str, policy: EscalationPolicy) -> None: ...


class LoginLinks(Protocol):
    """One-time sign-in links, kept by the SHA-256 of their code."""

    async def add(self, link: LoginLink) -> None: ...

    async def redeem(self, code_hash: str, at: datetime) -> LoginLink | None:
        """One conditional write: mark the link used if it is unused and not expired at `at`.
        The link as it was if this call redeemed it; None if it is unknown, used or expired."""
        ...


@frozen
class EscalationInputs:
    """What an escalation reads before it writes (`Escalations.inputs`).

    `session` and `policy` are None where there is none; `members` is `Members.current` (not
    deleted, inactive ones included, by id) and `endpoints` is `Webhooks.of_account`."""

    session: Session | None
    policy: EscalationPolicy | None
    members: list[Member]
    endpoints: list[WebhookEndpoint]


@frozen
class NewEscalation:
    """What an escalation writes (`Escalations.add`): its handoff, the session it changed, its
    timeline event, its stream event and its deliveries (a push one is given the stream event's
    number). No webhook deliveries: an account with endpoints is written part by part."""

    handoff: Handoff
    session: Session
    event: TimelineEvent
    notice: StreamEvent
    deliveries: Sequence[Delivery]


class Escalations(Protocol):
    """An escalation's reads and writes, each as one call, so that a store can make each one
    round trip (PostgreSQL does; `inputs_by_parts` and `add_by_parts` are the same calls made
    repository by repository, for a store with nothing faster)."""

    async def inputs(self, account_id: str, session_id: str) -> EscalationInputs:
        """`Sessions.get`, `Policies.get`, `Members.current` and `Webhooks.of_account`."""
        ...

    async def add(self, escalation: NewEscalation) -> tuple[TimelineEvent, StreamEvent]:
        """`Handoffs.add`, `Sessions.update`, `Timeline.add_many`, `Stream.append` and
        `Deliveries.add_many`, in that order, with their errors (IdempotencyConflict or
        Conflict for the handoff, then Conflict for the session); the stored event and the
        numbered stream event. The session's version is bumped as `Sessions.update` does."""
        ...


class UnitOfWork(Protocol):
    """`async with uow:` rolls back unless `commit()` was called inside."""

    members: Members
    sessions: Sessions
    handoffs: Handoffs
    deliveries: Deliveries
    timeline: Timeline
    policies: Policies
    stream: Stream
    login_links: LoginLinks
    webhooks: Webhooks
    escalations: Escalations

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def commit(self) -> None: ...

    async def rollback(self) -> None: ...


UnitOfWorkFactory = Callable[[], UnitOfWork]


class EscalationsByParts(Escalations):
    """`Escalations` made of the unit of work's own repositories, one call after another."""

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def inputs(self, account_id: str, session_id: str) -> EscalationInputs:
        return await inputs_by_parts(self._uow, account_id, session_id)

    async def add(self, escalation: NewEscalation) -> tuple[TimelineEvent, StreamEvent]:
        return await add_by_parts(self._uow, escalation)


async def inputs_by_parts(uow: UnitOfWork, account_id: str, session_id: str) -> EscalationInputs:
    """`Escalations.inputs`, one repository at a time."""
    return EscalationInputs(
        session=await uow.sessions.get(account_id, session_id),
        policy=await uow.policies.get(account_id),
        members=await uow.members.current(account_id),
        endpoints=await uow.webhooks.of_account(account_id),
    )


async def add_by_parts(
    uow: UnitOfWork, escalation: NewEscalation
) -> tuple[TimelineEvent, StreamEvent]:
    """`Escalations.add`, one repository at a time."""
    await uow.handoffs.add(escalation.handoff)
    await uow.sessions.update(escalation.session)
    [stored] = await uow.timeline.add_many([escalation.event])
    [streamed] = await uow.stream.append([escalation.notice])
    if escalation.deliveries:
        await uow.deliveries.add_many(
            [
                evolve(d, stream_seq=streamed.seq) if d.channel is Channel.PUSH else d
                for d in escalation.deliveries
            ]
        )
    return stored, streamed


@frozen
class SendOutcome:
    """What became of one notice. `permanent` failures are not retried (SMTP 5xx);
    `withdrawn` notices were not tried at all: the sender's `withdrawn` said so before each
    would have gone."""

    delivery_id: str
    ok: bool
    permanent: bool = False
    error: str | None = None
    withdrawn: bool = False


WITHDRAWN = "withdrawn before it was sent"

# Asked of each notice just before it goes: True stops it (a claim committed meanwhile).
Withdrawn = Callable[[Notice], bool]


class MailSender(Protocol):
    async def send(
        self, notices: Sequence[Notice], withdrawn: Withdrawn | None = None
    ) -> Sequence[SendOutcome]:
        """Send a batch, reusing connections; one outcome per notice. An exception means the
        whole batch failed in a way worth retrying. `withdrawn(notice)`, when given, is asked
        just before each notice would go (it must be quick: no I/O); True leaves the notice
        unsent with `SendOutcome(ok=False, withdrawn=True, error=WITHDRAWN)`."""
        ...


class WebhookSender(Protocol):
    async def send(self, requests: Sequence[WebhookRequest]) -> Sequence[SendOutcome]:
        """POST each request, at most a few at once per endpoint; one outcome per request.
        `permanent` for what retrying cannot fix (a 4xx other than 408/429, a refused target)."""
        ...


class WebhookTargets(Protocol):
    async def check(self, url: str) -> None:
        """Raise ValidationError naming `url` if posting there is not allowed (a loopback,
        private or link-local address, unless the deployment allows them)."""
        ...


class PushHub(Protocol):
    """Carries committed stream events to the live streams (of every process)."""

    async def publish(self, events: Sequence[StreamEvent]) -> None: ...


class Presence(Protocol):
    async def online(
        self, account_id: str, member_ids: Collection[str] | None = None
    ) -> frozenset[str]:
        """Which of these members (None: any member of the account) have at least one live
        stream now."""
        ...


class Dispatcher(Protocol):
    """Sends an escalation's deliveries soon after its commit, off the caller's path."""

    def kick(self, account_id: str, handoff_id: str) -> None: ...


class Announcer(Protocol):
    """Told, after a commit, of the timeline and stream events it wrote; never of a rollback."""

    async def committed(
        self, events: Sequence[TimelineEvent], stream: Sequence[StreamEvent] = ()
    ) -> None: ...
