"""Live push inside one process: the stream relay and presence of a single process.

The relay hands each account's stream events to this process's open streams in order, with no
gap: it keeps, per account with an open stream, the last seq it handed out; an event that is
next is handed out at once, and one that shows a gap (an event heard out of order, or missed)
makes it read the missing ones from the stream log first. Events are read from the log, never
made up here, so what a stream shows live is what a replay gives back (SPEC §10).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from typing import Protocol

from handoff_core.ports import Presence, PushHub
from handoff_core.stream import StreamEvent

QUEUE_LIMIT = 1000
FETCH_PAGE = 500


class StreamSource(Protocol):
    """Where the relay reads the stream log (the database, through the app's unit of work)."""

    async def head(self, account_id: str) -> int:
        """The highest seq the account's log holds; 0 for an account with no events."""
        ...

    async def after(self, account_id: str, after_seq: int, limit: int) -> list[StreamEvent]:
        """At most `limit` events with a seq above `after_seq`, oldest first, every audience."""
        ...


class Subscription:
    """One live stream's inbox: the events of its account that its member may see, in order.

    A stream that stops reading never blocks the relay: once its queue is full it is marked
    `overflowed` and gets nothing more until it catches up from the log itself. `closed` is set
    when its member may no longer be told (removed, deactivated, demoted) or the hub shuts down.
    """

    def __init__(self, account_id: str, member_id: str) -> None:
        self.account_id = account_id
        self.member_id = member_id
        self.queue: asyncio.Queue[StreamEvent] = asyncio.Queue(maxsize=QUEUE_LIMIT)
        self.overflowed = False
        self.closed = False
        self._wake = asyncio.Event()

    def offer(self, event: StreamEvent) -> None:
        """Queue the event if this stream may see it (its account, its member in the audience);
        never blocks: on a full queue the stream is marked `overflowed` instead."""
        if self.closed or event.account_id != self.account_id:
            return
        if not event.visible_to(self.member_id):
            return
        if self.queue.full():
            self.overflowed = True
            self._wake.set()
            return
        self.queue.put_nowait(event)

    def close(self) -> None:
        """Mark the stream closed and wake its reader: `next` returns None from now on."""
        self.closed = True
        self._wake.set()

    async def next(self, timeout: float) -> StreamEvent | None:
        """The next event, or None after `timeout` seconds, on overflow or on close."""
        if self.closed or self.overflowed:
            return None
        with contextlib.suppress(asyncio.QueueEmpty):
            return self.queue.get_nowait()
        self._wake.clear()
        getter = asyncio.ensure_future(self.queue.get())
        woken = asyncio.ensure_future(self._wake.wait())
        try:
            done, _ = await asyncio.wait(
                {getter, woken}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            woken.cancel()
            if not getter.done():
                getter.cancel()
        if getter in done and not getter.cancelled():
            return getter.result()
        return None

    def drain(self) -> None:
        """Forget what is queued (the stream is about to read the log instead)."""
        while not self.queue.empty():
            self.queue.get_nowait()
        self.overflowed = False


class InProcessHub(PushHub):
    """The relay of one process; every published or heard event goes through `deliver`.

    Subscriptions are indexed by account and by member, so an event addressed to a few members
    of a large account touches only their streams.
    """

    def __init__(self, source: StreamSource | None = None) -> None:
        self._source = source
        self._subs: dict[str, set[Subscription]] = defaultdict(set)
        self._by_member: dict[tuple[str, str], set[Subscription]] = defaultdict(set)
        self._cursor: dict[str, int] = {}
        self._watchers: list[Callable[[], None]] = []
        self._locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    async def publish(self, events: Sequence[StreamEvent]) -> None:
        """In one process, publishing is delivering."""
        await self.deliver(events)

    async def deliver(self, events: Sequence[StreamEvent]) -> None:
        """Hand committed events (of any accounts) to this process's streams, each account's in
        seq order and with no gap (a gap is read from the log first, given a `source`)."""
        by_account: dict[str, list[StreamEvent]] = defaultdict(list)
        for event in events:
            by_account[event.account_id].append(event)
        for account_id, group in by_account.items():
            await self.heard(account_id, group)

    async def heard(self, account_id: str, events: Sequence[StreamEvent], seq: int = 0) -> None:
        """Events of one account were committed (or, with no events, the account reached `seq`):
        hand out, in order, whatever this process's streams of the account have not had."""
        for watcher in self._watchers:
            watcher()
        if account_id not in self._cursor:
            return  # nobody listens here; the first subscriber starts from the log's head
        async with self._locks[account_id]:
            cursor = self._cursor.get(account_id)
            if cursor is None:
                return
            ordered = sorted((e for e in events if (e.seq or 0) > cursor), key=_seq)
            top = max([seq, *(_seq(e) for e in ordered)])
            if top <= cursor:
                return
            if self._source is not None and (
                not ordered
                or _seq(ordered[0]) != cursor + 1
                or _seq(ordered[-1]) - cursor != len(ordered)
            ):
                ordered = await self._read(account_id, cursor, top)
            for event in ordered:
                self._fan_out(event)
                cursor = _seq(event)
            self._cursor[account_id] = cursor

    async def catch_up(self, account_id: str) -> None:
        """Read whatever the log holds past this process's cursor (a lost notification)."""
        if self._source is None or account_id not in self._cursor:
            return
        await self.heard(account_id, (), await self._source.head(account_id))

    async def _read(self, account_id: str, after: int, upto: int) -> list[StreamEvent]:
        assert self._source is not None
        found: list[StreamEvent] = []
        cursor = after
        while cursor < upto:
            page = await self._source.after(account_id, cursor, FETCH_PAGE)
            if not page:
                break
            found.extend(page)
            cursor = _seq(page[-1])
        return found

    def _fan_out(self, event: StreamEvent) -> None:
        if event.audience is None:
            targets: Collection[Subscription] = list(self._subs.get(event.account_id, ()))
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
        """A subscription that gets every event of the account committed from now on that the
        member may see (and possibly a few earlier ones, which the stream skips by id)."""
        sub = Subscription(account_id, member_id)
        key = (account_id, member_id)
        async with self._locks[account_id]:
            if account_id not in self._cursor:
                self._cursor[account_id] = (
                    await self._source.head(account_id) if self._source is not None else 0
                )
            self._subs[account_id].add(sub)
            self._by_member[key].add(sub)
        try:
            yield sub
        finally:
            self._subs[account_id].discard(sub)
            if not self._subs[account_id]:
                del self._subs[account_id]
                self._cursor.pop(account_id, None)
            self._by_member[key].discard(sub)
            if not self._by_member[key]:
                del self._by_member[key]

    def on_event(self, watcher: Callable[[], None]) -> None:
        """Call `watcher` (cheap, synchronous) whenever an event is heard, of any account: a
        delivery worker wakes on it instead of polling."""
        self._watchers.append(watcher)

    def listeners(self) -> list[tuple[str, str]]:
        """(account_id, member_id) of every open stream of this process, once each."""
        return list(self._by_member)

    def accounts(self) -> list[str]:
        """The accounts with at least one open stream in this process."""
        return list(self._subs)

    def close_member(self, account_id: str, member_id: str) -> int:
        """End every stream of this member in this process; how many."""
        subs = list(self._by_member.get((account_id, member_id), ()))
        for sub in subs:
            sub.close()
        return len(subs)

    def subscribers(self, account_id: str) -> int:
        """How many streams of the account are open in this process."""
        return len(self._subs.get(account_id, ()))

    async def close(self) -> None:
        """Close every open stream (their readers see the end) and forget every account."""
        for subs in self._subs.values():
            for sub in subs:
                sub.close()
        self._subs.clear()
        self._by_member.clear()
        self._cursor.clear()


def _seq(event: StreamEvent) -> int:
    return event.seq or 0


class InProcessPresence(Presence):
    """Who has a live stream open in this process."""

    def __init__(self) -> None:
        self._streams: dict[str, tuple[str, str]] = {}
        self._counts: dict[tuple[str, str], int] = defaultdict(int)

    async def enter(self, account_id: str, member_id: str, ttl_seconds: float = 0) -> str:
        """A stream opened: the member is online until it is `leave`-d; returns its new id.
        `ttl_seconds` is ignored (nothing outlives this process)."""
        stream_id = uuid.uuid4().hex
        self._streams[stream_id] = (account_id, member_id)
        self._counts[(account_id, member_id)] += 1
        return stream_id

    async def heartbeat(self, stream_id: str, ttl_seconds: float = 0) -> None:
        """Nothing to renew in one process; here so either presence is driven alike."""
        return None

    async def leave(self, stream_id: str) -> None:
        """A stream closed (an unknown id is ignored); at none left its member is offline."""
        key = self._streams.pop(stream_id, None)
        if key is None:
            return
        self._counts[key] -= 1
        if self._counts[key] <= 0:
            del self._counts[key]

    async def online(
        self, account_id: str, member_ids: Collection[str] | None = None
    ) -> frozenset[str]:
        """Which of these members (None: any of the account) have a stream open here."""
        if member_ids is None:
            return frozenset(m for a, m in self._counts if a == account_id)
        return frozenset(m for m in member_ids if (account_id, m) in self._counts)
