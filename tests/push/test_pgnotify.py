"""LISTEN/NOTIFY: an event published in one process reaches the streams of another."""

from __future__ import annotations

import pytest

from handoff_core.ports import PushEvent
from handoff_push import PgNotifyHub
from handoff_push.pgnotify import PAYLOAD_LIMIT, asyncpg_dsn, decode, encode, encode_all

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


def test_a_long_audience_is_split_into_notifications_that_fit() -> None:
    audience = frozenset(f"member-{n:05d}" for n in range(2_000))
    event = PushEvent(
        account_id="acme",
        type="escalation.created",
        data={"handoff_id": "h"},
        id=9,
        audience=audience,
    )
    payloads = encode_all(event)
    assert len(payloads) > 1
    assert all(len(p.encode("utf-8")) < PAYLOAD_LIMIT for p in payloads)
    parts = [decode(p).audience or frozenset() for p in payloads]
    assert sum(len(p) for p in parts) == len(audience)
    assert frozenset().union(*parts) == audience


async def test_every_member_of_a_long_audience_hears_the_event_once(pg_url: str) -> None:
    hub = PgNotifyHub(pg_url)
    await hub.start()
    audience = frozenset(f"member-{n:05d}" for n in range(2_000))
    first, last = min(audience), max(audience)
    try:
        async with (
            hub.subscribe("acme", first) as a,
            hub.subscribe("acme", last) as b,
            hub.subscribe("acme", "outsider") as c,
        ):
            await hub.publish(
                PushEvent(
                    account_id="acme",
                    type="escalation.created",
                    data={"handoff_id": "h"},
                    id=4,
                    audience=audience,
                )
            )
            for sub in (a, b):
                got = await sub.next(timeout=5)
                assert got is not None and got.id == 4
                assert await sub.next(timeout=0.2) is None
            assert await c.next(timeout=0.1) is None
    finally:
        await hub.close()
