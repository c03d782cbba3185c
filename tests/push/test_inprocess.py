"""The in-process relay and presence: what a stream in this process receives, and in which order."""

from __future__ import annotations

from tests.push.conftest import Log, claimed, created

from handoff_push import InProcessHub, InProcessPresence


async def test_a_stream_gets_its_accounts_events_and_never_anothers(log: Log) -> None:
    hub = InProcessHub(log.source)
    async with hub.subscribe("acme", "bob") as bob, hub.subscribe("other", "zed") as zed:
        await hub.publish(await log.append(claimed("acme")))
        got = await bob.next(timeout=1)
        assert got is not None and (got.account_id, got.seq) == ("acme", 1)
        assert await zed.next(timeout=0.05) is None


async def test_an_addressed_event_reaches_only_its_audience(log: Log) -> None:
    hub = InProcessHub(log.source)
    async with hub.subscribe("acme", "bob") as bob, hub.subscribe("acme", "carol") as carol:
        await hub.publish(await log.append(created("acme", frozenset({"carol"}))))
        assert await bob.next(timeout=0.05) is None
        got = await carol.next(timeout=1)
        assert got is not None and got.audience == frozenset({"carol"})


async def test_events_heard_out_of_order_reach_the_stream_in_order_once(log: Log) -> None:
    """Two commits announce in the wrong order: the relay reads the gap from the log."""
    hub = InProcessHub(log.source)
    async with hub.subscribe("acme", "bob") as bob:
        first, second = await log.append(claimed("acme", "h1"), claimed("acme", "h2"))
        await hub.publish([second])
        await hub.publish([first])
        got = [await bob.next(timeout=1), await bob.next(timeout=1)]
        assert [e.seq for e in got if e is not None] == [1, 2]
        assert await bob.next(timeout=0.05) is None


async def test_a_lost_announcement_is_caught_up_from_the_log(log: Log) -> None:
    hub = InProcessHub(log.source)
    async with hub.subscribe("acme", "bob") as bob:
        await log.append(claimed("acme"))  # committed, never announced
        assert await bob.next(timeout=0.05) is None
        await hub.catch_up("acme")
        got = await bob.next(timeout=1)
        assert got is not None and got.seq == 1


async def test_a_new_stream_starts_at_the_logs_head(log: Log) -> None:
    await log.append(claimed("acme", "old"))
    hub = InProcessHub(log.source)
    async with hub.subscribe("acme", "bob") as bob:
        await hub.catch_up("acme")
        assert await bob.next(timeout=0.05) is None
        await hub.publish(await log.append(claimed("acme", "new")))
        got = await bob.next(timeout=1)
        assert got is not None and (got.seq, got.handoff_id) == (2, "new")


async def test_leaving_the_context_unsubscribes(log: Log) -> None:
    hub = InProcessHub(log.source)
    async with hub.subscribe("acme", "bob"):
        assert hub.subscribers("acme") == 1
        assert hub.listeners() == [("acme", "bob")]
    assert hub.subscribers("acme") == 0
    assert hub.listeners() == []


async def test_a_slow_stream_is_marked_overflowed_and_never_blocks_the_relay(log: Log) -> None:
    from handoff_push.inprocess import QUEUE_LIMIT

    hub = InProcessHub(log.source)
    async with hub.subscribe("acme", "bob") as bob:
        for n in range(QUEUE_LIMIT + 5):
            await hub.publish(await log.append(claimed("acme", f"h{n}")))
        assert bob.overflowed
        assert await bob.next(timeout=0.05) is None  # the stream must catch up from the log
        bob.drain()
        assert not bob.overflowed and bob.queue.empty()


async def test_closing_a_member_ends_their_streams_only(log: Log) -> None:
    hub = InProcessHub(log.source)
    async with hub.subscribe("acme", "bob") as bob, hub.subscribe("acme", "carol") as carol:
        assert hub.close_member("acme", "bob") == 1
        assert bob.closed and not carol.closed
        await hub.publish(await log.append(claimed("acme")))
        assert await bob.next(timeout=0.05) is None
        assert await carol.next(timeout=1) is not None


async def test_presence_counts_streams_per_member() -> None:
    presence = InProcessPresence()
    one = await presence.enter("acme", "bob", 30)
    two = await presence.enter("acme", "bob", 30)
    assert await presence.online("acme", ["bob", "carol"]) == frozenset({"bob"})
    assert await presence.online("other", ["bob"]) == frozenset()
    await presence.leave(one)
    assert await presence.online("acme", ["bob"]) == frozenset({"bob"})
    await presence.leave(two)
    assert await presence.online("acme", ["bob"]) == frozenset()
