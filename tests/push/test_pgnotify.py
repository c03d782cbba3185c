"""LISTEN/NOTIFY: an event published in one process reaches the streams of another."""

from __future__ import annotations

import pytest

from handoff_core.ports import PushEvent
from handoff_push import PgNotifyHub
from handoff_push.pgnotify import PAYLOAD_LIMIT, asyncpg_dsn, decode, encode

pytestmark = pytest.mark.postgres


async def test_an_event_published_on_one_hub_reaches_a_stream_on_another(pg_url: str) -> None:
    here, there = PgNotifyHub(pg_url), PgNotifyHub(pg_url)
    await here.start()
    await there.start()
    try:
        async with there.subscribe("acme", "bob") as bob, there.subscribe("other", "zed") as zed:
            await here.publish(
                PushEvent(
                    account_id="acme", type="escalation.claimed", data={"handoff_id": "h1"}, id=7
                )
            )
            got = await bob.next(timeout=5)
            assert got is not None
            assert (got.type, got.id, got.data["handoff_id"]) == ("escalation.claimed", 7, "h1")
            assert await zed.next(timeout=0.2) is None
    finally:
        await here.close()
        await there.close()


async def test_the_publishing_process_hears_its_own_event_once(pg_url: str) -> None:
    hub = PgNotifyHub(pg_url)
    await hub.start()
    try:
        async with hub.subscribe("acme", "bob") as bob:
            await hub.publish(
                PushEvent(account_id="acme", type="escalation.withdrawn", data={}, id=1)
            )
            assert await bob.next(timeout=5) is not None
            assert await bob.next(timeout=0.3) is None
    finally:
        await hub.close()


def test_long_notes_are_trimmed_to_fit_a_notification() -> None:
    event = PushEvent(
        account_id="acme",
        type="escalation.created",
        data={"engineer_notes": "é" * 4000, "handoff_id": "h"},
        id=3,
        audience=frozenset({"bob"}),
    )
    payload = encode(event)
    assert len(payload.encode("utf-8")) < PAYLOAD_LIMIT
    back = decode(payload)
    assert back.data == {"handoff_id": "h"}
    assert back.audience == frozenset({"bob"})


def test_the_dsn_drops_the_driver_and_query_options() -> None:
    url = "postgresql+asyncpg://u@127.0.0.1:5432/db?pool_size=5"
    assert asyncpg_dsn(url) == "postgresql://u@127.0.0.1:5432/db"
