"""Fakes for the outside world that keep real state: a clock, a mailbox, a push hub, presence."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable, Collection, Sequence
from datetime import UTC, datetime, timedelta

from handoff_core.notice import Notice
from handoff_core.ports import (
    WITHDRAWN,
    Clock,
    MailSender,
    Presence,
    PushHub,
    SendOutcome,
    Withdrawn,
)
from handoff_core.stream import StreamEvent


class ManualClock(Clock):
    """Time stands still until a test moves it."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 5, 9, 0, tzinfo=UTC)

    def now(self) -> datetime:
        """The clock's current time (timezone-aware UTC); the same until `advance` is called."""
        return self._now

    def advance(self, seconds: float) -> datetime:
        """Move the clock forward by `seconds` (negative moves it back) and return the new time."""
        self._now += timedelta(seconds=seconds)
        return self._now


class RecordingMailSender(MailSender):
    """Keeps every message it accepts, by address.

    `refuse` addresses are refused for good (like an SMTP 5xx), `defer` addresses fail for now
    (like a 4xx), and `fail_with` makes every send raise, as a broken SMTP setup would.
    """

    def __init__(self) -> None:
        self.sent: dict[str, list[Notice]] = defaultdict(list)
        self.refuse: set[str] = set()
        self.defer: set[str] = set()
        self.fail_with: Exception | None = None
        self.attempts = 0
        # Awaited after each notice it keeps: a test's way to act in the middle of a batch.
        self.after_each: Callable[[Notice], Awaitable[None]] | None = None

    @property
    def messages(self) -> list[Notice]:
        """Every notice accepted so far, to any address (in order within each address)."""
        return [n for notices in self.sent.values() for n in notices]

    async def send(
        self, notices: Sequence[Notice], withdrawn: Withdrawn | None = None
    ) -> list[SendOutcome]:
        """Accept the notices, one outcome per notice in order, as a `MailSender` must.

        A notice `withdrawn` says no to is not tried; one to a `refuse` address gets a permanent
        failure (550), one to a `defer` address a temporary one (451); the rest are kept in
        `sent`, `after_each` awaited after each. Every notice counts in `attempts`.

        Raises:
            Exception: `fail_with`, if set, before any notice is kept (a whole batch failing).
        """
        self.attempts += len(notices)
        if self.fail_with is not None:
            raise self.fail_with
        outcomes = []
        for n in notices:
            if withdrawn is not None and withdrawn(n):
                outcomes.append(
                    SendOutcome(n.delivery_id, ok=False, withdrawn=True, error=WITHDRAWN)
                )
            elif n.to_address in self.refuse:
                outcomes.append(
                    SendOutcome(
                        n.delivery_id, ok=False, permanent=True, error="550 mailbox unavailable"
                    )
                )
            elif n.to_address in self.defer:
                outcomes.append(SendOutcome(n.delivery_id, ok=False, error="451 try again later"))
            else:
                self.sent[n.to_address].append(n)
                outcomes.append(SendOutcome(n.delivery_id, ok=True))
                if self.after_each is not None:
                    await self.after_each(n)
        return outcomes


class MemoryPresence(Presence):
    """Who has a live stream open, counted per stream."""

    def __init__(self) -> None:
        self._streams: dict[tuple[str, str], int] = defaultdict(int)

    def enter(self, account_id: str, member_id: str) -> None:
        """Count one more live stream for the member: they are online until each is `leave`-d."""
        self._streams[(account_id, member_id)] += 1

    def leave(self, account_id: str, member_id: str) -> None:
        """Count one stream fewer; at none the member is offline (and email reaches them)."""
        key = (account_id, member_id)
        self._streams[key] -= 1
        if self._streams[key] <= 0:
            del self._streams[key]

    async def online(
        self, account_id: str, member_ids: Collection[str] | None = None
    ) -> frozenset[str]:
        """Which of these members (None: any of the account) have a stream open."""
        if member_ids is None:
            return frozenset(m for a, m in self._streams if a == account_id)
        return frozenset(m for m in member_ids if (account_id, m) in self._streams)


class RecordingPushHub(PushHub):
    """Keeps every stream event published, and hands each to the in-process subscribers of the
    account that are in its audience (wire it with `handoff_core.services.common.StreamAnnouncer`).
    """

    def __init__(self) -> None:
        self.published: list[StreamEvent] = []
        self._queues: dict[str, list[tuple[str, asyncio.Queue[StreamEvent]]]] = defaultdict(list)

    async def publish(self, events: Sequence[StreamEvent]) -> None:
        """Keep the events in `published` and put each on the queue of every subscriber of its
        account who is in its audience (`StreamEvent.visible_to`), in the order given."""
        for event in events:
            self.published.append(event)
            for member_id, queue in self._queues.get(event.account_id, []):
                if event.visible_to(member_id):
                    queue.put_nowait(event)

    def subscribe(self, account_id: str, member_id: str) -> asyncio.Queue[StreamEvent]:
        """A new unbounded queue that gets the account's events this member may see, from now."""
        queue: asyncio.Queue[StreamEvent] = asyncio.Queue()
        self._queues[account_id].append((member_id, queue))
        return queue

    def unsubscribe(self, account_id: str, queue: asyncio.Queue[StreamEvent]) -> None:
        """Stop filling `queue` (from `subscribe`); an unknown queue is ignored."""
        self._queues[account_id] = [
            (m, q) for m, q in self._queues.get(account_id, []) if q is not queue
        ]

    def received_by(self, account_id: str, member_id: str) -> list[StreamEvent]:
        """Every event published so far that this member of the account may see, in order."""
        return [e for e in self.published if e.account_id == account_id and e.visible_to(member_id)]
