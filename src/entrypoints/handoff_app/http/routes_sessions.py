"""AI sessions: start, read, edit, hand off (park or escalate), resume, resolve, timeline."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Path

from handoff_app.http.auth import CallerDep, ServicesDep
from handoff_app.http.errors import documented
from handoff_app.http.schemas import (
    ID_PATTERN,
    KEY_PATTERN,
    HandoffIn,
    HandoffOut,
    SessionIn,
    SessionOut,
    SessionPatch,
    TimelineEventOut,
)
from handoff_core.model import ID_MAX
from handoff_core.services.handoffs import IDEMPOTENCY_KEY_MAX

router = APIRouter(tags=["sessions"])

SessionId = Annotated[str, Path(min_length=1, max_length=ID_MAX, pattern=ID_PATTERN)]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=IDEMPOTENCY_KEY_MAX,
        pattern=KEY_PATTERN,
        description="A repeat with the same key returns the first handoff and changes nothing",
    ),
]


@router.post(
    "/ai-sessions",
    status_code=201,
    response_model=SessionOut,
    summary="Start a session (seniors); the caller owns it and is its assignee",
    responses=documented(401, 403, 413, 422, 503),
)
async def start_session(body: SessionIn, caller: CallerDep, services: ServicesDep) -> SessionOut:
    session = await services.handoffs.start_session(
        caller.account_id, caller.member_id, body.problem_summary, body.context
    )
    return SessionOut.of(session)


@router.get(
    "/ai-sessions/{session_id}",
    response_model=SessionOut,
    summary="A session",
    responses=documented(401, 404, 422, 503),
)
async def get_session(
    session_id: SessionId, caller: CallerDep, services: ServicesDep
) -> SessionOut:
    session = await services.queries.session(caller.account_id, caller.member_id, session_id)
    return SessionOut.of(session)


@router.patch(
    "/ai-sessions/{session_id}",
    response_model=SessionOut,
    summary="Edit a session's summary or context (assignee, admin, owner)",
    responses=documented(401, 403, 404, 409, 413, 422, 503),
)
async def patch_session(
    session_id: SessionId, body: SessionPatch, caller: CallerDep, services: ServicesDep
) -> SessionOut:
    session = await services.handoffs.revise_session(
        caller.account_id,
        caller.member_id,
        session_id,
        problem_summary=body.problem_summary,
        context=body.context,
    )
    return SessionOut.of(session)


@router.post(
    "/ai-sessions/{session_id}/handoff",
    status_code=201,
    response_model=HandoffOut,
    tags=["handoffs"],
    summary="Park the session privately, or escalate it to the account's seniors",
    description=(
        "An escalation answers at once: its notices are sent in the background after the "
        "commit (push to those online, email to the others)."
    ),
    responses=documented(401, 403, 404, 409, 413, 422, 503),
)
async def hand_off(
    session_id: SessionId,
    body: HandoffIn,
    caller: CallerDep,
    services: ServicesDep,
    idempotency_key: IdempotencyKey = None,
) -> HandoffOut:
    handoff = await services.handoffs.hand_off(
        caller.account_id,
        caller.member_id,
        session_id,
        body.intent,
        body.engineer_notes,
        idempotency_key=idempotency_key,
    )
    return HandoffOut.of(handoff)


@router.post(
    "/ai-sessions/{session_id}/resume",
    response_model=SessionOut,
    summary="Resume a parked session (whoever parked it, admin, owner)",
    responses=documented(401, 403, 404, 409, 422, 503),
)
async def resume(session_id: SessionId, caller: CallerDep, services: ServicesDep) -> SessionOut:
    session = await services.handoffs.resume(caller.account_id, caller.member_id, session_id)
    return SessionOut.of(session)


@router.post(
    "/ai-sessions/{session_id}/resolve",
    response_model=SessionOut,
    summary="Resolve an active session (assignee, admin, owner)",
    responses=documented(401, 403, 404, 409, 422, 503),
)
async def resolve(session_id: SessionId, caller: CallerDep, services: ServicesDep) -> SessionOut:
    session = await services.handoffs.resolve(caller.account_id, caller.member_id, session_id)
    return SessionOut.of(session)


@router.get(
    "/ai-sessions/{session_id}/timeline",
    response_model=list[TimelineEventOut],
    summary="What happened to the session, oldest first",
    responses=documented(401, 404, 422, 503),
)
async def timeline(
    session_id: SessionId, caller: CallerDep, services: ServicesDep
) -> list[TimelineEventOut]:
    events = await services.queries.timeline(caller.account_id, caller.member_id, session_id)
    return [TimelineEventOut.of(e) for e in events]
