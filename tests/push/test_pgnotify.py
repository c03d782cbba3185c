"""LISTEN/NOTIFY: an event committed in one process reaches the streams of another, in order."""

from __future__ import annotations

import asyncio
import logging

import asyncpg
import pytest
from attrs import evolve
from tests.push.conftest import Log, claimed, created
from tests.support.net import free_port

from handoff_core.stream import StreamEventType
from handoff_push import PgNotifyHub
from handoff_push.pgnotify import CHANNEL, PAYLOAD_LIMIT, asyncpg_dsn, decode, encode

pytestmark = pytest.mark.postgres


async def test_an_event_published_on_one_hub_reaches_a_stream_on_another(
    pg_url: str, log: Log
) -> None:
    here, there = PgNotifyHub(pg_url, log.source), PgNotifyHub(pg_url, log.source)
    await here.start()
    await there.start()
    try:
        async with there.subscribe("acme", "bob") as bob, there.subscribe("other", "zed") as zed:
            await here.publish(await log.append(claimed("acme")))
            got = await bob.next(timeout=5)
            assert got is not None
            assert (got.type, got.seq, got.data["handoff_id"]) == (
                StreamEventType.ESCALATION_CLAIMED,
                1,
                "h1",
            )
            assert await zed.next(timeout=0.2) is None
    finally:
        await here.close()
        await there.close()


async def test_the_publishing_process_hears_its_own_event_once(pg_url: str, log: Log) -> None:
    hub = PgNotifyHub(pg_url, log.source)
    await hub.start()
    try:
        async with hub.subscribe("acme", "bob") as bob:
            await hub.publish(await log.append(claimed("acme")))
            assert await bob.next(timeout=5) is not None
            assert await bob.next(timeout=0.3) is None
    finally:
        await hub.close()


def test_an_event_too_large_for_a_notification_is_sent_as_its_position() -> None:
    event = evolve(created("acme", frozenset(f"member-{n:05d}" for n in range(2_000))), seq=9)
    payload = encode(event)
    assert len(payload.encode("utf-8")) < PAYLOAD_LIMIT
    assert decode(payload) == ("acme", 9, None)


def test_an_event_that_fits_travels_whole() -> None:
    event = evolve(created("acme", frozenset({"bob"})), seq=3)
    assert decode(encode(event)) == ("acme", 3, event)


def test_the_dsn_drops_the_driver_and_query_options() -> None:
    url = "postgresql+asyncpg://u@127.0.0.1:5432/db?pool_size=5"
    assert asyncpg_dsn(url) == "postgresql://u@127.0.0.1:5432/db"


async def test_every_member_of_a_long_audience_hears_the_event_once(pg_url: str, log: Log) -> None:
    """Too long for one notification: every process reads it from the log instead."""
    hub = PgNotifyHub(pg_url, log.source)
    await hub.start()
    audience = frozenset(f"member-{n:05d}" for n in range(2_000))
    first, last = min(audience), max(audience)
    try:
        async with (
            hub.subscribe("acme", first) as a,
            hub.subscribe("acme", last) as b,
            hub.subscribe("acme", "outsider") as c,
        ):
            await hub.publish(await log.append(created("acme", audience)))
            for sub in (a, b):
                got = await sub.next(timeout=5)
                assert got is not None and got.seq == 1 and got.audience == audience
                assert await sub.next(timeout=0.2) is None
            assert await c.next(timeout=0.1) is None
    finally:
        await hub.close()


async def test_a_burst_of_publishes_is_notified_once_each_in_order(pg_url: str, log: Log) -> None:
    """Published back to back, the events queue and go out batched: a plain LISTEN connection
    hears every one, once, in the order they were published."""
    heard: list[int] = []
    done = asyncio.Event()
    count = 120

    def on_notify(connection: object, pid: int, channel: str, payload: str) -> None:
        heard.append(decode(payload)[1])
        if len(heard) == count:
            done.set()

    listener = await asyncpg.connect(asyncpg_dsn(pg_url))
    await listener.add_listener(CHANNEL, on_notify)
    hub = PgNotifyHub(pg_url, log.source)
    await hub.start()
    try:
        for _ in range(count):
            await hub.publish(await log.append(claimed("acme")))
        await asyncio.wait_for(done.wait(), 10)
        await asyncio.sleep(0.2)  # nothing more arrives
    finally:
        await hub.close()
        await listener.close()
    assert heard == list(range(1, count + 1))


async def test_close_sends_what_is_still_queued(pg_url: str, log: Log) -> None:
    here, there = PgNotifyHub(pg_url, log.source), PgNotifyHub(pg_url, log.source)
    await there.start()
    try:
        async with there.subscribe("acme", "bob") as bob:
            await here.start()
            await here.publish(await log.append(claimed("acme")))
            await here.close()  # at once: the notification is still queued
            got = await bob.next(timeout=5)
            assert got is not None and got.seq == 1
    finally:
        await there.close()


async def test_a_publish_the_database_cannot_take_is_logged_not_raised(
    caplog: pytest.LogCaptureFixture, log: Log
) -> None:
    """Nothing listens on the port: the publish returns (the request that committed does not
    fail for it), and the lost notification is said in the log."""
    hub = PgNotifyHub(f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/test", log.source)
    with caplog.at_level(logging.WARNING, logger="handoff.push"):
        await hub.publish(await log.append(claimed("acme")))
        await hub.close()
    assert any("could not send 1 push notifications" in r.getMessage() for r in caplog.records), (
        caplog.text
    )
