"""Sending the outbox: the deliveries an escalation planned, its reminders, and their retries.

Nothing here holds a unit of work open while it talks to SMTP or the push hub: deliveries are
leased in one transaction, sent with none open, and their outcomes recorded in another.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Sequence
from datetime import timedelta

from attrs import define, field

from handoff_core.links import ClaimLinks
from handoff_core.model import (
    Channel,
    Delivery,
    DeliveryStatus,
    EventType,
    Handoff,
    Intent,
    Member,
    NoticeKind,
    TimelineEvent,
)
from handoff_core.notice import Notice, NoticeBody, address, compose
from handoff_core.policy import IdFactory, new_id, plan_reminders
from handoff_core.ports import (
    Announcer,
    Clock,
    MailSender,
    Presence,
    PushEvent,
    PushHub,
    SendOutcome,
    UnitOfWorkFactory,
)
from handoff_core.retry import RetrySchedule
from handoff_core.services.common import SilentAnnouncer, announce

log = logging.getLogger("handoff.delivery")

PUSH_EVENT_FOR = {
    NoticeKind.ESCALATION: ("escalation.created", EventType.SESSION_ESCALATED),
    NoticeKind.REMINDER: ("escalation.reminded", EventType.ESCALATION_REMINDED),
}
OUTCOME_EVENTS = {
    DeliveryStatus.SENT: EventType.DELIVERY_SENT,
    DeliveryStatus.FAILED: EventType.DELIVERY_FAILED,
    DeliveryStatus.DEAD: EventType.DELIVERY_DEAD,
}
FELL_BACK = "recipient had no live stream; sent by email instead"
EMAILED_ANYWAY = "recipient had no live stream; the email sent with this push reaches them"


@define
class DeliverySettings:
    public_url: str = "http://localhost:8000"
    retry: RetrySchedule = field(factory=RetrySchedule)
    lease_seconds: float = 300.0
    batch_size: int = 100
    lanes: int = 2  # batches of one escalation in flight at once: one sends while one records
    dispatch_batch_size: int = 500  # right after commit: larger batches, fewer round trips
    claim_links: ClaimLinks | None = None  # each email's own claim link; None: the inbox's URL


@define
class _Batch:
    """What sending one batch needs to know, read in one short unit of work."""

    handoffs: dict[str, Handoff] = field(factory=dict)
    members: dict[tuple[str, str], Member] = field(factory=dict)
    event_ids: dict[tuple[str, NoticeKind], int | None] = field(factory=dict)


class DeliveryService:
    """Sends what the outbox holds. `dispatch` is the seed's contract: it returns how many notices
    went out, never raises, and sends nothing for a park."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        clock: Clock,
        mail: MailSender,
        *,
        hub: PushHub | None = None,
        presence: Presence | None = None,
        announcer: Announcer | None = None,
        settings: DeliverySettings | None = None,
        worker_id: str | None = None,
        make_id: IdFactory = new_id,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._mail = mail
        self._hub = hub
        self._presence = presence
        self._announcer: Announcer = announcer or SilentAnnouncer()
        self._settings = settings or DeliverySettings()
        self.worker_id = worker_id or f"worker-{new_id()[:12]}"
        self._held: set[str] = set()  # lease tokens taken and not yet recorded
        self._make_id = make_id

    # --- entry points -----------------------------------------------------------------------

    async def dispatch(self, account_id: str, handoff_id: str) -> int:
        """Send the due notices of one escalation now; how many were sent.

        Its batches go out in a few lanes, so the SMTP connections are not left idle while a
        batch's outcomes are written."""
        try:
            async with self._uow() as uow:
                handoff = await uow.handoffs.get(account_id, handoff_id)
            if handoff is None or handoff.intent is Intent.PARK:
                return 0
        except Exception:
            log.exception("dispatch failed", extra={"handoff_id": handoff_id})
            return 0

        async def lane() -> int:
            done = 0
            try:
                while leased := await self._lease(
                    account_id=account_id,
                    handoff_id=handoff_id,
                    limit=self._settings.dispatch_batch_size,
                ):
                    done += await self._deliver(leased)
            except Exception:
                log.exception("dispatch failed", extra={"handoff_id": handoff_id, "sent": done})
            return done

        lanes = max(1, self._settings.lanes)
        return sum(await asyncio.gather(*(lane() for _ in range(lanes))))

    async def run_once(self) -> int:
        """One worker pass: raise due reminders, then send one batch of due deliveries."""
        await self.remind_due()
        leased = await self._lease()
        return await self._deliver(leased) if leased else 0

    async def run(self, stop: asyncio.Event, poll_seconds: float = 1.0) -> None:
        """Work until `stop` is set, then give back whatever is still leased."""
        try:
            while not stop.is_set():
                try:
                    busy = await self.run_once()
                except Exception:
                    log.exception("worker pass failed", extra={"worker": self.worker_id})
                    busy = 0
                if not busy:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=poll_seconds)
        finally:
            await self.release()

    async def release(self) -> int:
        """Give back every lease this service holds and has not recorded yet."""
        try:
            released = 0
            async with self._uow() as uow:
                for token in list(self._held):
                    released += await uow.deliveries.release(token)
                await uow.commit()
            self._held.clear()
            return released
        except Exception:
            log.exception("could not release leases", extra={"worker": self.worker_id})
            return 0

    async def remind_due(self) -> int:
        """Raise every reminder that is due; returns how many reminder rounds were raised."""
        now = self._clock.now()
        async with self._uow() as uow:
            due = await uow.handoffs.reminders_due(now, limit=self._settings.batch_size)
        raised = 0
        for handoff in due:
            round = handoff.reminders_sent + 1
            policy = handoff.policy
            if policy is None:
                continue
            async with self._uow() as uow:
                next_at = policy.reminder_at(handoff.created_at, round + 1)
                if not await uow.handoffs.advance_reminder(
                    handoff.account_id, handoff.id, round, next_at
                ):
                    continue  # another worker raised it, or it was claimed meanwhile
                members = await uow.members.eligible(handoff.account_id, policy.roles)
                await uow.deliveries.add_many(
                    plan_reminders(handoff, members, round, now, self._make_id)
                )
                session = await uow.sessions.get(handoff.account_id, handoff.session_id)
                event = await uow.timeline.add(
                    TimelineEvent(
                        account_id=handoff.account_id,
                        session_id=handoff.session_id,
                        type=EventType.ESCALATION_REMINDED,
                        at=now,
                        handoff_id=handoff.id,
                        data={
                            "round": round,
                            "problem_summary": session.problem_summary if session else "",
                        },
                    )
                )
                await uow.commit()
            raised += 1
            await announce(self._announcer, [event])
        return raised

    # --- the mechanism ----------------------------------------------------------------------

    async def _lease(
        self,
        *,
        account_id: str | None = None,
        handoff_id: str | None = None,
        limit: int | None = None,
    ) -> list[Delivery]:
        """Take a batch under a token of its own: an outcome is recorded only by the holder of
        that very lease, so a batch that outlived its lease and was taken again (even by this
        process) cannot be recorded twice."""
        now = self._clock.now()
        token = f"{self.worker_id}/{new_id()[:12]}"
        self._held.add(token)
        async with self._uow() as uow:
            leased = await uow.deliveries.lease_due(
                now,
                owner=token,
                until=now + timedelta(seconds=self._settings.lease_seconds),
                limit=limit or self._settings.batch_size,
                account_id=account_id,
                handoff_id=handoff_id,
            )
            await uow.commit()
        if not leased:
            self._held.discard(token)
        return leased

    async def _context(self, leased: Sequence[Delivery]) -> _Batch:
        """The handoffs, recipients, escalators and stream event ids of a batch, read once."""
        batch = _Batch()
        async with self._uow() as uow:
            wanted: dict[str, set[str]] = defaultdict(set)
            for d in leased:
                if d.channel is Channel.EMAIL:  # a push needs no name: skip the lookup
                    wanted[d.account_id].add(d.recipient_id)
                if d.handoff_id in batch.handoffs:
                    continue
                handoff = await uow.handoffs.get(d.account_id, d.handoff_id)
                if handoff is not None:
                    batch.handoffs[d.handoff_id] = handoff
                    wanted[d.account_id].add(handoff.created_by)
            for account_id, member_ids in wanted.items():
                for member in await uow.members.get_many(account_id, member_ids):
                    batch.members[(account_id, member.id)] = member
            for d in leased:
                key = (d.handoff_id, d.kind)
                if d.channel is Channel.PUSH and key not in batch.event_ids:
                    _, event_type = PUSH_EVENT_FOR[d.kind]
                    found = await uow.timeline.first(d.account_id, d.handoff_id, event_type)
                    batch.event_ids[key] = found.id if found else None
        return batch

    async def _deliver(self, leased: Sequence[Delivery]) -> int:
        batch = await self._context(leased)
        fallbacks: dict[str, Delivery] = {}  # by the push delivery each one replaces
        emails: list[Delivery] = []
        pushes: list[Delivery] = []
        for d in leased:
            if d.handoff_id not in batch.handoffs:
                d.mark_cancelled("the handoff no longer exists")
            elif d.channel is Channel.PUSH:
                pushes.append(d)
            else:
                emails.append(d)
        await self._push(pushes, batch, fallbacks)
        await self._email(emails, batch)
        return await self._record(leased, batch, fallbacks)

    async def _push(
        self,
        pushes: list[Delivery],
        batch: _Batch,
        fallbacks: dict[str, Delivery],
    ) -> None:
        by_account: dict[str, list[Delivery]] = defaultdict(list)
        for d in pushes:
            by_account[d.account_id].append(d)
        for account_id, group in by_account.items():
            online: frozenset[str] = frozenset()
            if self._hub is not None and self._presence is not None:
                try:
                    online = await self._presence.online(
                        account_id, [d.recipient_id for d in group]
                    )
                except Exception:
                    log.exception("presence lookup failed; falling back to email")
            published = await self._publish_to_online(group, online, batch)
            for d in group:
                if d.id in published:
                    d.mark_sent(self._clock.now())
                    continue
                policy = batch.handoffs[d.handoff_id].policy
                if policy is not None and policy.email_online_too:
                    d.mark_cancelled(EMAILED_ANYWAY)  # a fallback would be a second email
                    continue
                d.mark_cancelled(FELL_BACK)
                fallbacks[d.id] = Delivery(
                    id=self._make_id(),
                    account_id=d.account_id,
                    handoff_id=d.handoff_id,
                    recipient_id=d.recipient_id,
                    address=d.address,
                    channel=Channel.EMAIL,
                    kind=d.kind,
                    created_at=self._clock.now(),
                    next_attempt_at=self._clock.now(),
                    round=d.round,
                )

    async def _publish_to_online(
        self, group: list[Delivery], online: frozenset[str], batch: _Batch
    ) -> set[str]:
        """One push event per handoff and notice in the batch, addressed to every recipient of it
        who is online; the ids of the deliveries it carried."""
        assert self._hub is not None or not online
        carried: dict[tuple[str, NoticeKind, int], list[Delivery]] = defaultdict(list)
        for d in group:
            if d.recipient_id in online:
                carried[(d.handoff_id, d.kind, d.round)].append(d)
        published: set[str] = set()
        for (handoff_id, kind, round), ds in carried.items():
            handoff = batch.handoffs[handoff_id]
            push_type, _ = PUSH_EVENT_FOR[kind]
            event = PushEvent(
                account_id=handoff.account_id,
                type=push_type,
                id=batch.event_ids.get((handoff_id, kind)),
                audience=frozenset(d.recipient_id for d in ds),
                data={
                    "handoff_id": handoff.id,
                    "session_id": handoff.session_id,
                    "problem_summary": handoff.snapshot.get("problem_summary", ""),
                    "engineer_notes": handoff.engineer_notes,
                    "actor_id": handoff.created_by,
                    "at": handoff.created_at.isoformat(),
                    "round": round,
                },
            )
            try:
                assert self._hub is not None
                await self._hub.publish(event)
            except Exception:
                log.exception(
                    "push publish failed; falling back to email",
                    extra={"handoff_id": handoff_id, "recipients": len(ds)},
                )
                continue
            published.update(d.id for d in ds)
        return published

    async def _email(self, emails: list[Delivery], batch: _Batch) -> None:
        if not emails:
            return
        bodies: dict[tuple[str, NoticeKind, int], NoticeBody] = {}
        notices: list[Notice] = []
        for d in emails:
            key = (d.handoff_id, d.kind, d.round)
            if key not in bodies:
                handoff = batch.handoffs[d.handoff_id]
                escalator = batch.members.get((d.account_id, handoff.created_by))
                bodies[key] = compose(
                    handoff, escalator, self._settings.public_url, d.kind, d.round
                )
            recipient = batch.members.get((d.account_id, d.recipient_id))
            name = recipient.name if recipient else ""
            notices.append(address(d, name, bodies[key], self._settings.claim_links))
        try:
            outcomes: Sequence[SendOutcome] = await self._mail.send(notices)
        except Exception as exc:
            log.warning("mail batch failed", extra={"error": repr(exc), "count": len(notices)})
            outcomes = [SendOutcome(n.delivery_id, ok=False, error=repr(exc)) for n in notices]
        by_id = {o.delivery_id: o for o in outcomes}
        when = self._clock.now()
        retry = self._settings.retry
        for d in emails:
            outcome = by_id.get(d.id) or SendOutcome(d.id, ok=False, error="no outcome reported")
            if outcome.ok:
                d.mark_sent(when)
            elif outcome.permanent:
                d.mark_refused(outcome.error or "refused")
            else:
                attempts = d.attempts + 1
                retry_at = None if retry.exhausted(attempts) else when + retry.delay(attempts)
                d.mark_deferred(outcome.error or "temporary failure", retry_at)

    async def _record(
        self, leased: Sequence[Delivery], batch: _Batch, fallbacks: dict[str, Delivery]
    ) -> int:
        at = self._clock.now()
        async with self._uow() as uow:
            recorded = await uow.deliveries.record_many(leased)
            lost = [d.id for d in leased if d.id not in recorded]
            if lost:
                log.warning(
                    "lease lost before the outcome was recorded",
                    extra={"delivery_ids": lost, "worker": self.worker_id},
                )
            outcomes = []
            for d in leased:
                event_type = OUTCOME_EVENTS.get(d.status)
                handoff = batch.handoffs.get(d.handoff_id)
                if d.id in recorded and event_type is not None and handoff is not None:
                    outcomes.append(
                        TimelineEvent(
                            account_id=d.account_id,
                            session_id=handoff.session_id,
                            type=event_type,
                            at=at,
                            handoff_id=d.handoff_id,
                            data={
                                "delivery_id": d.id,
                                "recipient_id": d.recipient_id,
                                "channel": d.channel.value,
                                "kind": d.kind.value,
                                "attempts": d.attempts,
                                "error": d.last_error,
                            },
                        )
                    )
            events = await uow.timeline.add_many(outcomes)
            # A push whose lease was lost (cancelled by a claim or withdraw meanwhile, or taken
            # by another worker) is not ours to replace: no fallback email for it.
            kept = [f for push_id, f in fallbacks.items() if push_id in recorded]
            if kept:
                await uow.deliveries.add_many(kept)
            await uow.commit()
        self._held.difference_update({d.leased_by for d in leased if d.leased_by})
        await announce(self._announcer, events)
        return sum(1 for d in leased if d.status is DeliveryStatus.SENT)
