"""The unit of work over a MemoryStore."""

from __future__ import annotations

from types import TracebackType
from typing import Self

from handoff_core.ports import EscalationsByParts, UnitOfWork
from handoff_memory.repositories import (
    MemoryDeliveries,
    MemoryHandoffs,
    MemoryLoginLinks,
    MemoryMembers,
    MemoryPolicies,
    MemorySessions,
    MemoryStream,
    MemoryTimeline,
    MemoryWebhooks,
)
from handoff_memory.store import Journal, MemoryStore


class MemoryUnitOfWork(UnitOfWork):
    """Holds the store from `__aenter__` to `commit()` or the end of the block; anything not
    committed is rolled back. Not re-entrant: open one per use case, as with a database."""

    def __init__(self, store: MemoryStore) -> None:
        self._store = store
        self._journal = Journal()
        self._held = False
        self.members = MemoryMembers(store, self._journal)
        self.sessions = MemorySessions(store, self._journal)
        self.handoffs = MemoryHandoffs(store, self._journal)
        self.deliveries = MemoryDeliveries(store, self._journal)
        self.timeline = MemoryTimeline(store, self._journal)
        self.policies = MemoryPolicies(store, self._journal)
        self.stream = MemoryStream(store, self._journal)
        self.webhooks = MemoryWebhooks(store, self._journal)
        self.login_links = MemoryLoginLinks(store, self._journal)
        self.escalations = EscalationsByParts(self)

    async def __aenter__(self) -> Self:
        await self._store.lock.acquire()
        self._held = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.rollback()

    async def commit(self) -> None:
        """Keep every write made in this unit of work and let the next one in."""
        self._journal.forget()
        self._release()

    async def rollback(self) -> None:
        """Undo every write not committed yet and let the next one in; harmless when repeated."""
        self._journal.roll_back()
        self._release()

    def _release(self) -> None:
        if self._held:
            self._held = False
            self._store.lock.release()


class MemoryDatabase:
    """A whole in-memory database: call it for a fresh unit of work."""

    def __init__(self) -> None:
        self.store = MemoryStore()

    def __call__(self) -> MemoryUnitOfWork:
        return MemoryUnitOfWork(self.store)
