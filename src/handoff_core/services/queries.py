"""What members can read: sessions, handoffs, the queue, deliveries, the timeline, analytics."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from datetime import datetime

from attrs import frozen

from handoff_core.errors import ValidationError
from handoff_core.model import Delivery, Handoff, HandoffStatus, Session, TimelineEvent
from handoff_core.ports import UnitOfWorkFactory
from handoff_core.services.common import acting_member, existing_handoff, existing_session

QUEUE_FILTERS: dict[str, tuple[HandoffStatus, ...] | None] = {
    "open": (HandoffStatus.OPEN,),
    "claimed": (HandoffStatus.CLAIMED,),
    "withdrawn": (HandoffStatus.WITHDRAWN,),
    "all": None,
}


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile: a value that was actually observed; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p * len(ordered) / 100))
    return ordered[rank - 1]


@frozen
class EscalationStats:
    escalated: int
    claimed: int
    withdrawn: int
    open: int
    claim_rate: float | None
    time_to_claim_p50_s: float | None
    time_to_claim_p90_s: float | None
    claims_by_member: dict[str, int]
    claims_by_tier: dict[str, int]  # the tier reached when claimed ("1" = the first) → claims

    @classmethod
    def of(cls, escalations: Sequence[Handoff]) -> EscalationStats:
        by_status = Counter(h.status for h in escalations)
        waits = [
            (h.claimed_at - h.created_at).total_seconds()
            for h in escalations
            if h.status is HandoffStatus.CLAIMED and h.claimed_at is not None
        ]
        claimers = Counter(
            h.claimed_by
            for h in escalations
            if h.status is HandoffStatus.CLAIMED and h.claimed_by is not None
        )
        tiers = Counter(
            str(h.tiers_reached) for h in escalations if h.status is HandoffStatus.CLAIMED
        )
        total = len(escalations)
        claimed = by_status[HandoffStatus.CLAIMED]
        return cls(
            escalated=total,
            claimed=claimed,
            withdrawn=by_status[HandoffStatus.WITHDRAWN],
            open=by_status[HandoffStatus.OPEN],
            claim_rate=round(claimed / total, 4) if total else None,
            time_to_claim_p50_s=percentile(waits, 50),
            time_to_claim_p90_s=percentile(waits, 90),
            claims_by_member=dict(sorted(claimers.items())),
            claims_by_tier=dict(sorted(tiers.items(), key=lambda kv: int(kv[0]))),
        )


class Queries:
    """Reads for any current member of the account, viewers included."""

    def __init__(self, uow: UnitOfWorkFactory) -> None:
        self._uow = uow

    async def session(self, account_id: str, actor_id: str, session_id: str) -> Session:
        async with self._uow() as uow:
            await acting_member(uow, account_id, actor_id)
            return await existing_session(uow, account_id, session_id)

    async def handoff(self, account_id: str, actor_id: str, handoff_id: str) -> Handoff:
        async with self._uow() as uow:
            await acting_member(uow, account_id, actor_id)
            return await existing_handoff(uow, account_id, handoff_id)

    async def handoffs_of(self, account_id: str, actor_id: str, session_id: str) -> list[Handoff]:
        async with self._uow() as uow:
            await acting_member(uow, account_id, actor_id)
            await existing_session(uow, account_id, session_id)
            return await uow.handoffs.for_session(account_id, session_id)

    async def queue(self, account_id: str, actor_id: str, status: str = "open") -> list[Handoff]:
        """The account's escalations, oldest first."""
        if status not in QUEUE_FILTERS:
            raise ValidationError("status", f"must be one of {', '.join(QUEUE_FILTERS)}")
        async with self._uow() as uow:
            await acting_member(uow, account_id, actor_id)
            return await uow.handoffs.escalations(account_id, statuses=QUEUE_FILTERS[status])

    async def deliveries(self, account_id: str, actor_id: str, handoff_id: str) -> list[Delivery]:
        async with self._uow() as uow:
            await acting_member(uow, account_id, actor_id)
            await existing_handoff(uow, account_id, handoff_id)
            return await uow.deliveries.for_handoff(account_id, handoff_id)

    async def timeline(
        self, account_id: str, actor_id: str, session_id: str
    ) -> list[TimelineEvent]:
        """Oldest first."""
        async with self._uow() as uow:
            await acting_member(uow, account_id, actor_id)
            await existing_session(uow, account_id, session_id)
            return await uow.timeline.for_session(account_id, session_id)

    async def analytics(
        self,
        account_id: str,
        actor_id: str,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> EscalationStats:
        """Escalations raised in [since, until): counts, claim rate and time to claim."""
        if since is not None and until is not None and since >= until:
            raise ValidationError("since", "must be before until")
        async with self._uow() as uow:
            (await acting_member(uow, account_id, actor_id)).require_can_act()
            escalations = await uow.handoffs.escalations(account_id, since=since, until=until)
        return EscalationStats.of(escalations)
