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
    """What `Queries.analytics` returns: counts by outcome, `claim_rate` (claimed / escalated,
    None with no escalations), time to claim in seconds, and claims per member."""

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
        """The figures of these escalations."""
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
        """One session of the account. Raises NotAMember, NotFound (absent or another
        account's)."""
        async with self._uow() as uow:
            await acting_member(uow, account_id, actor_id)
            return await existing_session(uow, account_id, session_id)

    async def handoff(self, account_id: str, actor_id: str, handoff_id: str) -> Handoff:
        """One handoff (park or escalation) of the account. Raises NotAMember, NotFound."""
        async with self._uow() as uow:
            await acting_member(uow, account_id, actor_id)
            return await existing_handoff(uow, account_id, handoff_id)

    async def handoffs_of(self, account_id: str, actor_id: str, session_id: str) -> list[Handoff]:
        """Every handoff of a session, oldest first. Raises NotAMember, NotFound."""
        async with self._uow() as uow:
            await acting_member(uow, account_id, actor_id)
            await existing_session(uow, account_id, session_id)
            return await uow.handoffs.for_session(account_id, session_id)

    async def queue(self, account_id: str, actor_id: str, status: str = "open") -> list[Handoff]:
        """The account's escalations with `status` open, claimed, withdrawn or all, oldest
        first. Raises NotAMember, ValidationError("status")."""
        if status not in QUEUE_FILTERS:
            raise ValidationError("status", f"must be one of {', '.join(QUEUE_FILTERS)}")
        async with self._uow() as uow:
            await acting_member(uow, account_id, actor_id)
            return await uow.handoffs.escalations(account_id, statuses=QUEUE_FILTERS[status])

    async def deliveries(self, account_id: str, actor_id: str, handoff_id: str) -> list[Delivery]:
        """A handoff's deliveries, one per recipient, channel and notice, with their status,
        attempts, last error and times. Raises NotAMember, NotFound."""
        async with self._uow() as uow:
            await acting_member(uow, account_id, actor_id)
            await existing_handoff(uow, account_id, handoff_id)
            return await uow.deliveries.for_handoff(account_id, handoff_id)

    async def timeline(
        self, account_id: str, actor_id: str, session_id: str
    ) -> list[TimelineEvent]:
        """What happened to a session, oldest first. Raises NotAMember, NotFound."""
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
        """Escalations raised in [since, until) (aware datetimes; None: unbounded): counts,
        claim rate and time to claim in seconds (nearest-rank p50/p90). For seniors. Raises
        NotAMember, Forbidden (a viewer), ValidationError("since") when since >= until."""
        if since is not None and until is not None and since >= until:
            raise ValidationError("since", "must be before until")
        async with self._uow() as uow:
            (await acting_member(uow, account_id, actor_id)).require_can_act()
            escalations = await uow.handoffs.escalations(account_id, since=since, until=until)
        return EscalationStats.of(escalations)
