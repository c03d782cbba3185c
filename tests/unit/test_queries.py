"""Members (upsert, soft delete, who may change them), the queue, the timeline and analytics."""

from __future__ import annotations

from datetime import timedelta

import pytest
from tests.unit.stage import ACME, OTHER, Stage

from handoff_core import EventType, Forbidden, NotFound, Role, ValidationError

SECOND = timedelta(seconds=1)

# --- members ------------------------------------------------------------------------------------


async def test_the_host_upserts_members_without_an_actor(stage: Stage) -> None:
    await stage.members.upsert(ACME, "vic", email="vic@acme.test", name="Vic", role="engineer")

    vic = await stage.members.get(ACME, "vic")
    assert vic is not None and vic.role is Role.ENGINEER
    session = await stage.start("vic")  # promoted: may act now
    assert session.owner_id == "vic"


@pytest.mark.parametrize("actor", ["carol", "olga"])
async def test_a_manager_upserts_and_removes_members(stage: Stage, actor: str) -> None:
    added = await stage.members.upsert(
        ACME, "nia", email="nia@acme.test", name="Nia", role="admin", actor_id=actor
    )
    assert added.role is Role.ADMIN
    assert "nia" in {m.id for m in await stage.members.members(ACME)}

    await stage.members.remove(ACME, "nia", actor_id=actor)

    assert "nia" not in {m.id for m in await stage.members.members(ACME, "audit")}
    removed = await stage.members.get(ACME, "nia")
    assert removed is not None and removed.deleted_at == stage.clock.now()


@pytest.mark.parametrize("actor", ["alice", "vic", "dan", "zed"])
async def test_only_a_manager_of_the_account_changes_members(stage: Stage, actor: str) -> None:
    await stage.refused(
        lambda: stage.members.upsert(
            ACME, "bob", email="bob@acme.test", name="Bob", role="owner", actor_id=actor
        ),
        Forbidden,
    )
    await stage.refused(lambda: stage.members.remove(ACME, "bob", actor_id=actor), Forbidden)


async def test_a_removed_member_can_no_longer_act_until_put_back(stage: Stage) -> None:
    await stage.members.remove(ACME, "bob")
    await stage.refused(lambda: stage.members.remove(ACME, "bob"), NotFound)
    await stage.refused(lambda: stage.start("bob"), Forbidden)

    await stage.members.upsert(ACME, "bob", email="bob@acme.test", name="Bob", role="engineer")

    assert (await stage.start("bob")).owner_id == "bob"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"email": "not-an-address"}, "email"),
        ({"role": "boss"}, "role"),
        ({"name": ""}, "name"),
        ({"active": "yes"}, "active"),
    ],
)
async def test_a_bad_member_is_refused_naming_the_field(
    stage: Stage, changes: dict[str, object], field: str
) -> None:
    body: dict[str, object] = {"email": "x@acme.test", "name": "X", "role": "engineer"}
    body.update(changes)
    error = await stage.refused(
        lambda: stage.members.upsert(ACME, "x", **body),  # type: ignore[arg-type]
        ValidationError,
    )
    assert error.field == field


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"roles": ["viewer"]}, "roles"),
        ({"roles": ["boss"]}, "roles"),
        ({"max_reminders": -1}, "max_reminders"),
        ({"remind_after_seconds": "600"}, "remind_after_seconds"),
        ({"colour": "red"}, "colour"),
        (["not", "an", "object"], "policy"),
    ],
)
async def test_a_bad_policy_is_refused_naming_the_field(
    stage: Stage, raw: object, field: str
) -> None:
    error = await stage.refused(
        lambda: stage.members.set_policy(ACME, raw, actor_id="olga"), ValidationError
    )
    assert error.field == field


# --- the queue and the timeline -----------------------------------------------------------------


async def test_the_queue_is_oldest_open_first_and_filtered_by_status(stage: Stage) -> None:
    ids = []
    for _ in range(4):
        ids.append((await stage.escalated())[1].id)
        stage.clock.advance(60)
    await stage.handoffs.claim(ACME, "bob", ids[1])
    await stage.handoffs.withdraw(ACME, "alice", ids[2])
    await stage.escalated("oscar", account=OTHER)
    parked = await stage.start()
    await stage.handoffs.park(ACME, "alice", parked.id, "not an escalation")
    q = stage.queries

    assert [h.id for h in await q.queue(ACME, "vic")] == [ids[0], ids[3]]
    assert [h.id for h in await q.queue(ACME, "vic", "open")] == [ids[0], ids[3]]
    assert [h.id for h in await q.queue(ACME, "vic", "claimed")] == [ids[1]]
    assert [h.id for h in await q.queue(ACME, "vic", "withdrawn")] == [ids[2]]
    assert sorted(h.id for h in await q.queue(ACME, "vic", "all")) == sorted(ids)
    error = await stage.refused(lambda: q.queue(ACME, "vic", "closed"), ValidationError)
    assert error.field == "status"


async def test_the_timeline_is_oldest_first(stage: Stage) -> None:
    session, handoff = await stage.escalated()
    stage.clock.advance(10)
    await stage.delivery.dispatch(ACME, handoff.id)
    stage.clock.advance(10)
    await stage.handoffs.claim(ACME, "bob", handoff.id)
    stage.clock.advance(10)
    await stage.handoffs.park(ACME, "bob", session.id, "lunch")
    stage.clock.advance(10)
    await stage.handoffs.resume(ACME, "bob", session.id)
    await stage.handoffs.resolve(ACME, "bob", session.id)

    events = await stage.timeline(session.id)

    assert [e.type for e in events] == [
        EventType.SESSION_CREATED,
        EventType.SESSION_ESCALATED,
        *[EventType.DELIVERY_SENT] * 3,
        EventType.ESCALATION_CLAIMED,
        EventType.SESSION_PARKED,
        EventType.SESSION_RESUMED,
        EventType.SESSION_RESOLVED,
    ]
    assert [e.actor_id for e in events if e.actor_id] == ["alice"] * 2 + ["bob"] * 4
    assert [e.at for e in events] == sorted(e.at for e in events)
    assert [e.id for e in events] == sorted(e.id for e in events if e.id is not None)


# --- analytics ----------------------------------------------------------------------------------


async def _history(stage: Stage) -> None:
    """Five escalations a minute apart (t = 0 .. 240 s); three claimed, one withdrawn, one open."""
    raised = []
    for minute in range(5):
        if minute:
            stage.clock.advance(60)
        raised.append((await stage.escalated())[1].id)
    stage.clock.advance(60)  # t = 300
    await stage.handoffs.claim(ACME, "carol", raised[4])  # waited 60 s
    stage.clock.advance(60)  # t = 360
    await stage.handoffs.claim(ACME, "bob", raised[1])  # waited 300 s
    await stage.handoffs.claim(ACME, "bob", raised[2])  # waited 240 s
    await stage.handoffs.withdraw(ACME, "alice", raised[3])
    await stage.escalated("oscar", account=OTHER)


async def test_analytics_counts_rate_percentiles_and_claimers(stage: Stage) -> None:
    await _history(stage)

    stats = await stage.queries.analytics(ACME, "carol")

    assert (stats.escalated, stats.claimed, stats.withdrawn, stats.open) == (5, 3, 1, 1)
    assert stats.claim_rate == 0.6
    # waits 60, 240, 300: by nearest rank p50 is the 2nd of three, p90 the 3rd
    assert (stats.time_to_claim_p50_s, stats.time_to_claim_p90_s) == (240.0, 300.0)
    assert stats.claims_by_member == {"bob": 2, "carol": 1}


async def test_analytics_window_is_since_inclusive_until_exclusive(stage: Stage) -> None:
    t0 = stage.clock.now()
    await _history(stage)
    q = stage.queries

    stats = await q.analytics(ACME, "olga", since=t0 + 120 * SECOND, until=t0 + 241 * SECOND)
    assert (stats.escalated, stats.claimed, stats.withdrawn, stats.open) == (3, 2, 1, 0)
    assert stats.claims_by_member == {"bob": 1, "carol": 1}
    assert (stats.time_to_claim_p50_s, stats.time_to_claim_p90_s) == (60.0, 240.0)

    stats = await q.analytics(ACME, "olga", since=t0 + 120 * SECOND, until=t0 + 240 * SECOND)
    assert (stats.escalated, stats.claimed, stats.withdrawn, stats.open) == (2, 1, 1, 0)

    empty = await q.analytics(ACME, "olga", since=t0 + 241 * SECOND)
    assert (empty.escalated, empty.claim_rate, empty.time_to_claim_p50_s) == (0, None, None)
    assert empty.claims_by_member == {}
    error = await stage.refused(
        lambda: q.analytics(ACME, "olga", since=t0, until=t0), ValidationError
    )
    assert error.field == "since"
