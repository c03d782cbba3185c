"""Live push inside one process: the hub and presence for a single-process deployment (SQLite)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Collection

from handoff_core.ports import PushEvent

QUEUE_LIMIT = 1000


class Subscription:
    """One live stream's inbox. A stream that stops reading loses its oldest events, never blocks
    the publisher; it can catch up from the timeline with Last-Event-ID."""

    def __init__(self, account_id: str, member_id: str) -> None:
        self.account_id = account_id
        self.member_id = member_id
        self.queue: asyncio.Queue[PushEvent] = asyncio.Queue(maxsize=QUEUE_LIMIT)

    def offer(self, event: PushEvent) -> None:
        if event.account_id != self.account_id:
            return
        if event.audience is not None and self.member_id not in event.audience:
            return
        if self.queue.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                self.queue.get_nowait()
        self.queue.put_nowait(event)

    async def next(self, timeout: float) -> PushEvent | None:
        try:
            return await asyncio.wait_for(self.queue.get(), timeout=timeout)
        except TimeoutError:
            return None


class InProcessHub:
    """Hands every published event to the matching subscriptions of this process.

    Subscriptions are indexed by account and by member, so an event addressed to a few members
    of a large account touches only their streams.
    """

    def __init__(self) -> None:
        self._subs: dict[str, set[Subscription]] = defaultdict(set)
        self._by_member: dict[tuple[str, str], set[Subscription]] = defaultdict(set)

    async def publish(self, event: PushEvent) -> None:
        self.deliver_local(event)

    def deliver_local(self, event: PushEvent) -> None:
        if event.audience is None:
            targets: list[Subscription] = list(self._subs.get(event.account_id, ()))
        else:
            targets = [
                sub
                for member_id in event.audience
                for sub in self._by_member.get((event.account_id, member_id), ())
            ]
        for sub in targets:
            sub.offer(event)

    @contextlib.asynccontextmanager
    async def subscribe(self, account_id: str, member_id: str) -> AsyncIterator[Subscription]:
        sub = Subscription(account_id, member_id)
        key = (account_id, member_id)
        self._subs[account_id].add(sub)
        self._by_member[key].add(sub)
        try:
            yield sub
        finally:
            self._subs[account_id].discard(sub)
            if not self._subs[account_id]:
                del self._subs[account_id]
            self._by_member[key].discard(sub)
            if not self._by_member[key]:
                del self._by_member[key]

    def subscribers(self, account_id: str) -> int:
        return len(self._subs.get(account_id, ()))

    async def close(self) -> None:
        self._subs.clear()
        self._by_member.clear()


class InProcessPresence:
    """Who has a live stream open in this process."""

    def __init__(self) -> None:
        self._streams: dict[str, tuple[str, str]] = {}
        self._counts: dict[tuple[str, str], int] = defaultdict(int)

    async def enter(self, account_id: str, member_id: str, ttl_seconds: float = 0) -> str:
        stream_id = uuid.uuid4().hex
        self._streams[stream_id] = (account_id, member_id)
        self._counts[(account_id, member_id)] += 1
        return stream_id

    async def heartbeat(self, stream_id: str, ttl_seconds: float = 0) -> None:
        return None

    async def leave(self, stream_id: str) -> None:
        key = self._streams.pop(stream_id, None)
        if key is None:
            return
        self._counts[key] -= 1
        if self._counts[key] <= 0:
            del self._counts[key]

    async def online(self, account_id: str, member_ids: Collection[str]) -> frozenset[str]:
        return frozenset(m for m in member_ids if (account_id, m) in self._counts)
