"""The delivery worker: dispatch right after a commit, and the loop that retries what is due and
raises what time brings (reminders, email for unseen pushes).

The send pipeline is `services.sending`, the timed follow-ups `services.followups`.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

from handoff_core.errors import StorageUnavailable
from handoff_core.model import Intent
from handoff_core.policy import IdFactory, new_id
from handoff_core.ports import (
    Announcer,
    Clock,
    MailSender,
    Presence,
    UnitOfWorkFactory,
    WebhookSender,
)
from handoff_core.services.common import SilentAnnouncer
from handoff_core.services.followups import FollowUps
from handoff_core.services.sending import DeliverySettings, Sender

__all__ = ["DeliveryService", "DeliverySettings"]

log = logging.getLogger("handoff.delivery")
PRUNE_EVERY = timedelta(hours=1)


class DeliveryService:
    """Sends what the outbox holds. `dispatch` is the seed's contract: it returns how many notices
    went out, never raises, and sends nothing for a park.

    `presence` decides push or email at send time (None: nobody is online, everyone gets email);
    the announcer hears of the timeline and stream events the worker commits. `webhooks` posts
    the `webhook` channel (None: webhook deliveries fail, saying no sender is configured).
    """

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        clock: Clock,
        mail: MailSender,
        *,
        presence: Presence | None = None,
        announcer: Announcer | None = None,
        settings: DeliverySettings | None = None,
        worker_id: str | None = None,
        make_id: IdFactory = new_id,
        webhooks: WebhookSender | None = None,
    ) -> None:
        self._uow = uow
        self._settings = settings or DeliverySettings()
        self.worker_id = worker_id or f"worker-{new_id()[:12]}"
        told: Announcer = announcer or SilentAnnouncer()
        self._sender = Sender(
            uow, clock, mail, presence, told, self._settings, self.worker_id, make_id, webhooks
        )
        self._followups = FollowUps(
            uow, clock, told, make_id, self._settings.batch_size, presence=presence
        )
        self._clock = clock
        self._pruned_at: datetime | None = None

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
        except StorageUnavailable as down:
            _dispatch_failed(handoff_id, None, down)
            return 0
        except Exception:
            _dispatch_failed(handoff_id, None, None)
            return 0

        async def lane() -> int:
            done = 0
            try:
                limit = self._settings.dispatch_batch_size
                while leased := await self._sender.lease(
                    account_id=account_id, handoff_id=handoff_id, limit=limit
                ):
                    delivered = await self._sender.deliver(leased)
                    done += delivered.sent
                    if len(leased) < limit and not delivered.added:
                        break  # it took all that was due, and sending made nothing new
            except StorageUnavailable as down:
                _dispatch_failed(handoff_id, done, down)
            except Exception:
                _dispatch_failed(handoff_id, done, None)
            return done

        lanes = max(1, self._settings.lanes)
        return sum(await asyncio.gather(*(lane() for _ in range(lanes))))

    async def run_once(self) -> int:
        """One worker pass: raise due tiers, reminders and email for unseen pushes, then send
        one batch of due deliveries; how many notices it sent."""
        await self._followups.raise_tiers_due()
        await self._followups.remind_due()
        await self._followups.email_unseen_pushes()
        await self._prune_stream()
        return await self._send_once()

    async def run(
        self,
        stop: asyncio.Event,
        poll_seconds: float = 1.0,
        *,
        lanes: int = 1,
        wake: asyncio.Event | None = None,
    ) -> None:
        """Work until `stop` is set, then give back whatever is still leased.

        `lanes` batches are sent at once (the first lane also raises the follow-ups); an idle lane
        looks again after `poll_seconds`, or as soon as `wake` is set (a commit somewhere)."""

        async def lane(first: bool) -> None:
            while not stop.is_set():
                try:
                    busy = await (self.run_once() if first else self._send_once())
                except StorageUnavailable as down:  # expected while the store is down: one line
                    log.warning(
                        "worker %s pass failed: %s",
                        self.worker_id,
                        down.detail,
                        extra={"worker": self.worker_id},
                    )
                    busy = 0
                except Exception:
                    log.exception(
                        "worker %s pass failed",
                        self.worker_id,
                        extra={"worker": self.worker_id},
                    )
                    busy = 0
                if not busy:
                    await _idle(stop, wake, poll_seconds)

        try:
            await asyncio.gather(*(lane(i == 0) for i in range(max(1, lanes))))
        finally:
            await self.release()

    async def _send_once(self) -> int:
        leased = await self._sender.lease()
        return (await self._sender.deliver(leased)).sent if leased else 0

    async def release(self) -> int:
        """Give back every lease this service holds and has not recorded yet."""
        try:
            return await self._sender.release()
        except Exception:
            log.exception(
                "worker %s could not release its leases",
                self.worker_id,
                extra={"worker": self.worker_id},
            )
            return 0

    async def _prune_stream(self) -> None:
        """At most once an hour: forget stream events older than `stream_keep_seconds` (a client
        asking to replay from before them gets `stream.reset`)."""
        now = self._clock.now()
        if self._pruned_at is not None and now - self._pruned_at < PRUNE_EVERY:
            return
        self._pruned_at = now
        keep = timedelta(seconds=self._settings.stream_keep_seconds)
        async with self._uow() as uow:
            pruned = await uow.stream.prune(now - keep)
            await uow.commit()
        if pruned:
            log.info("pruned %d events from the stream log", pruned, extra={"events": pruned})

    async def raise_tiers_due(self) -> int:
        """Tell every tier whose time has come (SPEC §14); how many tiers were raised."""
        return await self._followups.raise_tiers_due()

    async def remind_due(self) -> int:
        """Raise every reminder that is due; how many reminder rounds were raised."""
        return await self._followups.remind_due()

    async def email_unseen_pushes(self) -> int:
        """Email the recipients of pushes not marked seen in time; how many."""
        return await self._followups.email_unseen_pushes()


def _dispatch_failed(handoff_id: str, sent: int | None, down: StorageUnavailable | None) -> None:
    """One log line for a dispatch that stopped: a warning when the store was `down` (expected
    while it is), else the error with its traceback (call it from the `except`); `sent` is how
    many had gone by then, where known."""
    after = "" if sent is None else f" after {sent} sent"
    extra: dict[str, object] = {"handoff_id": handoff_id}
    if sent is not None:
        extra["sent"] = sent
    if down is not None:
        log.warning(
            "dispatch of handoff %s failed%s: %s", handoff_id, after, down.detail, extra=extra
        )
    else:
        log.exception("dispatch of handoff %s failed%s", handoff_id, after, extra=extra)


async def _idle(stop: asyncio.Event, wake: asyncio.Event | None, seconds: float) -> None:
    """Wait up to `seconds` for `stop` or `wake`; a wake is used up by those it woke."""
    waits = [asyncio.ensure_future(stop.wait())]
    if wake is not None:
        waits.append(asyncio.ensure_future(wake.wait()))
    try:
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiting in waits:
            waiting.cancel()
    if wake is not None:
        wake.clear()
