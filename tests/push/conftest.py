"""The PostgreSQL the LISTEN/NOTIFY tests publish through: the server's `test` database (they
write no rows); skipped, with the reason, only when nothing answers at 127.0.0.1:5432."""

from __future__ import annotations

import pytest
from tests.support.databases import postgres_url, require_postgres

from handoff_core.stream import StreamEvent, StreamEventType


@pytest.fixture
def pg_url() -> str:
    require_postgres()
    return postgres_url("test")


class Log:
    """A real stream log (the in-memory store) that tests append to, as a commit would."""

    def __init__(self) -> None:
        from handoff_app.live import LogSource
        from handoff_memory import MemoryDatabase

        self.db = MemoryDatabase()
        self.source = LogSource(self.db)

    async def append(self, *events: StreamEvent) -> list[StreamEvent]:
        async with self.db() as uow:
            stored = await uow.stream.append(events)
            await uow.commit()
        return stored


def claimed(account: str, handoff: str = "h1") -> StreamEvent:
    return StreamEvent(
        account_id=account,
        type=StreamEventType.ESCALATION_CLAIMED,
        handoff_id=handoff,
        data={"handoff_id": handoff},
    )


def created(account: str, audience: frozenset[str], handoff: str = "h1") -> StreamEvent:
    return StreamEvent(
        account_id=account,
        type=StreamEventType.ESCALATION_CREATED,
        handoff_id=handoff,
        data={"handoff_id": handoff, "engineer_notes": "n"},
        audience=audience,
    )


@pytest.fixture
def log() -> Log:
    return Log()
