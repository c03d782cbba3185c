"""SPEC §14 on every store: tiers due and raised once, a tiered policy and a webhook delivery's
payload round-tripping, and the account's webhook endpoints."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from handoff_core.model import Channel, EscalationPolicy, HandoffStatus, NoticeKind
from handoff_core.ports import UnitOfWorkFactory
from handoff_core.stream import StreamEventType
from handoff_core.webhooks import WebhookEndpoint, WebhookFormat

TWO_TIERS = EscalationPolicy.from_dict(
    {
        "tiers": [
            {"roles": ["engineer"], "after_seconds": 0},
            {"roles": ["admin", "owner"], "after_seconds": 600},
        ]
    }
)


async def test_a_tiered_handoff_round_trips(db: UnitOfWorkFactory, make: Any) -> None:
    handoff = await make.handoff(policy=TWO_TIERS, next_tier_at=make.at(600), tiers_reached=1)
    async with db() as uow:
        loaded = await uow.handoffs.get("acme", handoff.id)
    assert loaded == handoff
    assert loaded is not None and loaded.policy is not None
    assert [t.after_seconds for t in loaded.policy.steps] == [0, 600]


async def test_tiers_due_lists_open_escalations_whose_next_tier_has_come(
    db: UnitOfWorkFactory, make: Any
) -> None:
    first = await make.handoff(policy=TWO_TIERS, next_tier_at=make.at(600))
    second = await make.handoff(policy=TWO_TIERS, next_tier_at=make.at(601), account="globex")
    later = await make.handoff(policy=TWO_TIERS, next_tier_at=make.at(900))
    closed = await make.handoff(policy=TWO_TIERS, next_tier_at=make.at(10))
    none = await make.handoff(policy=TWO_TIERS, next_tier_at=None)
    async with db() as uow:
        assert await uow.handoffs.close("acme", closed.id, HandoffStatus.WITHDRAWN, make.at(5))
        await uow.commit()
    async with db() as uow:
        due = await uow.handoffs.tiers_due(make.at(700), limit=10)
        limited = await uow.handoffs.tiers_due(make.at(700), limit=1)
        nothing_yet = await uow.handoffs.tiers_due(make.at(599), limit=10)
    assert [h.id for h in due] == [first.id, second.id]
    assert [h.id for h in limited] == [first.id]
    assert nothing_yet == []
    assert later.id not in {h.id for h in due} and none.id not in {h.id for h in due}


async def test_advance_tier_happens_once_per_tier_and_never_after_a_claim(
    db: UnitOfWorkFactory, make: Any
) -> None:
    handoff = await make.handoff(policy=TWO_TIERS, next_tier_at=make.at(600))
    async with db() as uow:
        assert await uow.handoffs.advance_tier("acme", handoff.id, 2, make.at(1200))
        assert not await uow.handoffs.advance_tier("acme", handoff.id, 2, make.at(1200))
        assert not await uow.handoffs.advance_tier("acme", handoff.id, 4, None)
        assert not await uow.handoffs.advance_tier("globex", handoff.id, 3, None)
        await uow.commit()
    async with db() as uow:
        stored = await uow.handoffs.get("acme", handoff.id)
        assert stored is not None
        assert (stored.tiers_reached, stored.next_tier_at) == (2, make.at(1200))
        assert await uow.handoffs.claim("acme", handoff.id, "bob", make.at(700))
        assert not await uow.handoffs.advance_tier("acme", handoff.id, 3, None)
        await uow.commit()
    async with db() as uow:
        stored = await uow.handoffs.get("acme", handoff.id)
        assert await uow.handoffs.tiers_due(make.at(10_000), limit=10) == []
    assert stored is not None
    assert (stored.tiers_reached, stored.next_tier_at, stored.status) == (
        2,
        None,
        HandoffStatus.CLAIMED,
    )


async def test_concurrent_workers_raise_a_tier_once(db: UnitOfWorkFactory, make: Any) -> None:
    handoff = await make.handoff(policy=TWO_TIERS, next_tier_at=make.at(600))

    async def attempt() -> bool:
        async with db() as uow:
            won = await uow.handoffs.advance_tier("acme", handoff.id, 2, None)
            await uow.commit()
            return won

    results = await asyncio.gather(*(attempt() for _ in range(6)))
    assert sorted(results) == [False] * 5 + [True]


async def test_a_webhook_delivery_keeps_its_payload(db: UnitOfWorkFactory, make: Any) -> None:
    handoff = await make.handoff()
    body = {
        "type": "escalation.created",
        "timestamp": "2026-01-05T09:00:00+00:00",
        "data": {"handoff_id": handoff.id, "note": "ünï", "n": [1, 2.5, None]},
    }
    [hook] = await make.deliveries(
        handoff,
        make.delivery_object(
            handoff,
            "ep-1",
            channel=Channel.WEBHOOK,
            address="https://hooks.example/x",
            kind=NoticeKind.CLOSURE,
            payload=body,
        ),
    )
    async with db() as uow:
        [stored] = await uow.deliveries.for_handoff("acme", handoff.id)
        [leased] = await uow.deliveries.lease_due(make.at(1), owner="w", until=make.at(60), limit=5)
    assert stored == hook
    assert leased.payload == body and leased.channel is Channel.WEBHOOK


def _endpoint(account: str, endpoint_id: str, make: Any, **changes: Any) -> WebhookEndpoint:
    endpoint = WebhookEndpoint.register(
        account_id=account,
        id=endpoint_id,
        url=f"https://hooks.example/{endpoint_id}",
        events=["escalation.created", "escalation.claimed"],
        format="standard",
        now=make.at(0),
    )
    for name, value in changes.items():
        setattr(endpoint, name, value)
    return endpoint


async def test_webhook_endpoints_are_saved_listed_replaced_and_deleted_per_account(
    db: UnitOfWorkFactory, make: Any
) -> None:
    b = _endpoint("acme", "b", make)
    a = _endpoint("acme", "a", make, format=WebhookFormat.SLACK)
    other = _endpoint("globex", "a", make)
    async with db() as uow:
        for endpoint in (b, a, other):
            await uow.webhooks.save(endpoint)
        await uow.commit()
    async with db() as uow:
        assert await uow.webhooks.of_account("acme") == [a, b]
        assert await uow.webhooks.get("globex", "a") == other
        assert await uow.webhooks.get("globex", "b") is None
    changed = _endpoint(
        "acme",
        "a",
        make,
        url="https://elsewhere.example/h",
        events=frozenset({StreamEventType.ESCALATION_WITHDRAWN}),
        secret=a.secret,
        updated_at=make.at(60),
    )
    async with db() as uow:
        await uow.webhooks.save(changed)
        await uow.commit()
    async with db() as uow:
        assert await uow.webhooks.get("acme", "a") == changed
        assert await uow.webhooks.delete("acme", "a")
        assert not await uow.webhooks.delete("acme", "a")
        # not committed: the endpoint is back
    async with db() as uow:
        assert await uow.webhooks.get("acme", "a") == changed
        assert await uow.webhooks.delete("acme", "a")
        await uow.commit()
    async with db() as uow:
        assert [e.id for e in await uow.webhooks.of_account("acme")] == ["b"]
        assert await uow.webhooks.get("globex", "a") == other


@pytest.mark.parametrize("field", ["url", "events", "format"])
def test_a_bad_endpoint_is_refused_naming_its_field(field: str, make: Any) -> None:
    from handoff_core.errors import ValidationError

    good: dict[str, Any] = {"url": "https://h.example/x", "events": ["escalation.created"]}
    bad = {"url": "ftp://h.example/x", "events": ["escalation.exploded"], "format": "teams"}
    with pytest.raises(ValidationError) as caught:
        WebhookEndpoint.register(
            account_id="acme", id="e", now=make.at(0), **{**good, field: bad[field]}
        )
    assert caught.value.field == field
