"""Complete in-memory adapters for every port of handoff_core.

Shipped for users' own tests: they keep the same promises as the SQL store (conditional claims,
idempotency-key uniqueness, account scoping, rollback of what was not committed).
"""

from handoff_memory.uow import MemoryDatabase, MemoryUnitOfWork
from handoff_memory.world import ManualClock, MemoryPresence, RecordingMailSender, RecordingPushHub

__all__ = [
    "ManualClock",
    "MemoryDatabase",
    "MemoryPresence",
    "MemoryUnitOfWork",
    "RecordingMailSender",
    "RecordingPushHub",
]
