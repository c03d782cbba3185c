"""Through the real server (API plus in-process worker, on a SQLite file): an escalation never
waits on SMTP. With SMTP down or hanging the request answers at once and the deliveries wait in
the outbox; when SMTP is back each one goes out exactly once (SPEC §5, Durable outbox)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.support.net import free_port
from tests.support.smtp import SilentServer
from tests.worker.harness import SinkServer, Store, add_team, eventually
from tests.worker.served import deliveries, escalate, serving, settings_for

from handoff_sql import ensure_schema

SENIORS = 4


@pytest.fixture
async def database(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'handoff.db'}"
    await ensure_schema(url)
    await add_team(url, SENIORS)
    return url


async def listed(client: httpx.AsyncClient, handoff_id: str) -> list[dict[str, Any]]:
    found = await deliveries(client, handoff_id)
    assert len(found) == SENIORS
    return found


def pending_until(
    client: httpx.AsyncClient, handoff_id: str, done: Callable[[dict[str, Any]], object]
) -> Callable[[], Awaitable[bool]]:
    """A check for `eventually`: every delivery must stay pending (anything else fails at once)
    until `done` holds for each of them."""

    async def check() -> bool:
        found = await listed(client, handoff_id)
        assert all(d["status"] == "pending" for d in found), found
        return all(done(d) for d in found)

    return check


async def test_smtp_down_then_back_every_delivery_goes_out_exactly_once(
    database: str,
    tmp_path: Path,
    start_sink: Callable[..., SinkServer],
    open_store: Callable[[str], Store],
) -> None:
    port = free_port()  # nothing listens here until the sink is started below
    settings = settings_for(database, f"smtp://127.0.0.1:{port}?timeout=30", tmp_path)
    async with serving(settings) as client:
        handoff_id = await escalate(client)
        refused = pending_until(
            client, handoff_id, lambda d: d["attempts"] >= 1 and d["last_error"]
        )
        await eventually(refused, timeout=10, every=0.05, what="sends refused")
        server = start_sink(port=port)

        async def all_sent() -> bool:
            return all(d["status"] == "sent" for d in await listed(client, handoff_id))

        await eventually(all_sent, timeout=15, every=0.05, what="every delivery sent")
        sent = await listed(client, handoff_id)
    assert server.sink.message_ids() == Counter({d["message_id"]: 1 for d in sent})
    assert await open_store(database).statuses() == Counter({"sent": SENIORS})


async def test_smtp_hanging_the_request_still_answers_at_once(
    database: str, tmp_path: Path
) -> None:
    async with SilentServer() as silent:
        settings = settings_for(database, f"smtp://127.0.0.1:{silent.port}?timeout=30", tmp_path)
        async with serving(settings) as client:
            handoff_id = await escalate(client)
            await eventually(lambda: silent.connections >= 1, timeout=10, what="a send began")
            # The send hangs on a server that never greets; the escalation is long answered.
            found = await listed(client, handoff_id)
            assert all(d["status"] == "pending" and d["attempts"] == 0 for d in found), found
            await silent.stop()  # the server goes away: the hanging connections drop
            deferred = pending_until(client, handoff_id, lambda d: d["last_error"])
            await eventually(deferred, timeout=10, every=0.05, what="the drop recorded")


async def test_smtp_hanging_the_send_times_out_later_and_the_deliveries_wait(
    database: str, tmp_path: Path
) -> None:
    async with SilentServer() as silent:
        settings = settings_for(database, f"smtp://127.0.0.1:{silent.port}?timeout=1", tmp_path)
        async with serving(settings) as client:
            handoff_id = await escalate(client)
            timed_out = pending_until(
                client, handoff_id, lambda d: "timed out" in (d["last_error"] or "").lower()
            )
            await eventually(timed_out, timeout=10, every=0.05, what="the sends timed out")
        assert silent.connections >= 1
