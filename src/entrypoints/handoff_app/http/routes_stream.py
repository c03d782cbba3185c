"""The live stream of a senior's account (SPEC §10), and marking what it showed as seen.

Every event comes from the account's stream log, numbered in commit order: the stream first
sends `stream.ready` with the position it continues from, then what the caller missed after
`Last-Event-ID` (or `stream.reset` when that cannot be given whole), then live events, skipping
any it already sent. An open stream makes its member online (SPEC §5); the subscription is in
place before presence is announced and before the position is read, so nothing slips between.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Header, Response
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.types import Receive, Scope, Send

from handoff_app.container import Services
from handoff_app.http.auth import CallerDep, ServicesDep, SettingsDep, StreamCaller, StreamCallerDep
from handoff_app.http.errors import documented
from handoff_app.http.schemas import SeenIn
from handoff_app.live import Inbox
from handoff_app.settings import Settings
from handoff_core.services.streams import parse_event_id
from handoff_core.stream import READY, RESET, StreamEvent, StreamEventType

router = APIRouter(tags=["stream"])

RECONNECT_MS = 3000
PRESENCE_TTL_BEATS = 3  # presence outlives a few missed heartbeats, not a dead process

STREAM_DOC = {
    "description": (
        "Server-sent events, each with `id:` (a decimal integer from one sequence per account, "
        "in commit order) and `data:` JSON.\n\n"
        "- `stream.ready` first: `id:` the position the stream continues from, "
        '`data: {"position": N}`.\n'
        "- `escalation.created` (to its recipients), `escalation.claimed` and "
        "`escalation.withdrawn` (to every senior), `escalation.reminded` (to those reminded): "
        "`data` has `handoff_id`, `session_id`, `problem_summary`, `actor_id`, `at`; created and "
        "reminded add `engineer_notes`, reminded `round`, claimed `claimed_by`.\n"
        "- `stream.reset`: the `Last-Event-ID` cannot be replayed whole; reload the queue "
        "(`GET /escalations?status=open`) and carry on.\n\n"
        "A comment line is sent every heartbeat. Reconnect with `Last-Event-ID` to get what was "
        "missed; mark what was shown with `POST /escalations/seen`."
    ),
    "content": {"text/event-stream": {"schema": {"type": "string"}}},
}


def _sse(type: str, id: int, data: dict[str, Any]) -> ServerSentEvent:
    return ServerSentEvent(
        data=json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str),
        event=type,
        id=str(id),
    )


def _event(event: StreamEvent) -> ServerSentEvent:
    return _sse(StreamEventType(event.type).value, event.seq or 0, dict(event.data))


async def _events(
    services: Services,
    settings: Settings,
    caller: StreamCaller,
    after: int | None,
    inbox: Inbox,
    stream_id: str,
) -> AsyncIterator[ServerSentEvent]:
    account_id, member_id = caller.account_id, caller.member_id
    beat = settings.heartbeat_seconds
    if after is None:
        last = await services.streams.position(account_id)
        yield _sse(READY, last, {"position": last})
    else:
        replay = await services.streams.replay(account_id, member_id, after)
        if replay.reset:  # ids never go backwards: the stream stands at the account's position
            last = replay.position
            yield _sse(READY, last, {"position": last})
            yield _sse(RESET, last, {"position": last, "reason": "cannot replay from this id"})
        else:
            yield _sse(READY, after, {"position": after})
            last = after
            for missed in replay.events:
                yield _event(missed)
                last = missed.seq or last
            last = max(last, replay.position)
    next_beat = anyio.current_time() + beat
    renewing: asyncio.Future[None] | None = None
    try:
        while not inbox.closed:
            if inbox.overflowed:  # too slow to read live: catch up from the log instead
                inbox.drain()
                replay = await services.streams.replay(account_id, member_id, last)
                if replay.reset:
                    last = replay.position
                    yield _sse(RESET, last, {"position": last, "reason": "fell too far behind"})
                for missed in replay.events:
                    if (missed.seq or 0) > last:
                        yield _event(missed)
                        last = missed.seq or last
                continue
            pushed = await inbox.next(max(0.0, next_beat - anyio.current_time()))
            if anyio.current_time() >= next_beat:
                renewing = _renew(services, stream_id, beat * PRESENCE_TTL_BEATS, renewing)
                yield ServerSentEvent(comment="heartbeat")
                next_beat = anyio.current_time() + beat
            if pushed is None or (pushed.seq or 0) <= last:
                continue
            yield _event(pushed)
            last = pushed.seq or last
    finally:
        if renewing is not None and not renewing.done():
            renewing.cancel()


def _renew(
    services: Services, stream_id: str, ttl: float, previous: asyncio.Future[None] | None
) -> asyncio.Future[None]:
    """Renew the stream's presence beside it, never in its way: the process renews the beats of
    its streams together (a short wait), and a push must not wait for that. What the previous
    renewal met (the database down) is raised here, and ends the stream."""
    if previous is not None:
        if not previous.done():
            return previous
        previous.result()
    return asyncio.ensure_future(services.presence.heartbeat(stream_id, ttl))


async def _nothing() -> AsyncIterator[ServerSentEvent]:
    return
    yield  # pragma: no cover  (makes this an async generator)


class LiveStream(EventSourceResponse):
    """Sends its headers only once the subscription and then presence are in place, so a client
    that sees 200 is already online and no push can slip between them; however the response
    ends (client gone, member removed, server stopping, an error), presence is left and the
    subscription undone.
    """

    def __init__(
        self, services: Services, settings: Settings, caller: StreamCaller, after: int | None
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
            services.guard.ensure_running()
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
    after = None if not last_event_id else parse_event_id("Last-Event-ID", last_event_id)
    return LiveStream(services, settings, caller, after)


@router.post(
    "/escalations/seen",
    status_code=204,
    response_class=Response,
    summary="Mark every push to the caller (a senior) up to a stream event id as seen",
    description=(
        "Pushes not marked seen within the policy's `push_confirm_seconds` are emailed as well. "
        "Send the `id:` of the last stream event the client showed."
    ),
    responses=documented(401, 403, 413, 422, 503),
)
async def seen(body: SeenIn, caller: CallerDep, services: ServicesDep) -> Response:
    await services.streams.mark_seen(caller.account_id, caller.member_id, body.last_event_id)
    return Response(status_code=204)
