"""The operator's figures (SPEC §13) of an in-memory database."""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from handoff_core.figures import StoreFigures, claim_figures
from handoff_core.model import DeliveryStatus, Intent
from handoff_memory.uow import MemoryDatabase


async def store_figures(database: MemoryDatabase) -> StoreFigures:
    """Counted under the store's lock, so a unit of work half-done is never counted."""
    store = database.store
    async with store.lock:
        escalations = [h for h in store.handoffs.values() if h.intent is Intent.ESCALATE]
        deliveries = list(store.deliveries.values())
    by_kind = Counter((d.channel.value, d.status.value) for d in deliveries)
    pending: list[datetime] = [
        d.created_at for d in deliveries if d.status is DeliveryStatus.PENDING
    ]
    durations = [
        (h.claimed_at - h.created_at).total_seconds()
        for h in escalations
        if h.claimed_at is not None
    ]
    buckets, claims, total = claim_figures(durations)
    return StoreFigures(
        escalations=len(escalations),
        deliveries=dict(by_kind),
        pending=len(pending),
        oldest_pending_at=min(pending, default=None),
        claim_buckets=buckets,
        claims=claims,
        claim_seconds_sum=total,
    )
