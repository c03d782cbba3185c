"""SPEC §14 tiers through the library on the memory adapters, with a manual clock: who each tier
tells and on which channel, reminders to those told, the timeline, the stream, and the policy."""

from __future__ import annotations

from typing import Any

import pytest
from tests.unit.stage import ACME, Stage

from handoff_core import (
    Channel,
    DeliveryStatus,
    EscalationPolicy,
    EventType,
    NoticeKind,
    Role,
    Tier,
    ValidationError,
)

TWO_TIERS: dict[str, Any] = {
    "tiers": [
        {"roles": ["engineer"], "after_seconds": 0},
        {"roles": ["admin", "owner"], "after_seconds": 600},
    ],
    "remind_after_seconds": 300,
    "max_reminders": 3,
    "push_confirm_seconds": 0,
}


async def _work(stage: Stage) -> None:
    for _ in range(20):
        if not await stage.delivery.run_once():
            return


def _told(deliveries: list[Any], kind: NoticeKind = NoticeKind.ESCALATION) -> dict[str, str]:
    return {
        d.recipient_id: d.channel.value
        for d in deliveries
        if d.kind is kind and d.status is DeliveryStatus.SENT
    }


async def test_the_second_tier_is_told_when_its_time_comes(stage: Stage) -> None:
    await stage.members.set_policy(ACME, TWO_TIERS)
    stage.presence.enter(ACME, "carol")  # online: her tier reaches her by push
    session, handoff = await stage.escalated()
    await _work(stage)
    assert _told(await stage.deliveries(handoff.id)) == {"bob": "email"}

    stage.clock.advance(599)
    assert await stage.delivery.raise_tiers_due() == 0
    stage.clock.advance(1)
    await _work(stage)
    assert _told(await stage.deliveries(handoff.id)) == {
        "bob": "email",
        "carol": "push",
        "olga": "email",
    }
    assert (await stage.handoff(handoff.id)).tiers_reached == 2
    [reached] = [
        e for e in await stage.timeline(session.id) if e.type is EventType.ESCALATION_TIER_REACHED
    ]
    assert reached.data == {"tier": 2, "roles": ["owner", "admin"], "recipients": 2}
    created = [e for e in stage.hub.published if e.type == "escalation.created"]
    assert [sorted(e.audience or ()) for e in created] == [["bob"], ["carol", "olga"]]
    assert created[1].data["tier"] == 2 and "tier" not in created[0].data
    [push] = [d for d in await stage.deliveries(handoff.id) if d.channel is Channel.PUSH]
    assert push.stream_seq == created[1].seq


async def test_reminders_go_only_to_the_tiers_already_told(stage: Stage) -> None:
    await stage.members.set_policy(ACME, TWO_TIERS)
    _, handoff = await stage.escalated()
    stage.clock.advance(300)
    await _work(stage)
    deliveries = await stage.deliveries(handoff.id)
    assert set(_told(deliveries, NoticeKind.REMINDER)) == {"bob"}
    stage.clock.advance(300)  # tier 2, and reminder 2 to both tiers
    await _work(stage)
    reminders = [
        (d.round, d.recipient_id)
        for d in await stage.deliveries(handoff.id)
        if d.kind is NoticeKind.REMINDER
    ]
    assert sorted(reminders) == [(1, "bob"), (2, "bob"), (2, "carol"), (2, "olga")]


async def test_a_claim_or_withdrawal_stops_the_later_tiers(stage: Stage) -> None:
    await stage.members.set_policy(ACME, TWO_TIERS)
    _, claimed = await stage.escalated()
    _, withdrawn = await stage.escalated(actor="bob")
    await stage.handoffs.claim(ACME, "carol", claimed.id)
    await stage.handoffs.withdraw(ACME, "bob", withdrawn.id)
    stage.clock.advance(3600)
    assert await stage.delivery.raise_tiers_due() == 0
    await _work(stage)
    for handoff in (claimed, withdrawn):
        assert (await stage.handoff(handoff.id)).tiers_reached == 1
        recipients = {d.recipient_id for d in await stage.deliveries(handoff.id)}
        assert not recipients & {"carol", "olga"}
    stats = await stage.queries.analytics(ACME, "olga")
    assert stats.claims_by_tier == {"1": 1}


async def test_editing_the_policy_mid_flight_keeps_the_copied_tiers(stage: Stage) -> None:
    await stage.members.set_policy(ACME, TWO_TIERS)
    _, handoff = await stage.escalated()
    await stage.members.set_policy(ACME, {"roles": ["engineer", "admin", "owner"]})
    stage.clock.advance(600)
    await _work(stage)
    assert set(_told(await stage.deliveries(handoff.id))) == {"bob", "carol", "olga"}
    # … but a role the account no longer tells is not told, whatever the copy says (SPEC §10)
    await stage.members.set_policy(ACME, {**TWO_TIERS, "tiers": TWO_TIERS["tiers"]})
    _, second = await stage.escalated()
    await stage.members.set_policy(ACME, {"roles": ["engineer", "admin"]})
    stage.clock.advance(600)
    await _work(stage)
    assert set(_told(await stage.deliveries(second.id))) == {"bob", "carol"}


async def test_a_claim_in_a_later_tier_counts_in_claims_by_tier(stage: Stage) -> None:
    await stage.members.set_policy(ACME, TWO_TIERS)
    _, handoff = await stage.escalated()
    stage.clock.advance(600)
    await _work(stage)
    await stage.handoffs.claim(ACME, "olga", handoff.id)
    stats = await stage.queries.analytics(ACME, "olga")
    assert stats.claims_by_tier == {"2": 1}


# --- the policy ---------------------------------------------------------------------------------


def test_roles_alone_is_one_tier_at_zero() -> None:
    plain = EscalationPolicy.from_dict({"roles": ["admin"]})
    one = EscalationPolicy.from_dict({"tiers": [{"roles": ["admin"], "after_seconds": 0}]})
    assert plain == one
    assert plain.steps == (Tier(roles=frozenset({Role.ADMIN}), after_seconds=0),)
    assert plain.to_dict()["tiers"] == [{"roles": ["admin"], "after_seconds": 0}]


def test_a_tiered_policy_round_trips_and_its_roles_are_the_union() -> None:
    policy = EscalationPolicy.from_dict(TWO_TIERS)
    assert policy.roles == frozenset({Role.ENGINEER, Role.ADMIN, Role.OWNER})
    assert EscalationPolicy.from_dict(policy.to_dict()) == policy
    assert policy.new_roles(2) == frozenset({Role.ADMIN, Role.OWNER})
    assert policy.roles_through(1) == frozenset({Role.ENGINEER})


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"tiers": []}, "tiers"),
        ({"tiers": "engineer"}, "tiers"),
        ({"tiers": [{"roles": ["engineer"], "after_seconds": 5}]}, "tiers[0]"),
        ({"tiers": [{"roles": [], "after_seconds": 0}]}, "tiers[0]"),
        ({"tiers": [{"after_seconds": 0}]}, "tiers[0]"),
        ({"tiers": [{"roles": ["admin"], "after_seconds": 0, "x": 1}]}, "tiers[0]"),
        ({"tiers": [{"roles": ["admin"], "after_seconds": -1}]}, "tiers[0]"),
        ({"tiers": [{"roles": ["admin"], "after_seconds": "0"}]}, "tiers[0]"),
        (
            {
                "tiers": [
                    {"roles": ["admin"], "after_seconds": 0},
                    {"roles": ["owner"], "after_seconds": 60},
                    {"roles": ["engineer"], "after_seconds": 60},
                ]
            },
            "tiers[2]",
        ),
        ({"tiers": [{"roles": ["admin"], "after_seconds": n} for n in range(6)]}, "tiers"),
        (
            {"roles": ["engineer"], "tiers": [{"roles": ["admin"], "after_seconds": 0}]},
            "roles",
        ),
    ],
)
def test_bad_tiers_are_refused_naming_the_field(raw: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        EscalationPolicy.from_dict(raw)
    assert caught.value.field == field
