"""The in-process hub and presence: what a stream in this process receives."""

from __future__ import annotations

from handoff_core.ports import PushEvent
from handoff_push import InProcessHub, InProcessPresence


def _event(account: str, audience: frozenset[str] | None = None, n: int = 1) -> PushEvent:
    return PushEvent(
        account_id=account, type="escalation.claimed", data={"n": n}, id=n, audience=audience
    )


async def test_a_stream_gets_its_accounts_events_and_never_anothers() -> None:
    hub = InProcessHub()
    async with hub.subscribe("acme", "bob") as bob, hub.subscribe("other", "zed") as zed:
        await hub.publish(_event("acme"))
        got = await bob.next(timeout=1)
        assert got is not None and got.account_id == "acme"
        assert await zed.next(timeout=0.05) is None


async def test_an_addressed_event_reaches_only_its_audience() -> None:
    hub = InProcessHub()
    async with hub.subscribe("acme", "bob") as bob, hub.subscribe("acme", "carol") as carol:
        await hub.publish(_event("acme", frozenset({"carol"})))
        assert await bob.next(timeout=0.05) is None
        got = await carol.next(timeout=1)
        assert got is not None and got.audience == frozenset({"carol"})


async def test_leaving_the_context_unsubscribes() -> None:
    hub = InProcessHub()
    async with hub.subscribe("acme", "bob"):
        assert hub.subscribers("acme") == 1
    assert hub.subscribers("acme") == 0


async def test_a_slow_stream_drops_its_oldest_events_and_never_blocks_the_publisher() -> None:
    from handoff_push.inprocess import QUEUE_LIMIT

    hub = InProcessHub()
    async with hub.subscribe("acme", "bob") as bob:
        for n in range(QUEUE_LIMIT + 5):
            await hub.publish(_event("acme", n=n))
        first = await bob.next(timeout=1)
        assert first is not None and first.id == 5


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
