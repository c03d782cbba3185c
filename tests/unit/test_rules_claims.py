"""SPEC §4 rules 4, 5 and 8: claim, withdraw, tenancy, and viewers who read but never act."""

from __future__ import annotations

import asyncio

import pytest
from tests.unit.stage import ACME, OTHER, Stage

from handoff_core import (
    AlreadyClaimed,
    DeliveryStatus,
    EventType,
    Forbidden,
    HandoffStatus,
    InvalidTransition,
    NotFound,
    NoticeKind,
    SessionStatus,
)

# --- claim --------------------------------------------------------------------------------------


async def test_a_second_claimer_learns_who_won(stage: Stage) -> None:
    _, handoff = await stage.escalated()
    await stage.handoffs.claim(ACME, "bob", handoff.id)

    error = await stage.refused(
        lambda: stage.handoffs.claim(ACME, "carol", handoff.id), AlreadyClaimed
    )

    assert error.by == "bob"
    assert "bob" in error.detail


async def test_exactly_one_of_many_concurrent_claimers_wins(stage: Stage) -> None:
    session, handoff = await stage.escalated()
    claimers = ["bob", "carol", "olga"]

    results = await asyncio.gather(
        *(stage.handoffs.claim(ACME, who, handoff.id) for who in claimers),
        return_exceptions=True,
    )

    winners = [r for r in results if not isinstance(r, BaseException)]
    losers = [r for r in results if isinstance(r, BaseException)]
    assert len(winners) == 1
    winner = winners[0].claimed_by
    assert all(isinstance(e, AlreadyClaimed) and e.by == winner for e in losers)
    assert (await stage.session(session.id)).assignee_id == winner
    claims = [e for e in await stage.timeline(session.id) if e.type is EventType.ESCALATION_CLAIMED]
    assert [e.actor_id for e in claims] == [winner]


async def test_the_escalator_cannot_claim_their_own_escalation(stage: Stage) -> None:
    _, handoff = await stage.escalated("alice")
    await stage.refused(lambda: stage.handoffs.claim(ACME, "alice", handoff.id), Forbidden)


@pytest.mark.parametrize("actor", ["vic", "dan", "ina", "nobody"])
async def test_viewers_and_former_members_cannot_claim(stage: Stage, actor: str) -> None:
    _, handoff = await stage.escalated()
    await stage.refused(lambda: stage.handoffs.claim(ACME, actor, handoff.id), Forbidden)


async def test_a_park_cannot_be_claimed(stage: Stage) -> None:
    session = await stage.start()
    park = await stage.handoffs.park(ACME, "alice", session.id, "waiting")
    await stage.refused(lambda: stage.handoffs.claim(ACME, "bob", park.id), InvalidTransition)


async def test_a_withdrawn_escalation_cannot_be_claimed(stage: Stage) -> None:
    _, handoff = await stage.escalated()
    await stage.handoffs.withdraw(ACME, "alice", handoff.id)
    await stage.refused(lambda: stage.handoffs.claim(ACME, "bob", handoff.id), InvalidTransition)


async def test_claim_cancels_pending_reminders_only(stage: Stage) -> None:
    _, handoff = await stage.escalated()
    await stage.delivery.dispatch(ACME, handoff.id)
    stage.clock.advance(600)
    assert await stage.delivery.remind_due() == 1

    await stage.handoffs.claim(ACME, "bob", handoff.id)

    by_kind = {
        (d.kind, d.status) for d in await stage.deliveries(handoff.id) if d.recipient_id == "carol"
    }
    assert by_kind == {
        (NoticeKind.ESCALATION, DeliveryStatus.SENT),
        (NoticeKind.REMINDER, DeliveryStatus.CANCELLED),
    }
    assert await stage.delivery.dispatch(ACME, handoff.id) == 0
    assert all("Reminder" not in n.body.subject for n in stage.mail.messages)


# --- withdraw -----------------------------------------------------------------------------------


@pytest.mark.parametrize("actor", ["alice", "carol", "olga"])
async def test_the_escalator_or_a_manager_withdraws(stage: Stage, actor: str) -> None:
    session, handoff = await stage.escalated("alice")

    withdrawn = await stage.handoffs.withdraw(ACME, actor, handoff.id)

    assert withdrawn.status is HandoffStatus.WITHDRAWN
    assert withdrawn.closed_at == stage.clock.now()
    stored = await stage.session(session.id)
    assert (stored.status, stored.assignee_id) == (SessionStatus.ACTIVE, "alice")
    assert {d.status for d in await stage.deliveries(handoff.id)} == {DeliveryStatus.CANCELLED}


async def test_withdraw_cancels_pending_deliveries_so_nothing_is_sent(stage: Stage) -> None:
    _, handoff = await stage.escalated()
    stage.mail.defer.add("bob@acme.test")
    assert await stage.delivery.dispatch(ACME, handoff.id) == 2

    await stage.handoffs.withdraw(ACME, "alice", handoff.id)
    stage.mail.defer.clear()
    stage.clock.advance(3 * 3600)

    assert await stage.delivery.run_once() == 0
    bob = [d for d in await stage.deliveries(handoff.id) if d.recipient_id == "bob"]
    assert [(d.status, d.attempts) for d in bob] == [(DeliveryStatus.CANCELLED, 1)]
    assert "bob@acme.test" not in stage.mail.sent


@pytest.mark.parametrize("actor", ["bob", "vic", "dan"])
async def test_withdraw_by_anyone_else_is_forbidden(stage: Stage, actor: str) -> None:
    _, handoff = await stage.escalated("alice")
    await stage.refused(lambda: stage.handoffs.withdraw(ACME, actor, handoff.id), Forbidden)


async def test_a_closed_escalation_or_a_park_cannot_be_withdrawn(stage: Stage) -> None:
    _, claimed = await stage.escalated()
    await stage.handoffs.claim(ACME, "bob", claimed.id)
    _, withdrawn = await stage.escalated()
    await stage.handoffs.withdraw(ACME, "alice", withdrawn.id)
    session = await stage.start()
    park = await stage.handoffs.park(ACME, "alice", session.id, "p")

    error = await stage.refused(
        lambda: stage.handoffs.withdraw(ACME, "alice", claimed.id), AlreadyClaimed
    )
    assert error.by == "bob"
    await stage.refused(
        lambda: stage.handoffs.withdraw(ACME, "alice", withdrawn.id), InvalidTransition
    )
    await stage.refused(lambda: stage.handoffs.withdraw(ACME, "alice", park.id), InvalidTransition)


# --- tenancy ------------------------------------------------------------------------------------


async def test_another_accounts_objects_do_not_exist(stage: Stage) -> None:
    """Every read and write with another account's ids is NotFound, never Forbidden."""
    theirs, escalation = await stage.escalated("oscar", account=OTHER)
    parked = await stage.start("oscar", account=OTHER)
    await stage.handoffs.park(OTHER, "oscar", parked.id, "p")
    svc, q = stage.handoffs, stage.queries

    for action in (
        lambda: svc.park(ACME, "olga", theirs.id, "x"),
        lambda: svc.escalate(ACME, "olga", theirs.id, "x"),
        lambda: svc.resume(ACME, "olga", parked.id),
        lambda: svc.resolve(ACME, "olga", theirs.id),
        lambda: svc.revise_session(ACME, "olga", theirs.id, problem_summary="x"),
        lambda: svc.claim(ACME, "bob", escalation.id),
        lambda: svc.withdraw(ACME, "olga", escalation.id),
        lambda: q.session(ACME, "olga", theirs.id),
        lambda: q.handoff(ACME, "olga", escalation.id),
        lambda: q.handoffs_of(ACME, "olga", theirs.id),
        lambda: q.deliveries(ACME, "olga", escalation.id),
        lambda: q.timeline(ACME, "olga", theirs.id),
    ):
        await stage.refused(action, NotFound)

    assert await stage.delivery.dispatch(ACME, escalation.id) == 0
    assert stage.mail.messages == []
    assert await q.queue(ACME, "olga", "all") == []


async def test_a_member_of_another_account_cannot_act_here(stage: Stage) -> None:
    _, handoff = await stage.escalated()
    await stage.refused(lambda: stage.handoffs.claim(OTHER, "zed", handoff.id), NotFound)
    await stage.refused(lambda: stage.handoffs.claim(ACME, "oscar", handoff.id), Forbidden)


# --- viewers read, never act --------------------------------------------------------------------


async def test_a_viewer_reads_everything_of_the_account(stage: Stage) -> None:
    session, handoff = await stage.escalated()
    q = stage.queries

    assert (await q.session(ACME, "vic", session.id)).id == session.id
    assert (await q.handoff(ACME, "vic", handoff.id)).id == handoff.id
    assert [h.id for h in await q.queue(ACME, "vic")] == [handoff.id]
    assert len(await q.deliveries(ACME, "vic", handoff.id)) == 3
    assert len(await q.timeline(ACME, "vic", session.id)) == 2


async def test_a_viewer_never_acts(stage: Stage) -> None:
    active = await stage.start()
    paused = await stage.start()
    await stage.handoffs.park(ACME, "alice", paused.id, "p")
    _, handoff = await stage.escalated()
    svc = stage.handoffs

    for action in (
        lambda: svc.start_session(ACME, "vic", "mine"),
        lambda: svc.park(ACME, "vic", active.id, "x"),
        lambda: svc.escalate(ACME, "vic", active.id, "x"),
        lambda: svc.resolve(ACME, "vic", active.id),
        lambda: svc.revise_session(ACME, "vic", active.id, problem_summary="x"),
        lambda: svc.resume(ACME, "vic", paused.id),
        lambda: svc.claim(ACME, "vic", handoff.id),
        lambda: svc.withdraw(ACME, "vic", handoff.id),
        lambda: stage.queries.analytics(ACME, "vic"),
        lambda: stage.members.upsert(
            ACME, "new", email="n@acme.test", name="N", role="engineer", actor_id="vic"
        ),
        lambda: stage.members.set_policy(ACME, {"max_reminders": 0}, actor_id="vic"),
    ):
        await stage.refused(action, Forbidden)
