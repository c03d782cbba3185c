"""Handoffs: read, claim, withdraw, their deliveries; the escalation queue and its analytics."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from pydantic import AwareDatetime, BeforeValidator

from handoff_app.http.auth import CallerDep, ServicesDep
from handoff_app.http.errors import ErrorOut, documented
from handoff_app.http.schemas import ID_PATTERN, AnalyticsOut, DeliveryOut, HandoffOut
from handoff_core.errors import ValidationError
from handoff_core.model import ID_MAX

router = APIRouter(tags=["handoffs"])

HandoffId = Annotated[str, Path(min_length=1, max_length=ID_MAX, pattern=ID_PATTERN)]


_DATE_TIME = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?([Zz]|[+-]\d{2}:?\d{2})"
)


def _date_time_text(value: object) -> object:
    """Only an ISO 8601 date-time with an offset: pydantic alone would also read `0.5` or
    `1700000000` as seconds since the epoch, which nobody writing `until=` means."""
    if isinstance(value, str) and not _DATE_TIME.fullmatch(value):
        raise ValueError("must be an ISO 8601 date-time with an offset, e.g. 2026-05-01T00:00:00Z")
    return value


DateTimeParam = Annotated[AwareDatetime, BeforeValidator(_date_time_text)]


def _in_utc(name: str, value: datetime | None) -> datetime | None:
    """Stores compare in UTC; an instant that has no UTC year (year 1 at +14:00) is refused."""
    if value is None:
        return None
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValidationError(name, "is out of range") from None


CLAIM_CONFLICT = {
    "model": ErrorOut,
    "description": (
        "Someone else holds it (`error` is `already_claimed`, `claimed_by` names them), "
        "or it is closed or not an escalation"
    ),
}


@router.get(
    "/handoffs/{handoff_id}",
    response_model=HandoffOut,
    summary="A handoff",
    responses=documented(401, 404, 422, 503),
)
async def get_handoff(
    handoff_id: HandoffId, caller: CallerDep, services: ServicesDep
) -> HandoffOut:
    handoff = await services.queries.handoff(caller.account_id, caller.member_id, handoff_id)
    return HandoffOut.of(handoff)


@router.post(
    "/handoffs/{handoff_id}/claim",
    response_model=HandoffOut,
    summary="Claim an open escalation; exactly one concurrent claimer wins",
    responses={**documented(401, 403, 404, 422, 503), 409: CLAIM_CONFLICT},
)
async def claim(handoff_id: HandoffId, caller: CallerDep, services: ServicesDep) -> HandoffOut:
    handoff = await services.handoffs.claim(caller.account_id, caller.member_id, handoff_id)
    return HandoffOut.of(handoff)


@router.post(
    "/handoffs/{handoff_id}/withdraw",
    response_model=HandoffOut,
    summary="Take back an open escalation (the escalator, admin, owner)",
    responses=documented(401, 403, 404, 409, 422, 503),
)
async def withdraw(handoff_id: HandoffId, caller: CallerDep, services: ServicesDep) -> HandoffOut:
    handoff = await services.handoffs.withdraw(caller.account_id, caller.member_id, handoff_id)
    return HandoffOut.of(handoff)


@router.get(
    "/handoffs/{handoff_id}/deliveries",
    response_model=list[DeliveryOut],
    summary="The handoff's notices, one per recipient and channel",
    responses=documented(401, 404, 422, 503),
)
async def deliveries(
    handoff_id: HandoffId, caller: CallerDep, services: ServicesDep
) -> list[DeliveryOut]:
    found = await services.queries.deliveries(caller.account_id, caller.member_id, handoff_id)
    return [DeliveryOut.of(d) for d in found]


@router.get(
    "/escalations",
    response_model=list[HandoffOut],
    summary="The account's escalation queue, oldest first",
    responses=documented(401, 422, 503),
)
async def queue(
    caller: CallerDep,
    services: ServicesDep,
    status: Literal["open", "claimed", "withdrawn", "all"] = "open",
) -> list[HandoffOut]:
    found = await services.queries.queue(caller.account_id, caller.member_id, status)
    return [HandoffOut.of(h) for h in found]


@router.get(
    "/analytics/escalations",
    response_model=AnalyticsOut,
    tags=["analytics"],
    summary="Escalations raised in [since, until): counts, claim rate, time to claim (seniors)",
    responses=documented(401, 403, 422, 503),
)
async def analytics(
    caller: CallerDep,
    services: ServicesDep,
    since: Annotated[DateTimeParam | None, Query(description="ISO 8601 with offset")] = None,
    until: Annotated[DateTimeParam | None, Query(description="ISO 8601 with offset")] = None,
) -> AnalyticsOut:
    stats = await services.queries.analytics(
        caller.account_id, caller.member_id, _in_utc("since", since), _in_utc("until", until)
    )
    return AnalyticsOut.of(stats)
