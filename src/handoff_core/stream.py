"""The live stream's contract, written once: its event names, payloads and audiences (SPEC §10).

Every stream event is stored in the transaction that caused it and numbered there from one
sequence per account, so ids follow commit order. The live stream and its replay both read these
same records: what a member sees live is what `Last-Event-ID` gives back, with the same `data`.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from enum import StrEnum

from attrs import frozen

from handoff_core.model import Handoff, JsonObject

READY = "stream.ready"
"""Sent first on every connection; its `id:` is the position the stream continues from."""

RESET = "stream.reset"
"""Sent instead of a replay that cannot be given whole: the client reloads the queue."""


class StreamEventType(StrEnum):
    """The `event:` names of the stream, one per change of an account's escalation queue."""

    ESCALATION_CREATED = "escalation.created"
    ESCALATION_CLAIMED = "escalation.claimed"
    ESCALATION_WITHDRAWN = "escalation.withdrawn"
    ESCALATION_REMINDED = "escalation.reminded"


@frozen
class StreamEvent:
    """One event of an account's stream.

    `seq` is given by the store when the event is appended (None before): a decimal integer,
    strictly increasing in commit order within the account, with no gaps. `audience` is who may
    see it: the notice's recipients for `created`/`reminded`, None (every senior of the account)
    for `claimed`/`withdrawn`. `data` is the SSE `data:` object, identical live and on replay.
    """

    account_id: str
    type: StreamEventType
    handoff_id: str
    data: JsonObject
    audience: frozenset[str] | None = None
    seq: int | None = None

    def visible_to(self, member_id: str) -> bool:
        """Whether `member_id` (a senior of the account) is in this event's audience."""
        return self.audience is None or member_id in self.audience


def _event(
    type: StreamEventType,
    handoff: Handoff,
    actor_id: str,
    at: datetime,
    audience: Collection[str] | None,
    **extra: object,
) -> StreamEvent:
    """The one shape of every stream event's `data`: handoff_id, session_id, problem_summary (as
    snapshotted), actor_id, at, and what the event adds."""
    data: JsonObject = {
        "handoff_id": handoff.id,
        "session_id": handoff.session_id,
        "problem_summary": str(handoff.snapshot.get("problem_summary", "")),
        "actor_id": actor_id,
        "at": at.isoformat(),
        **extra,
    }
    return StreamEvent(
        account_id=handoff.account_id,
        type=type,
        handoff_id=handoff.id,
        data=data,
        audience=None if audience is None else frozenset(audience),
    )


def escalation_created(handoff: Handoff, recipients: Collection[str], tier: int = 1) -> StreamEvent:
    """An escalation raised: told to its recipients (never the escalator). A later tier of it
    (SPEC §14) is the same event told to that tier's new members, with `tier` in its data."""
    extra: dict[str, object] = {"engineer_notes": handoff.engineer_notes}
    if tier > 1:
        extra["tier"] = tier
    return _event(
        StreamEventType.ESCALATION_CREATED,
        handoff,
        handoff.created_by,
        handoff.created_at,
        recipients,
        **extra,
    )


def escalation_reminded(
    handoff: Handoff, recipients: Collection[str], round: int, at: datetime
) -> StreamEvent:
    """Reminder `round` of an escalation still open: told to those reminded."""
    return _event(
        StreamEventType.ESCALATION_REMINDED,
        handoff,
        handoff.created_by,
        at,
        recipients,
        engineer_notes=handoff.engineer_notes,
        round=round,
    )


def escalation_claimed(handoff: Handoff, claimer_id: str, at: datetime) -> StreamEvent:
    """Someone took it: every senior's queue changed, so every senior is told."""
    return _event(
        StreamEventType.ESCALATION_CLAIMED, handoff, claimer_id, at, None, claimed_by=claimer_id
    )


def escalation_withdrawn(handoff: Handoff, actor_id: str, at: datetime) -> StreamEvent:
    """The escalator (or a manager) took it back: every senior is told."""
    return _event(StreamEventType.ESCALATION_WITHDRAWN, handoff, actor_id, at, None)
