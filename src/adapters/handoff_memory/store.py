"""An in-memory store that keeps a database's promises.

One unit of work at a time holds the store (like SQLite's single writer), so a conditional update
is decided against committed state and the loser sees the winner. Writes go straight in with an
undo record, and a unit of work that ends without `commit()` puts everything back.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from typing import Any, TypeVar

from attrs import define, field

from handoff_core.links import LoginLink
from handoff_core.model import Delivery, EscalationPolicy, Handoff, Member, Session, TimelineEvent
from handoff_core.stream import StreamEvent
from handoff_core.webhooks import WebhookEndpoint

_MISSING = object()
T = TypeVar("T")


@define
class MemoryStore:
    members: dict[tuple[str, str], Member] = field(factory=dict)
    sessions: dict[tuple[str, str], Session] = field(factory=dict)
    handoffs: dict[tuple[str, str], Handoff] = field(factory=dict)
    idempotency: dict[tuple[str, str], str] = field(factory=dict)
    deliveries: dict[str, Delivery] = field(factory=dict)
    timeline: list[TimelineEvent] = field(factory=list)
    policies: dict[str, EscalationPolicy] = field(factory=dict)
    login_links: dict[str, LoginLink] = field(factory=dict)
    next_event_id: int = 1
    stream: dict[str, list[StreamEvent]] = field(factory=dict)  # by account, in seq order
    stream_floor: dict[str, int] = field(factory=dict)  # by account: the highest seq pruned
    webhooks: dict[tuple[str, str], WebhookEndpoint] = field(factory=dict)
    lock: asyncio.Lock = field(factory=asyncio.Lock)


class Journal:
    """Undo records for the writes of one unit of work."""

    def __init__(self) -> None:
        self._undo: list[Callable[[], None]] = []

    def put(self, table: dict[Any, Any], key: Any, value: Any) -> None:
        old = table.get(key, _MISSING)

        def undo() -> None:
            if old is _MISSING:
                table.pop(key, None)
            else:
                table[key] = old

        self._undo.append(undo)
        table[key] = value

    def append(self, items: list[Any], value: Any) -> None:
        length = len(items)
        self._undo.append(lambda: items.__delitem__(slice(length, None)))
        items.append(value)

    def roll_back(self) -> None:
        while self._undo:
            self._undo.pop()()

    def forget(self) -> None:
        self._undo.clear()


def clone(obj: T) -> T:
    """Callers get their own copy: changing it changes nothing until it is saved."""
    return copy.deepcopy(obj)
