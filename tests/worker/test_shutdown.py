"""A server stopped gracefully while its background send of an escalation is under way (a deploy,
a scale-in) loses nothing and sends nothing twice: what went out is recorded as sent, the rest is
given back, and the next server sends only the rest (SPEC §5: without crashes nothing is sent
twice)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

from attrs import evolve
from tests.worker.harness import SinkServer, Store, add_team, eventually
from tests.worker.served import escalate, serving, settings_for

from handoff_sql import ensure_schema

SENIORS = 16


async def test_a_server_stopped_mid_send_sends_nothing_twice(
    tmp_path: Path,
    start_sink: Callable[..., SinkServer],
    open_store: Callable[[str], Store],
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'handoff.db'}"
    await ensure_schema(url)
    await add_team(url, SENIORS)
    store = open_store(url)
    server = start_sink(delay=0.05)  # one message at a time, 50 ms each
    # The worker looks only at start and then every 5 s: the escalation's own background send
    # is the one that takes it.
    settings = evolve(settings_for(url, f"{server.url}?pool=1", tmp_path), worker_poll_seconds=5)

    async with serving(settings) as client:
        await escalate(client)
        await eventually(lambda: server.sink.count() >= 3, timeout=10, what="3 messages arrived")
    # The server has shut down, in-process worker and background send included.
    rows = await store.outbox()
    assert all(r.status == "sent" or (r.status == "pending" and r.leased_by is None) for r in rows)
    assert Counter(r.status for r in rows)["sent"] == server.sink.count()

    async with serving(settings):
        await eventually(lambda: store.all_sent(SENIORS), timeout=15, what="the rest sent")
    assert server.sink.message_ids() == Counter({r.message_id: 1 for r in await store.outbox()})
