"""What every use case needs: the acting member, the target, and telling the announcer."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from handoff_core.errors import NotAMember, NotFound
from handoff_core.model import Handoff, Member, Session, TimelineEvent
from handoff_core.ports import Announcer, UnitOfWork

log = logging.getLogger("handoff")


class SilentAnnouncer:
    """The default: nobody listens."""

    async def committed(self, events: Sequence[TimelineEvent]) -> None:
        return None


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


async def announce(announcer: Announcer, events: Sequence[TimelineEvent]) -> None:
    """After commit: the change stands whatever a listener does, so a listener's error is logged."""
    if not events:
        return
    try:
        await announcer.committed(events)
    except Exception:
        log.exception("announcer failed", extra={"events": [e.type.value for e in events]})
