"""The repository ports over a MemoryStore, with the same conditional writes as SQL."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

from attrs import evolve

from handoff_core.errors import Conflict, IdempotencyConflict
from handoff_core.links import LoginLink
from handoff_core.model import (
    Channel,
    Delivery,
    DeliveryStatus,
    EscalationPolicy,
    Handoff,
    HandoffStatus,
    Intent,
    Member,
    NoticeKind,
    Role,
    Session,
    TimelineEvent,
)
from handoff_core.ports import (
    Deliveries,
    Handoffs,
    LoginLinks,
    Members,
    Policies,
    Sessions,
    Stream,
    Timeline,
    Webhooks,
)
from handoff_core.stream import StreamEvent
from handoff_core.webhooks import WebhookEndpoint
from handoff_memory.store import Journal, MemoryStore, clone


class MemoryMembers(Members):
    def __init__(self, store: MemoryStore, journal: Journal) -> None:
        self._s, self._j = store, journal

    async def get(self, account_id: str, member_id: str) -> Member | None:
        found = self._s.members.get((account_id, member_id))
        return clone(found) if found else None

    async def current(self, account_id: str) -> list[Member]:
        found = [
            m
            for (acc, _), m in self._s.members.items()
            if acc == account_id and m.deleted_at is None
        ]
        return [clone(m) for m in sorted(found, key=lambda m: m.id)]

    async def get_many(self, account_id: str, member_ids: Collection[str]) -> list[Member]:
        found = (self._s.members.get((account_id, m)) for m in sorted(set(member_ids)))
        return [clone(m) for m in found if m is not None]

    async def owners_for_update(self, account_id: str) -> list[Member]:
        """One unit of work holds the store at a time: reading is holding."""
        return [m for m in await self.current(account_id) if m.active and m.role is Role.OWNER]

    async def eligible(self, account_id: str, roles: Collection[Role]) -> list[Member]:
        return [m for m in await self.current(account_id) if m.active and m.role in roles]

    async def save(self, member: Member) -> None:
        self._j.put(self._s.members, (member.account_id, member.id), clone(member))


class MemorySessions(Sessions):
    def __init__(self, store: MemoryStore, journal: Journal) -> None:
        self._s, self._j = store, journal

    async def get(self, account_id: str, session_id: str) -> Session | None:
        found = self._s.sessions.get((account_id, session_id))
        return clone(found) if found else None

    async def add(self, session: Session) -> None:
        key = (session.account_id, session.id)
        if key in self._s.sessions:
            raise Conflict(f"session {session.id} already exists")
        session.version = 1
        self._j.put(self._s.sessions, key, clone(session))

    async def update(self, session: Session) -> None:
        key = (session.account_id, session.id)
        stored = self._s.sessions.get(key)
        if stored is None or stored.version != session.version:
            raise Conflict(f"session {session.id} was changed by someone else; reload and retry")
        session.version += 1
        self._j.put(self._s.sessions, key, clone(session))


class MemoryHandoffs(Handoffs):
    def __init__(self, store: MemoryStore, journal: Journal) -> None:
        self._s, self._j = store, journal

    def _of(self, account_id: str) -> list[Handoff]:
        return [h for (acc, _), h in self._s.handoffs.items() if acc == account_id]

    async def get(self, account_id: str, handoff_id: str) -> Handoff | None:
        found = self._s.handoffs.get((account_id, handoff_id))
        return clone(found) if found else None

    async def add(self, handoff: Handoff) -> None:
        key = (handoff.account_id, handoff.id)
        if key in self._s.handoffs:
            raise Conflict(f"handoff {handoff.id} already exists")
        if handoff.idempotency_key is not None:
            idem = (handoff.account_id, handoff.idempotency_key)
            if idem in self._s.idempotency:
                raise IdempotencyConflict("this Idempotency-Key was already used")
            self._j.put(self._s.idempotency, idem, handoff.id)
        self._j.put(self._s.handoffs, key, clone(handoff))

    async def by_idempotency_key(self, account_id: str, key: str) -> Handoff | None:
        handoff_id = self._s.idempotency.get((account_id, key))
        return await self.get(account_id, handoff_id) if handoff_id else None

    async def open_for_session(self, account_id: str, session_id: str) -> Handoff | None:
        for h in self._of(account_id):
            if h.session_id == session_id and h.status is HandoffStatus.OPEN:
                return clone(h)
        return None

    async def for_session(self, account_id: str, session_id: str) -> list[Handoff]:
        found = [h for h in self._of(account_id) if h.session_id == session_id]
        return [clone(h) for h in sorted(found, key=lambda h: (h.created_at, h.id))]

    def _transition(self, account_id: str, handoff_id: str, change: dict[str, object]) -> bool:
        stored = self._s.handoffs.get((account_id, handoff_id))
        if stored is None or stored.status is not HandoffStatus.OPEN:
            return False
        if change.get("status") is HandoffStatus.CLAIMED and stored.intent is not Intent.ESCALATE:
            return False
        updated = clone(stored)
        for name, value in change.items():
            setattr(updated, name, value)
        updated.next_reminder_at = None
        updated.next_tier_at = None
        self._j.put(self._s.handoffs, (account_id, handoff_id), updated)
        return True

    async def claim(self, account_id: str, handoff_id: str, claimer_id: str, at: datetime) -> bool:
        return self._transition(
            account_id,
            handoff_id,
            {
                "status": HandoffStatus.CLAIMED,
                "claimed_by": claimer_id,
                "claimed_at": at,
                "closed_at": at,
            },
        )

    async def close(
        self, account_id: str, handoff_id: str, status: HandoffStatus, at: datetime
    ) -> bool:
        return self._transition(account_id, handoff_id, {"status": status, "closed_at": at})

    async def escalations(
        self,
        account_id: str,
        *,
        statuses: Collection[HandoffStatus] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[Handoff]:
        found = [
            h
            for h in self._of(account_id)
            if h.intent is Intent.ESCALATE
            and (statuses is None or h.status in statuses)
            and (since is None or h.created_at >= since)
            and (until is None or h.created_at < until)
        ]
        return [clone(h) for h in sorted(found, key=lambda h: (h.created_at, h.id))]

    async def reminders_due(self, now: datetime, limit: int) -> list[Handoff]:
        found = [
            h
            for h in self._s.handoffs.values()
            if h.status is HandoffStatus.OPEN
            and h.next_reminder_at is not None
            and h.next_reminder_at <= now
        ]
        found.sort(key=lambda h: (h.next_reminder_at or now, h.id))
        return [clone(h) for h in found[:limit]]

    async def advance_reminder(
        self, account_id: str, handoff_id: str, round: int, next_at: datetime | None
    ) -> bool:
        stored = self._s.handoffs.get((account_id, handoff_id))
        if (
            stored is None
            or stored.status is not HandoffStatus.OPEN
            or stored.reminders_sent != round - 1
        ):
            return False
        updated = clone(stored)
        updated.reminders_sent = round
        updated.next_reminder_at = next_at
        self._j.put(self._s.handoffs, (account_id, handoff_id), updated)
        return True

    async def tiers_due(self, now: datetime, limit: int) -> list[Handoff]:
        found = [
            h
            for h in self._s.handoffs.values()
            if h.status is HandoffStatus.OPEN
            and h.next_tier_at is not None
            and h.next_tier_at <= now
        ]
        found.sort(key=lambda h: (h.next_tier_at or now, h.id))
        return [clone(h) for h in found[:limit]]

    async def advance_tier(
        self, account_id: str, handoff_id: str, tier: int, next_at: datetime | None
    ) -> bool:
        stored = self._s.handoffs.get((account_id, handoff_id))
        if (
            stored is None
            or stored.status is not HandoffStatus.OPEN
            or stored.tiers_reached != tier - 1
        ):
            return False
        updated = clone(stored)
        updated.tiers_reached = tier
        updated.next_tier_at = next_at
        self._j.put(self._s.handoffs, (account_id, handoff_id), updated)
        return True


class MemoryDeliveries(Deliveries):
    def __init__(self, store: MemoryStore, journal: Journal) -> None:
        self._s, self._j = store, journal

    async def add_many(self, deliveries: Sequence[Delivery]) -> None:
        for d in deliveries:
            if d.id in self._s.deliveries:
                raise Conflict(f"delivery {d.id} already exists")
            self._j.put(self._s.deliveries, d.id, clone(d))

    async def for_handoff(self, account_id: str, handoff_id: str) -> list[Delivery]:
        found = [
            d
            for d in self._s.deliveries.values()
            if d.account_id == account_id and d.handoff_id == handoff_id
        ]
        found.sort(key=lambda d: (d.created_at, d.recipient_id, d.channel.value, d.id))
        return [clone(d) for d in found]

    async def cancel_pending(
        self, account_id: str, handoff_id: str, kinds: Collection[NoticeKind], at: datetime
    ) -> int:
        cancelled = 0
        for d in list(self._s.deliveries.values()):
            if (
                d.account_id == account_id
                and d.handoff_id == handoff_id
                and d.kind in kinds
                and d.status is DeliveryStatus.PENDING
                and (d.leased_until is None or d.leased_until <= at)
            ):
                updated = clone(d)
                updated.mark_cancelled("the escalation was closed")
                updated.leased_by = None
                self._j.put(self._s.deliveries, d.id, updated)
                cancelled += 1
        return cancelled

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
        due = [
            d
            for d in self._s.deliveries.values()
            if d.status is DeliveryStatus.PENDING
            and d.next_attempt_at <= now
            and (d.leased_until is None or d.leased_until <= now)
            and (account_id is None or d.account_id == account_id)
            and (handoff_id is None or d.handoff_id == handoff_id)
        ]
        due.sort(key=lambda d: (d.next_attempt_at, d.id))
        leased = []
        for d in due[:limit]:
            updated = clone(d)
            updated.leased_by, updated.leased_until = owner, until
            self._j.put(self._s.deliveries, d.id, updated)
            leased.append(clone(updated))
        return leased

    async def record(self, delivery: Delivery) -> bool:
        stored = self._s.deliveries.get(delivery.id)
        if (
            stored is None
            or stored.account_id != delivery.account_id
            or stored.leased_by != delivery.leased_by
        ):
            return False
        updated = clone(delivery)
        updated.leased_by, updated.leased_until = None, None
        self._j.put(self._s.deliveries, delivery.id, updated)
        return True

    async def record_many(self, deliveries: Sequence[Delivery]) -> set[str]:
        return {d.id for d in deliveries if await self.record(d)}

    async def mark_seen(
        self, account_id: str, recipient_id: str, up_to_seq: int, at: datetime
    ) -> int:
        marked = 0
        for d in list(self._s.deliveries.values()):
            if (
                d.account_id == account_id
                and d.recipient_id == recipient_id
                and d.channel is Channel.PUSH
                and d.seen_at is None
                and d.stream_seq is not None
                and d.stream_seq <= up_to_seq
                and d.status in (DeliveryStatus.PENDING, DeliveryStatus.SENT)
            ):
                updated = clone(d)
                updated.seen_at = at
                self._j.put(self._s.deliveries, d.id, updated)
                marked += 1
        return marked

    async def take_unconfirmed(self, now: datetime, limit: int, reason: str) -> list[Delivery]:
        due = [
            d
            for d in self._s.deliveries.values()
            if d.channel is Channel.PUSH
            and d.status is DeliveryStatus.SENT
            and d.seen_at is None
            and d.confirm_by is not None
            and d.confirm_by <= now
            and (h := self._s.handoffs.get((d.account_id, d.handoff_id))) is not None
            and h.status is HandoffStatus.OPEN
        ]
        due.sort(key=lambda d: (d.confirm_by or now, d.id))
        taken = []
        for d in due[:limit]:
            updated = clone(d)
            updated.status = DeliveryStatus.UNCONFIRMED
            updated.last_error = reason
            self._j.put(self._s.deliveries, d.id, updated)
            taken.append(clone(updated))
        return taken

    async def release(self, owner: str) -> int:
        released = 0
        for d in list(self._s.deliveries.values()):
            if d.leased_by == owner and d.status is DeliveryStatus.PENDING:
                updated = clone(d)
                updated.leased_by, updated.leased_until = None, None
                self._j.put(self._s.deliveries, d.id, updated)
                released += 1
        return released


class MemoryTimeline(Timeline):
    def __init__(self, store: MemoryStore, journal: Journal) -> None:
        self._s, self._j = store, journal

    async def add(self, event: TimelineEvent) -> TimelineEvent:
        stored = evolve(event, id=self._s.next_event_id, data=clone(event.data))
        self._s.next_event_id += 1  # like a sequence: not given back on rollback
        self._j.append(self._s.timeline, stored)
        return stored

    async def add_many(self, events: Sequence[TimelineEvent]) -> list[TimelineEvent]:
        return [await self.add(e) for e in events]

    async def for_session(self, account_id: str, session_id: str) -> list[TimelineEvent]:
        return [
            e for e in self._s.timeline if e.account_id == account_id and e.session_id == session_id
        ]

    async def first(self, account_id: str, handoff_id: str, type: str) -> TimelineEvent | None:
        for e in self._s.timeline:
            if e.account_id == account_id and e.handoff_id == handoff_id and e.type == type:
                return e
        return None

    async def after(
        self, account_id: str, after_id: int, types: Collection[str], limit: int
    ) -> list[TimelineEvent]:
        found = [
            e
            for e in self._s.timeline
            if e.account_id == account_id and (e.id or 0) > after_id and e.type in types
        ]
        return found[:limit]


class MemoryStream(Stream):
    """The stream log. One unit of work holds the store at a time, so appending in it numbers
    events in commit order; a rollback takes them (and their numbers) back."""

    def __init__(self, store: MemoryStore, journal: Journal) -> None:
        self._s, self._j = store, journal

    async def append(self, events: Sequence[StreamEvent]) -> list[StreamEvent]:
        stored = []
        for event in events:
            log = self._s.stream.setdefault(event.account_id, [])
            head = (log[-1].seq or 0) if log else self._s.stream_floor.get(event.account_id, 0)
            kept = evolve(event, seq=head + 1, data=clone(event.data))
            self._j.append(log, kept)
            stored.append(kept)
        return stored

    async def after(self, account_id: str, after_seq: int, limit: int) -> list[StreamEvent]:
        log = self._s.stream.get(account_id, [])
        return [clone(e) for e in log if (e.seq or 0) > after_seq][:limit]

    async def bounds(self, account_id: str) -> tuple[int, int]:
        floor = self._s.stream_floor.get(account_id, 0)
        log = self._s.stream.get(account_id, [])
        return floor, (log[-1].seq or 0) if log else floor

    async def prune(self, before: datetime) -> int:
        pruned = 0
        for account_id, log in list(self._s.stream.items()):
            old = [i for i, e in enumerate(log) if _stream_at(e) < before]
            keep_from = old[-1] + 1 if old else 0
            pruned += keep_from
            if keep_from:
                self._j.put(self._s.stream_floor, account_id, log[keep_from - 1].seq or 0)
                self._j.put(self._s.stream, account_id, log[keep_from:])
        return pruned


def _stream_at(event: StreamEvent) -> datetime:
    return datetime.fromisoformat(str(event.data.get("at")))


class MemoryPolicies(Policies):
    def __init__(self, store: MemoryStore, journal: Journal) -> None:
        self._s, self._j = store, journal

    async def get(self, account_id: str) -> EscalationPolicy | None:
        return self._s.policies.get(account_id)

    async def put(self, account_id: str, policy: EscalationPolicy) -> None:
        self._j.put(self._s.policies, account_id, policy)


class MemoryWebhooks(Webhooks):
    def __init__(self, store: MemoryStore, journal: Journal) -> None:
        self._s, self._j = store, journal

    async def get(self, account_id: str, endpoint_id: str) -> WebhookEndpoint | None:
        found = self._s.webhooks.get((account_id, endpoint_id))
        return clone(found) if found else None

    async def of_account(self, account_id: str) -> list[WebhookEndpoint]:
        found = [w for (acc, _), w in self._s.webhooks.items() if acc == account_id]
        return [clone(w) for w in sorted(found, key=lambda w: w.id)]

    async def save(self, endpoint: WebhookEndpoint) -> None:
        self._j.put(self._s.webhooks, (endpoint.account_id, endpoint.id), clone(endpoint))

    async def delete(self, account_id: str, endpoint_id: str) -> bool:
        key = (account_id, endpoint_id)
        if key not in self._s.webhooks:
            return False
        old = self._s.webhooks[key]
        self._j.put(self._s.webhooks, key, old)  # records the undo before the removal
        del self._s.webhooks[key]
        return True


class MemoryLoginLinks(LoginLinks):
    def __init__(self, store: MemoryStore, journal: Journal) -> None:
        self._s, self._j = store, journal

    async def add(self, link: LoginLink) -> None:
        if link.code_hash in self._s.login_links:
            raise Conflict("this sign-in link already exists")
        self._j.put(self._s.login_links, link.code_hash, link)

    async def redeem(self, code_hash: str, at: datetime) -> LoginLink | None:
        link = self._s.login_links.get(code_hash)
        if link is None or link.used_at is not None or link.expires_at <= at:
            return None
        self._j.put(self._s.login_links, code_hash, evolve(link, used_at=at))
        return link
