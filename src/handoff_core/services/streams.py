"""Reading an account's stream: where it stands, what a member missed, and what they have seen.

The same records feed the live stream, so a replay gives exactly what the live stream would have
shown this member, with the same `data` (SPEC §10).
"""

from __future__ import annotations

from attrs import frozen

from handoff_core.errors import Forbidden, ValidationError
from handoff_core.ports import Clock, UnitOfWorkFactory
from handoff_core.services.common import acting_member
from handoff_core.stream import StreamEvent

EVENT_ID_MAX = 2**63 - 1  # what a store's integer key can hold
REPLAY_PAGE = 500
REPLAY_MAX = 5000


def parse_event_id(field_name: str, raw: object) -> int:
    """A stream event id as a client sends it back: a decimal string (or an int) from 0 to
    2**63 - 1. Raises ValidationError naming `field_name` otherwise."""
    if isinstance(raw, bool):
        raise ValidationError(field_name, "must be an event id the stream sent")
    if isinstance(raw, int):
        value = raw
    elif isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) <= 19:
        value = int(raw)
    else:
        raise ValidationError(field_name, "must be an event id the stream sent")
    if not 0 <= value <= EVENT_ID_MAX:
        raise ValidationError(field_name, "must be an event id the stream sent")
    return value


@frozen
class Replay:
    """What a member missed after an id: `events` (theirs only, oldest first), or `reset` when
    that id cannot be replayed whole (older than what is kept, from another store, or too far
    behind); `position` is where the stream continues from."""

    events: tuple[StreamEvent, ...]
    reset: bool
    position: int


class StreamService:
    """The stream log as the HTTP stream, the inbox page and library users read it."""

    def __init__(self, uow: UnitOfWorkFactory, clock: Clock, *, replay_max: int = REPLAY_MAX):
        self._uow = uow
        self._clock = clock
        self._replay_max = replay_max

    async def position(self, account_id: str) -> int:
        """The id of the account's latest stream event (0 when there is none)."""
        async with self._uow() as uow:
            _, head = await uow.stream.bounds(account_id)
        return head

    async def replay(self, account_id: str, member_id: str, after: int) -> Replay:
        """The events after `after` that `member_id` is in the audience of.

        A reset when `after` is ahead of the account's head (a store that was reset), behind
        what is kept, or more than `replay_max` events behind."""
        async with self._uow() as uow:
            floor, head = await uow.stream.bounds(account_id)
            if after > head or after < floor or head - after > self._replay_max:
                return Replay(events=(), reset=True, position=head)
            found: list[StreamEvent] = []
            cursor = after
            while cursor < head:
                page = await uow.stream.after(account_id, cursor, REPLAY_PAGE)
                if not page:
                    break
                for event in page:
                    cursor = event.seq or cursor
                    if event.visible_to(member_id):
                        found.append(event)
        return Replay(events=tuple(found), reset=False, position=max(head, cursor))

    async def mark_seen(self, account_id: str, member_id: str, last_event_id: object) -> int:
        """Mark seen every push to `member_id` up to stream id `last_event_id` (SPEC §10), so no
        email follows them; how many pushes it marked.

        Raises ValidationError("last_event_id") for an id the stream could not have sent,
        NotAMember for a caller who is not a current member of the account, and Forbidden for a
        viewer (who has no stream)."""
        up_to = parse_event_id("last_event_id", last_event_id)
        now = self._clock.now()
        async with self._uow() as uow:
            member = await acting_member(uow, account_id, member_id)
            if not member.is_senior:
                raise Forbidden(f"member {member_id} is a viewer and has no stream")
            _, head = await uow.stream.bounds(account_id)
            if up_to > head:  # ahead of the stream: no client was sent it
                raise ValidationError("last_event_id", "must be an event id the stream sent")
            marked = await uow.deliveries.mark_seen(account_id, member_id, up_to, now)
            await uow.commit()
        return marked
