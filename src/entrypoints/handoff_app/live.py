"""What the service adds around the core after a commit: push events and background dispatch."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from handoff_core.model import EventType, TimelineEvent
from handoff_core.ports import PushEvent
from handoff_core.services.delivery import DeliveryService

log = logging.getLogger("handoff.live")

STREAM_EVENTS = {
    EventType.SESSION_ESCALATED: "escalation.created",
    EventType.ESCALATION_CLAIMED: "escalation.claimed",
    EventType.ESCALATION_WITHDRAWN: "escalation.withdrawn",
    EventType.ESCALATION_REMINDED: "escalation.reminded",
}


class Inbox(Protocol):
    account_id: str
    member_id: str

    async def next(self, timeout: float) -> PushEvent | None: ...


class LiveHub(Protocol):
    async def publish(self, event: PushEvent) -> None: ...

    def subscribe(self, account_id: str, member_id: str) -> AbstractAsyncContextManager[Inbox]: ...

    async def close(self) -> None: ...


class LivePresence(Protocol):
    async def enter(self, account_id: str, member_id: str, ttl_seconds: float) -> str: ...

    async def heartbeat(self, stream_id: str, ttl_seconds: float) -> None: ...

    async def leave(self, stream_id: str) -> None: ...

    async def online(self, account_id: str, member_ids: Collection[str]) -> frozenset[str]: ...


def stream_payload(event: TimelineEvent) -> dict[str, object]:
    """The `data:` of a stream event, the same live and on replay from the timeline."""
    return {
        "handoff_id": event.handoff_id,
        "session_id": event.session_id,
        "problem_summary": event.data.get("problem_summary", ""),
        "actor_id": event.actor_id,
        "at": event.at.isoformat(),
        **{k: v for k, v in event.data.items() if k in ("round", "engineer_notes")},
    }


class BackgroundDispatch:
    """Sends an escalation's deliveries right after its commit, off the request, a few at a time.

    Whatever this does not finish (a crash, a shutdown) stays pending in the outbox for the worker.
    """

    def __init__(self, delivery: DeliveryService, concurrency: int) -> None:
        self._delivery = delivery
        self._slots = asyncio.Semaphore(concurrency)
        self._tasks: set[asyncio.Task[int]] = set()

    def kick(self, account_id: str, handoff_id: str) -> None:
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


class ServiceAnnouncer:
    """After commit: an escalation goes out through its deliveries (push to those online, email to
    the rest); claims, withdrawals and reminders go to every stream of the account."""

    def __init__(self, hub: LiveHub, dispatch: BackgroundDispatch | None) -> None:
        self._hub = hub
        self._dispatch = dispatch

    def attach(self, dispatch: BackgroundDispatch) -> None:
        self._dispatch = dispatch

    async def committed(self, events: Sequence[TimelineEvent]) -> None:
        for event in events:
            if event.type is EventType.SESSION_ESCALATED:
                if self._dispatch is not None and event.handoff_id is not None:
                    self._dispatch.kick(event.account_id, event.handoff_id)
            elif event.type in STREAM_EVENTS:
                await self._hub.publish(
                    PushEvent(
                        account_id=event.account_id,
                        type=STREAM_EVENTS[event.type],
                        data=stream_payload(event),
                        id=event.id,
                    )
                )
