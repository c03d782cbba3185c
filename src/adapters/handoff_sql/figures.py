"""The operator's figures (SPEC §13), read with a few aggregate queries at scrape time, so every
process of a deployment answers the same."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from handoff_core.figures import CLAIM_BUCKETS, StoreFigures
from handoff_core.model import DeliveryStatus, Intent
from handoff_sql.database import SqlDatabase
from handoff_sql.statements import BEGIN_MODE, translated
from handoff_sql.tables import deliveries, handoffs, presence


def _seconds_between(dialect: str, start: Any, end: Any) -> Any:
    if dialect == "postgresql":
        return sa.func.extract("epoch", end - start)
    return (sa.func.julianday(end) - sa.func.julianday(start)) * 86400.0  # SQLite keeps text


def _escalations_query(dialect: str) -> sa.Select[Any]:
    waited = _seconds_between(dialect, handoffs.c.created_at, handoffs.c.claimed_at)
    claimed = handoffs.c.claimed_at.is_not(None)
    within = [
        sa.func.coalesce(sa.func.sum(sa.case((sa.and_(claimed, waited <= bound), 1), else_=0)), 0)
        for bound in CLAIM_BUCKETS
    ]
    return sa.select(
        sa.func.count(),
        sa.func.count(handoffs.c.claimed_at),
        sa.func.coalesce(sa.func.sum(sa.case((claimed, waited), else_=0.0)), 0.0),
        *within,
    ).where(handoffs.c.intent == Intent.ESCALATE)


async def store_figures(
    database: SqlDatabase, now: datetime, *, presence_kept: bool
) -> StoreFigures:
    """Escalations, deliveries by channel and status, the pending outbox and, when presence is
    kept in the database (`presence_kept`), the streams open on every process.

    Raises StorageUnavailable when the database cannot be reached.
    """
    dialect = database.dialect
    by_kind = sa.select(
        deliveries.c.channel,
        deliveries.c.status,
        sa.func.count(),
        sa.func.min(deliveries.c.created_at),
    ).group_by(deliveries.c.channel, deliveries.c.status)
    with translated(database.target.show(), "read the operator's figures"):
        async with database.engine.connect() as conn:
            reader = await conn.execution_options(**{BEGIN_MODE: "DEFERRED"})
            row = (await reader.execute(_escalations_query(dialect))).one()
            kinds = (await reader.execute(by_kind)).all()
            streams = None
            if presence_kept:
                live = sa.select(sa.func.count()).where(presence.c.expires_at > now)
                streams = int((await reader.execute(live)).scalar_one())
    counts: dict[tuple[str, str], int] = {}
    pending, oldest = 0, None
    for channel, status, count, first in kinds:
        counts[(str(channel), str(status))] = int(count)
        if status == DeliveryStatus.PENDING:
            pending += int(count)
            oldest = first if oldest is None or (first is not None and first < oldest) else oldest
    return StoreFigures(
        escalations=int(row[0]),
        deliveries=counts,
        pending=pending,
        oldest_pending_at=oldest,
        claim_buckets=tuple(int(n) for n in row[3:]),
        claims=int(row[1]),
        claim_seconds_sum=float(row[2]),
        streams_open=streams,
    )
