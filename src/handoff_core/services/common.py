"""What every use case needs: the acting member, the target, and telling the announcer."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from handoff_core.errors import NotAMember, NotFound
from handoff_core.model import Handoff, Member, Session, TimelineEvent
from handoff_core.policy import IdFactory
from handoff_core.ports import Announcer, PushHub, UnitOfWork
from handoff_core.stream import StreamEvent
from handoff_core.webhooks import WebhookEndpoint, deliveries_for

log = logging.getLogger("handoff")


class SilentAnnouncer:
    """The default: nobody listens."""

    async def committed(
        self, events: Sequence[TimelineEvent], stream: Sequence[StreamEvent] = ()
    ) -> None:
        return None


class StreamAnnouncer:
    """Hands every committed stream event to a push hub (what a library user with in-memory
    adapters wires to watch the stream); the service's own announcer does this and more."""

    def __init__(self, hub: PushHub) -> None:
        self._hub = hub

    async def committed(
        self, events: Sequence[TimelineEvent], stream: Sequence[StreamEvent] = ()
    ) -> None:
        if stream:
            await self._hub.publish(stream)


async def acting_member(uow: UnitOfWork, account_id: str, actor_id: str) -> Member:
    """The member doing this, who must be current in the account (viewers included).

    Read in the use case's own unit of work, so a member removed a moment ago is refused here
    whatever an earlier check saw; the HTTP API relies on this as its member check.
    """
    actor = await uow.members.get(account_id, actor_id)
    if actor is None or not actor.is_current:
        raise NotAMember(f"{actor_id} is not an active member of this account")
    return actor


async def existing_session(uow: UnitOfWork, account_id: str, session_id: str) -> Session:
    session = await uow.sessions.get(account_id, session_id)
    if session is None:
        raise NotFound(f"session {session_id} not found")
    return session


async def existing_handoff(uow: UnitOfWork, account_id: str, handoff_id: str) -> Handoff:
    handoff = await uow.handoffs.get(account_id, handoff_id)
    if handoff is None:
        raise NotFound(f"handoff {handoff_id} not found")
    return handoff


async def announce(
    announcer: Announcer,
    events: Sequence[TimelineEvent],
    stream: Sequence[StreamEvent] = (),
) -> None:
    """After commit: the change stands whatever a listener does, so a listener's error is logged."""
    if not events and not stream:
        return
    try:
        await announcer.committed(events, stream)
    except Exception:
        types = [e.type.value for e in events]
        told = ", ".join(types + [e.type.value for e in stream])
        log.exception("announcer failed for %s", told, extra={"events": types})


async def append_stream(
    uow: UnitOfWork,
    events: Sequence[StreamEvent],
    now: datetime,
    make_id: IdFactory,
    *,
    endpoints: Sequence[WebhookEndpoint] | None = None,
) -> list[StreamEvent]:
    """Append stream events (last, just before commit) and queue one webhook delivery per event
    per endpoint of the account that subscribes to it, in the same transaction (SPEC §14).

    The endpoints are read before the append, which holds the account's sequence until commit,
    unless the caller read them already (`endpoints`, those of the events' one account).
    """
    if not events:
        return []
    if endpoints is None:
        found: list[WebhookEndpoint] = []
        for account_id in sorted({e.account_id for e in events}):
            found.extend(await uow.webhooks.of_account(account_id))
        endpoints = found
    streamed = await uow.stream.append(events)
    if endpoints:
        await uow.deliveries.add_many(deliveries_for(endpoints, streamed, now, make_id))
    return streamed
