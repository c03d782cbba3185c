"""The live stream of a senior's account: escalations raised, claimed, withdrawn and reminded.

An open stream makes its member online (SPEC §5), so escalations reach them here instead of by
email. The subscription is in place before presence is announced, so no push can slip between
them; a reconnecting client names the last event it saw and the timeline replays the rest.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Header
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.types import Receive, Scope, Send

from handoff_app.container import Services
from handoff_app.http.auth import Caller, ServicesDep, SettingsDep, StreamCallerDep
from handoff_app.http.errors import documented
from handoff_app.live import STREAM_EVENTS, Inbox, stream_payload
from handoff_app.settings import Settings
from handoff_core.errors import ValidationError
from handoff_core.model import EventType

router = APIRouter(tags=["stream"])

REPLAY_TYPES = [t.value for t in STREAM_EVENTS]
REPLAY_PAGE = 200
REPLAY_MAX = 2000
RECONNECT_MS = 3000
EVENT_ID_MAX = 2**63 - 1  # what a store's integer key can hold
PRESENCE_TTL_BEATS = 3  # presence outlives a few missed heartbeats, not a dead process

STREAM_DOC = {
    "description": (
        "Server-sent events. `event:` is escalation.created, escalation.claimed, "
        "escalation.withdrawn or escalation.reminded; `id:` the timeline event id; `data:` JSON "
        "with handoff_id, session_id, problem_summary, actor_id, at. A comment line is sent "
        "every heartbeat."
    ),
    "content": {"text/event-stream": {"schema": {"type": "string"}}},
}


def _event(type: str, id: int | None, data: dict[str, Any]) -> ServerSentEvent:
    return ServerSentEvent(
        data=json.dumps(data, separators=(",", ":"), default=str),
        event=type,
        id=None if id is None else str(id),
    )


def _last_seen(raw: str | None) -> int | None:
    if raw is None or raw == "":
        return None
    if not raw.isascii() or not raw.isdigit() or int(raw) > EVENT_ID_MAX:
        raise ValidationError("Last-Event-ID", "must be an event id the stream sent")
    return int(raw)


async def _missed(services: Services, caller: Caller, after: int) -> list[ServerSentEvent]:
    """What the caller's account streamed after `after`, from the timeline, oldest first.

    The caller's own escalations were never pushed to them, so they are not replayed either.
    """
    found: list[ServerSentEvent] = []
    cursor = after
    while len(found) < REPLAY_MAX:
        async with services.uow() as uow:
            page = await uow.timeline.after(caller.account_id, cursor, REPLAY_TYPES, REPLAY_PAGE)
        for event in page:
            cursor = max(cursor, event.id or cursor)
            kind = EventType(event.type)
            if kind is EventType.SESSION_ESCALATED and event.actor_id == caller.member_id:
                continue
            found.append(_event(STREAM_EVENTS[kind], event.id, stream_payload(event)))
        if len(page) < REPLAY_PAGE:
            break
    return found


async def _events(
    services: Services,
    settings: Settings,
    caller: Caller,
    after: int | None,
    inbox: Inbox,
    stream_id: str,
) -> AsyncIterator[ServerSentEvent]:
    beat = settings.heartbeat_seconds
    yield ServerSentEvent(comment="online", retry=RECONNECT_MS)
    replayed: set[str] = set()
    if after is not None:
        for missed in await _missed(services, caller, after):
            if missed.id is not None:
                replayed.add(missed.id)
            yield missed
    next_beat = anyio.current_time() + beat
    while True:
        pushed = await inbox.next(max(0.0, next_beat - anyio.current_time()))
        if anyio.current_time() >= next_beat:
            await services.presence.heartbeat(stream_id, beat * PRESENCE_TTL_BEATS)
            yield ServerSentEvent(comment="heartbeat")
            next_beat = anyio.current_time() + beat
        if pushed is None or pushed.account_id != caller.account_id:
            continue
        if pushed.id is not None and str(pushed.id) in replayed:
            continue
        yield _event(pushed.type, pushed.id, dict(pushed.data))


async def _nothing() -> AsyncIterator[ServerSentEvent]:
    return
    yield  # pragma: no cover  (makes this an async generator)


class LiveStream(EventSourceResponse):
    """Sends its headers only once the subscription and then presence are in place, so a client
    that sees 200 is already online and no push can slip between them; however the response
    ends (client gone, server stopping, an error), presence is left and the subscription undone.
    """

    def __init__(
        self, services: Services, settings: Settings, caller: Caller, after: int | None
    ) -> None:
        super().__init__(_nothing(), ping=0)
        self._services = services
        self._settings = settings
        self._caller = caller
        self._after = after

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        services, caller = self._services, self._caller
        ttl = self._settings.heartbeat_seconds * PRESENCE_TTL_BEATS
        cleanup = AsyncExitStack()
        try:
            inbox = await cleanup.enter_async_context(
                services.hub.subscribe(caller.account_id, caller.member_id)
            )
            stream_id = await services.presence.enter(caller.account_id, caller.member_id, ttl)
            cleanup.push_async_callback(services.presence.leave, stream_id)
            self.body_iterator = _events(
                services, self._settings, caller, self._after, inbox, stream_id
            )
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await cleanup.aclose()


@router.get(
    "/escalations/stream",
    response_class=EventSourceResponse,
    summary="Live escalations of the caller's account (seniors); makes the caller online",
    description=(
        "Authenticate with the Authorization header, or with `?access_token=` where the client "
        "cannot send headers (EventSource). `Last-Event-ID` replays what was missed."
    ),
    responses={200: STREAM_DOC, **documented(401, 403, 422, 503)},
)
async def stream(
    caller: StreamCallerDep,
    services: ServicesDep,
    settings: SettingsDep,
    last_event_id: Annotated[
        str | None, Header(alias="Last-Event-ID", max_length=20, description="Resume after")
    ] = None,
) -> LiveStream:
    caller.require_senior()
    after = _last_seen(last_event_id)
    return LiveStream(services, settings, caller, after)
