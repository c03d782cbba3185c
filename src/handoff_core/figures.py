"""What an operator watches in the store (SPEC §13), summed over every account."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from attrs import frozen

# Upper bounds, in seconds, of the time-to-claim histogram's buckets (+Inf is implied).
CLAIM_BUCKETS: tuple[float, ...] = (
    5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 28800, 86400,
)  # fmt: skip


@frozen
class StoreFigures:
    """Counts read from the store at one instant.

    `deliveries` maps (channel, status) to how many deliveries are in it; `claim_buckets` holds,
    for each bound of CLAIM_BUCKETS in order, how many claimed escalations were claimed within
    that many seconds of being raised (cumulative, as Prometheus wants them); `streams_open` is
    None when the store does not keep presence (then the process counts its own streams).
    """

    escalations: int
    deliveries: Mapping[tuple[str, str], int]
    pending: int
    oldest_pending_at: datetime | None
    claim_buckets: tuple[int, ...]
    claims: int
    claim_seconds_sum: float
    streams_open: int | None = None


def claim_figures(durations: list[float]) -> tuple[tuple[int, ...], int, float]:
    """(cumulative bucket counts, count, sum) of time-to-claim durations in seconds."""
    buckets = tuple(sum(1 for d in durations if d <= bound) for bound in CLAIM_BUCKETS)
    return buckets, len(durations), float(sum(durations))
