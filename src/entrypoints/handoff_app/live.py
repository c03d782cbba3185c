"""What the service adds around the core: the stream relay's ports, the stream guard and the
background dispatch that sends an escalation's deliveries right after its commit."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable, Collection, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from handoff_core.errors import StorageUnavailable
from handoff_core.ports import UnitOfWorkFactory
from handoff_core.services.delivery import DeliveryService
from handoff_core.stream import StreamEvent

log = logging.getLogger("handoff.live")

STREAM_GUARD_SECONDS = 2.0  # removal reaches open streams within two sweeps (SPEC §10: 5 s)


class Inbox(Protocol):
    account_id: str
    member_id: str
    closed: bool
    overflowed: bool

    async def next(self, timeout: float) -> StreamEvent | None: ...

    def drain(self) -> None: ...


class LiveHub(Protocol):
    async def publish(self, events: Sequence[StreamEvent]) -> None: ...

    def subscribe(self, account_id: str, member_id: str) -> AbstractAsyncContextManager[Inbox]: ...

    async def catch_up(self, account_id: str) -> None: ...

    def on_event(self, watcher: Callable[[], None]) -> None: ...

    def listeners(self) -> list[tuple[str, str]]: ...

    def accounts(self) -> list[str]: ...

    def close_member(self, account_id: str, member_id: str) -> int: ...

    async def close(self) -> None: ...


class LivePresence(Protocol):
    async def enter(self, account_id: str, member_id: str, ttl_seconds: float) -> str: ...

    async def heartbeat(self, stream_id: str, ttl_seconds: float) -> None: ...

    async def leave(self, stream_id: str) -> None: ...

    async def online(
        self, account_id: str, member_ids: Collection[str] | None = None
    ) -> frozenset[str]: ...


class LogSource:
    """The stream log as the relay reads it: through a unit of work of its own, per read."""

    def __init__(self, uow: UnitOfWorkFactory) -> None:
        self._uow = uow

    async def head(self, account_id: str) -> int:
        async with self._uow() as uow:
            _, head = await uow.stream.bounds(account_id)
        return head

    async def after(self, account_id: str, after_seq: int, limit: int) -> list[StreamEvent]:
        async with self._uow() as uow:
            return await uow.stream.after(account_id, after_seq, limit)


class StreamGuard:
    """Every couple of seconds, while streams are open in this process: ends the streams of
    members who may no longer be told (removed, deactivated, no longer senior; SPEC §10), and
    asks the relay to catch up with the log (a notification lost between processes)."""

    def __init__(
        self, hub: LiveHub, uow: UnitOfWorkFactory, period: float = STREAM_GUARD_SECONDS
    ) -> None:
        self._hub = hub
        self._uow = uow
        self._period = period
        self._task: asyncio.Task[None] | None = None

    def ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._period)
            try:
                if not await self.sweep():
                    return  # no stream open: the next one starts the guard again
            except StorageUnavailable as down:
                log.warning("stream guard pass failed: %s", down.detail)
            except Exception:
                log.exception("stream guard pass failed")

    async def sweep(self) -> int:
        """One pass; how many streams were open when it started."""
        listeners = self._hub.listeners()
        wanted: dict[str, set[str]] = defaultdict(set)
        for account_id, member_id in listeners:
            wanted[account_id].add(member_id)
        async with self._uow() as uow:
            for account_id, member_ids in wanted.items():
                found = {m.id: m for m in await uow.members.get_many(account_id, member_ids)}
                for member_id in member_ids:
                    member = found.get(member_id)
                    if member is None or not member.is_current or not member.is_senior:
                        closed = self._hub.close_member(account_id, member_id)
                        log.info(
                            "closed the streams of a member no longer told",
                            extra={
                                "account_id": account_id,
                                "member_id": member_id,
                                "streams": closed,
                            },
                        )
        for account_id in self._hub.accounts():
            await self._hub.catch_up(account_id)
        return len(listeners)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


class BackgroundDispatch:
    """Sends an escalation's deliveries right after its commit, off the request, a few at a time.

    Whatever this does not finish (a crash, a shutdown) stays pending in the outbox for the worker.
    """

    def __init__(self, delivery: DeliveryService, concurrency: int) -> None:
        self._delivery = delivery
        self._slots = asyncio.Semaphore(concurrency)
        self._tasks: set[asyncio.Task[int]] = set()

    def kick(self, account_id: str, handoff_id: str) -> None:
        """Send this escalation's deliveries now, in the background (the Dispatcher port)."""
        task = asyncio.get_running_loop().create_task(self._run(account_id, handoff_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, account_id: str, handoff_id: str) -> int:
        async with self._slots:
            return await self._delivery.dispatch(account_id, handoff_id)

    async def drain(self, timeout: float = 10.0) -> None:
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
        for task in pending:
            task.cancel()
