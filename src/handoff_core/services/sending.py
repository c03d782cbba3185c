"""The send pipeline: lease a batch of the outbox, decide what may still go, send, record.

Nothing here holds a unit of work open while it talks to SMTP or asks for presence: deliveries
are leased in one transaction, sent with none open, and their outcomes recorded in another.
What may still go is decided after the lease, at send time (SPEC §10, §11): a notice of an
escalation that was claimed or withdrawn is cancelled, and so is one to a member removed,
deactivated or no longer in the policy's roles.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Sequence
from datetime import timedelta

from attrs import define, field, frozen

from handoff_core.links import ClaimLinks
from handoff_core.model import (
    Channel,
    Delivery,
    DeliveryStatus,
    EscalationPolicy,
    EventType,
    Handoff,
    HandoffStatus,
    Member,
    NoticeKind,
    TimelineEvent,
)
from handoff_core.notice import Notice, NoticeBody, address, compose
from handoff_core.policy import IdFactory, fallback_email, new_id, still_told
from handoff_core.ports import (
    Announcer,
    Clock,
    MailSender,
    Presence,
    SendOutcome,
    UnitOfWork,
    UnitOfWorkFactory,
    WebhookSender,
)
from handoff_core.retry import RetrySchedule
from handoff_core.services.common import announce
from handoff_core.webhooks import WebhookEndpoint, WebhookFormat, WebhookRequest, slack_message

log = logging.getLogger("handoff.delivery")

OUTCOME_EVENTS = {
    DeliveryStatus.SENT: EventType.DELIVERY_SENT,
    DeliveryStatus.FAILED: EventType.DELIVERY_FAILED,
    DeliveryStatus.DEAD: EventType.DELIVERY_DEAD,
}
FELL_BACK = "recipient had no live stream; sent by email instead"
EMAILED_ANYWAY = "recipient had no live stream; the email sent with this push reaches them"
GONE = "the handoff no longer exists"
CLOSED_IN_FLIGHT = "the escalation was {status} while this was on its way"
CLOSED = "the escalation was {status} before this was sent"
NOT_TOLD = "the recipient is no longer a member the policy tells"
ENDPOINT_GONE = "the webhook endpoint was removed"
UNSUBSCRIBED = "the webhook endpoint no longer subscribes to this event"
NO_WEBHOOK_SENDER = "no webhook sender is configured"


@define
class DeliverySettings:
    """How the outbox is sent. `public_url` is the base of the links in emails (SPEC §5),
    `claim_links` signs each recipient's own claim link (SPEC §11); the rest tune the worker:
    seconds a lease lasts, deliveries per worker batch, batches of one escalation in flight at
    once, and deliveries per batch right after a commit."""

    public_url: str = "http://localhost:8000"
    retry: RetrySchedule = field(factory=RetrySchedule)
    lease_seconds: float = 300.0
    batch_size: int = 100
    lanes: int = 2  # batches of one escalation in flight at once: one sends while one records
    dispatch_batch_size: int = 500  # right after commit: larger batches, fewer round trips
    # While a batch's emails go out, its escalations are read again this often: a claim that
    # commits meanwhile stops what is not yet written (SPEC §11).
    recheck_seconds: float = 0.25
    stream_keep_seconds: float = 7 * 24 * 3600.0  # replayable stream history; older is a reset
    claim_links: ClaimLinks | None = None  # each email's own claim link; None: the inbox's URL


@frozen
class Delivered:
    """What sending one batch did: notices sent, and deliveries it added (due at once)."""

    sent: int
    added: int


@define
class _Batch:
    """What sending one batch needs to know, read in one short unit of work after the lease."""

    handoffs: dict[str, Handoff] = field(factory=dict)
    members: dict[tuple[str, str], Member] = field(factory=dict)
    policies: dict[str, EscalationPolicy] = field(factory=dict)
    endpoints: dict[tuple[str, str], WebhookEndpoint] = field(factory=dict)


class Sender:
    """Leases, sends and records batches of deliveries; see the module's docstring."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        clock: Clock,
        mail: MailSender,
        presence: Presence | None,
        announcer: Announcer,
        settings: DeliverySettings,
        worker_id: str,
        make_id: IdFactory,
        webhooks: WebhookSender | None = None,
    ) -> None:
        self._webhooks = webhooks
        self._uow = uow
        self._clock = clock
        self._mail = mail
        self._presence = presence
        self._announcer = announcer
        self._settings = settings
        self._worker_id = worker_id
        self._make_id = make_id
        self.held: set[str] = set()  # lease tokens taken and not yet recorded

    async def lease(
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
        token = f"{self._worker_id}/{new_id()[:12]}"
        self.held.add(token)
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
            self.held.discard(token)
        return leased

    async def deliver(self, leased: Sequence[Delivery]) -> Delivered:
        """Send a leased batch and record it: how many were sent, and how many deliveries it
        added (fallback emails, due at once).

        Webhooks go apart from the notices, one group per endpoint, each recorded as soon as it
        is done: an endpoint that hangs holds back only its own records (SPEC §14)."""
        batch = await self._context(leased)
        emails: list[Delivery] = []
        pushes: list[Delivery] = []
        notices: list[Delivery] = []
        hooks: dict[tuple[str, str], list[Delivery]] = defaultdict(list)
        for d in leased:
            if d.channel is Channel.WEBHOOK:
                hooks[(d.account_id, d.recipient_id)].append(d)
                continue
            notices.append(d)
            if self._still_due(d, batch):
                (pushes if d.channel is Channel.PUSH else emails).append(d)

        async def send_notices() -> Delivered:
            if not notices:
                return Delivered(sent=0, added=0)
            fallbacks = await self._push(pushes, batch)
            await self._email(emails, batch)
            return await self._record(notices, batch, fallbacks)

        try:
            done = await asyncio.gather(
                send_notices(), *(self._hook(group, batch) for group in hooks.values())
            )
        finally:
            self.held.difference_update({d.leased_by for d in leased if d.leased_by})
        return Delivered(sent=sum(d.sent for d in done), added=sum(d.added for d in done))

    def _hook_due(self, d: Delivery, batch: _Batch) -> bool:
        """A webhook goes while its endpoint exists and still wants the event; one announcing
        the escalation or reminding of it stops once the escalation closed, while the claim or
        withdrawal itself (kind `closure`) goes after it."""
        handoff = batch.handoffs.get(d.handoff_id)
        endpoint = batch.endpoints.get((d.account_id, d.recipient_id))
        if handoff is None:
            d.mark_cancelled(GONE)
        elif endpoint is None:
            d.mark_cancelled(ENDPOINT_GONE)
        elif not endpoint.wants(str((d.payload or {}).get("type", ""))):
            d.mark_cancelled(UNSUBSCRIBED)
        elif handoff.status is not HandoffStatus.OPEN and d.kind is not NoticeKind.CLOSURE:
            d.mark_cancelled(CLOSED.format(status=handoff.status.value))
        elif self._webhooks is None:
            d.mark_refused(NO_WEBHOOK_SENDER)
        else:
            return True
        return False

    async def _hook(self, group: list[Delivery], batch: _Batch) -> Delivered:
        """Send one endpoint's deliveries of a batch and record them."""
        due = [d for d in group if self._hook_due(d, batch)]
        if due and self._webhooks is not None:
            requests = [self._request(d, batch) for d in due]
            try:
                outcomes: Sequence[SendOutcome] = await self._webhooks.send(requests)
            except Exception as exc:
                log.warning(
                    "webhook batch of %d deliveries failed: %r",
                    len(due),
                    exc,
                    extra={"error": repr(exc), "count": len(due)},
                )
                outcomes = [SendOutcome(d.id, ok=False, error=repr(exc)) for d in due]
            self._apply(due, outcomes)
        return await self._record(group, batch, {})

    def _request(self, d: Delivery, batch: _Batch) -> WebhookRequest:
        endpoint = batch.endpoints[(d.account_id, d.recipient_id)]
        body = d.payload or {}
        if endpoint.format is WebhookFormat.SLACK:
            handoff = batch.handoffs[d.handoff_id]
            data = body.get("data") or {}
            body = slack_message(
                body,
                batch.members.get((d.account_id, handoff.created_by)),
                batch.members.get((d.account_id, str(data.get("actor_id", "")))),
                self._settings.public_url,
            )
        return WebhookRequest(
            delivery_id=d.id,
            endpoint_id=endpoint.id,
            url=endpoint.url,
            secret=endpoint.secret,
            body=body,
            account_id=d.account_id,
        )

    def _apply(self, sent: list[Delivery], outcomes: Sequence[SendOutcome]) -> None:
        """Mark each delivery by its outcome: sent, refused for good, or retried with backoff
        (dead once the attempts are spent)."""
        by_id = {o.delivery_id: o for o in outcomes}
        when = self._clock.now()
        retry = self._settings.retry
        for d in sent:
            outcome = by_id.get(d.id) or SendOutcome(d.id, ok=False, error="no outcome reported")
            if outcome.ok:
                d.mark_sent(when)
            elif outcome.permanent:
                d.mark_refused(outcome.error or "refused")
            else:
                attempts = d.attempts + 1
                retry_at = None if retry.exhausted(attempts) else when + retry.delay(attempts)
                d.mark_deferred(outcome.error or "temporary failure", retry_at)

    async def _context(self, leased: Sequence[Delivery]) -> _Batch:
        """The handoffs, recipients, escalators and account policies of a batch, read once."""
        batch = _Batch()
        wanted: dict[str, set[str]] = defaultdict(set)
        async with self._uow() as uow:
            for d in leased:
                if d.channel is Channel.WEBHOOK:
                    key = (d.account_id, d.recipient_id)
                    if key not in batch.endpoints:
                        endpoint = await uow.webhooks.get(*key)
                        if endpoint is not None:
                            batch.endpoints[key] = endpoint
                    actor = (d.payload or {}).get("data", {}).get("actor_id")
                    if isinstance(actor, str):
                        wanted[d.account_id].add(actor)
                else:
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
                batch.policies[account_id] = (
                    await uow.policies.get(account_id) or EscalationPolicy()
                )
        return batch

    def _still_due(self, d: Delivery, batch: _Batch) -> bool:
        """Cancel, with the reason, what must not go any more; True for what may."""
        handoff = batch.handoffs.get(d.handoff_id)
        if handoff is None:
            d.mark_cancelled(GONE)
        elif handoff.status is not HandoffStatus.OPEN:
            d.mark_cancelled(CLOSED.format(status=handoff.status.value))
        elif not still_told(
            handoff,
            batch.members.get((d.account_id, d.recipient_id)),
            batch.policies[d.account_id],
        ):
            d.mark_cancelled(NOT_TOLD)
        else:
            return True
        return False

    async def _push(self, pushes: list[Delivery], batch: _Batch) -> dict[str, Delivery]:
        """A push is on its way once its recipient has a live stream: the event itself reaches
        the stream from the stream log. Nobody online: the push is cancelled and an email takes
        its place (by the push delivery it replaces)."""
        fallbacks: dict[str, Delivery] = {}
        by_account: dict[str, list[Delivery]] = defaultdict(list)
        for d in pushes:
            by_account[d.account_id].append(d)
        for account_id, group in by_account.items():
            online: frozenset[str] = frozenset()
            if self._presence is not None:
                try:
                    online = await self._presence.online(
                        account_id, [d.recipient_id for d in group]
                    )
                except Exception:
                    log.exception(
                        "presence lookup for account %s failed; emailing %d pushes instead",
                        account_id,
                        len(group),
                        extra={"account_id": account_id},
                    )
            now = self._clock.now()
            for d in group:
                policy = batch.handoffs[d.handoff_id].policy or EscalationPolicy()
                if d.recipient_id in online:
                    confirm = 0 if policy.email_online_too else policy.push_confirm_seconds
                    d.mark_pushed(now, confirm)
                elif policy.email_online_too:
                    d.mark_cancelled(EMAILED_ANYWAY)  # a fallback would be a second email
                else:
                    d.mark_cancelled(FELL_BACK)
                    fallbacks[d.id] = fallback_email(d, now, self._make_id)
        return fallbacks

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
        closed: dict[str, HandoffStatus] = {}
        handoff_of = {d.id: d.handoff_id for d in emails}
        watching = asyncio.create_task(self._watch(emails, closed))
        try:
            outcomes: Sequence[SendOutcome] = await self._mail.send(
                notices, lambda n: handoff_of[n.delivery_id] in closed
            )
        except Exception as exc:
            log.warning(
                "mail batch of %d notices failed: %r",
                len(notices),
                exc,
                extra={"error": repr(exc), "count": len(notices)},
            )
            outcomes = [SendOutcome(n.delivery_id, ok=False, error=repr(exc)) for n in notices]
        finally:
            watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watching
        withdrawn = {o.delivery_id for o in outcomes if o.withdrawn}
        for d in emails:
            if d.id in withdrawn:
                d.mark_cancelled(CLOSED.format(status=closed[d.handoff_id].value))
        self._apply([d for d in emails if d.id not in withdrawn], outcomes)

    async def _watch(self, emails: Sequence[Delivery], closed: dict[str, HandoffStatus]) -> None:
        """Until cancelled: every `recheck_seconds`, read the batch's escalations again and note
        in `closed` those no longer open, so that their emails not yet written stay unsent. A
        failed read is logged and the batch goes on as read at lease time."""
        handoffs = sorted({(d.account_id, d.handoff_id) for d in emails})
        while True:
            await asyncio.sleep(self._settings.recheck_seconds)
            try:
                async with self._uow() as uow:
                    for account_id, handoff_id in handoffs:
                        if handoff_id in closed:
                            continue
                        handoff = await uow.handoffs.get(account_id, handoff_id)
                        if handoff is not None and handoff.status is not HandoffStatus.OPEN:
                            closed[handoff_id] = handoff.status
            except Exception as exc:
                log.warning(
                    "reading a batch's escalations again failed: %r",
                    exc,
                    extra={"error": repr(exc)},
                )
                return

    async def _record(
        self, leased: Sequence[Delivery], batch: _Batch, fallbacks: dict[str, Delivery]
    ) -> Delivered:
        at = self._clock.now()
        async with self._uow() as uow:
            await self._closed_meanwhile(uow, leased)
            recorded = await uow.deliveries.record_many(leased)
            lost = [d.id for d in leased if d.id not in recorded]
            if lost:
                log.warning(
                    "worker %s lost the lease of %d deliveries before recording their outcome: %s",
                    self._worker_id,
                    len(lost),
                    ", ".join(lost[:5]) + (", ..." if len(lost) > 5 else ""),
                    extra={"delivery_ids": lost, "worker": self._worker_id},
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
        for d in leased:
            if d.status is DeliveryStatus.DEAD and d.id in recorded:
                log.warning(
                    "delivery %s to %s (%s, handoff %s) is dead after %d attempts: %s",
                    d.id, d.recipient_id, d.channel.value, d.handoff_id, d.attempts, d.last_error,
                    extra={"delivery_id": d.id, "handoff_id": d.handoff_id},
                )  # fmt: skip
        await announce(self._announcer, events)
        return Delivered(
            sent=sum(1 for d in leased if d.status is DeliveryStatus.SENT), added=len(kept)
        )

    async def _closed_meanwhile(self, uow: UnitOfWork, leased: Sequence[Delivery]) -> None:
        """Cancel the failed attempts to tell of an escalation that closed while they were on
        their way: a retry would be cancelled anyway, and a dead notice would raise an alarm
        about one nobody needs any more. Read only when an attempt failed for now."""
        failed = [
            d
            for d in leased
            if d.kind is not NoticeKind.CLOSURE
            and d.last_error is not None
            and d.status in (DeliveryStatus.PENDING, DeliveryStatus.DEAD)
        ]
        statuses: dict[tuple[str, str], HandoffStatus | None] = {}
        for d in failed:
            key = (d.account_id, d.handoff_id)
            if key not in statuses:
                handoff = await uow.handoffs.get(*key)
                statuses[key] = handoff.status if handoff is not None else None
            status = statuses[key]
            if status is not HandoffStatus.OPEN:
                reason = GONE if status is None else CLOSED_IN_FLIGHT.format(status=status.value)
                d.mark_cancelled(f"{reason}; the attempt had failed: {d.last_error}")

    async def release(self) -> int:
        """Give back every lease this sender holds and has not recorded yet."""
        released = 0
        async with self._uow() as uow:
            for token in list(self.held):
                released += await uow.deliveries.release(token)
            await uow.commit()
        self.held.clear()
        return released
