"""SPEC §4 rules 1-3, 6 and 7 (park, resume, escalate, resolve, and every other transition), and
the limits of §3. Every refusal must leave sessions, handoffs, deliveries and timeline as they were.
"""

from __future__ import annotations

import pytest
from tests.unit.stage import ACME, ACME_SENIORS_BUT_ALICE, Stage

from handoff_core import (
    EventType,
    Forbidden,
    HandoffStatus,
    IdempotencyConflict,
    Intent,
    InvalidTransition,
    SessionStatus,
    ValidationError,
)

# --- park ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("actor", ["alice", "carol", "olga"])
async def test_the_assignee_or_a_manager_parks_an_active_session(stage: Stage, actor: str) -> None:
    session = await stage.start()

    park = await stage.handoffs.park(ACME, actor, session.id, "waiting for logs")

    assert (park.intent, park.status, park.created_by) == (Intent.PARK, HandoffStatus.OPEN, actor)
    stored = await stage.session(session.id)
    assert (stored.status, stored.handoff_count) == (SessionStatus.PAUSED, 1)
    assert [e.type for e in await stage.timeline(session.id)][-1] is EventType.SESSION_PARKED


async def test_park_notifies_nobody(stage: Stage) -> None:
    session = await stage.start()
    park = await stage.handoffs.park(ACME, "alice", session.id, "waiting")

    assert await stage.deliveries(park.id) == []
    assert await stage.delivery.run_once() == 0
    assert stage.mail.messages == [] and stage.hub.published == []


@pytest.mark.parametrize("actor", ["bob", "vic", "dan", "ina"])
async def test_park_by_anyone_else_is_forbidden(stage: Stage, actor: str) -> None:
    session = await stage.start()
    await stage.refused(lambda: stage.handoffs.park(ACME, actor, session.id, "x"), Forbidden)


# --- resume -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("parker", "resumer"), [("alice", "alice"), ("alice", "olga")])
async def test_whoever_parked_or_a_manager_resumes(stage: Stage, parker: str, resumer: str) -> None:
    session = await stage.start()
    park = await stage.handoffs.park(ACME, parker, session.id, "waiting")
    stage.clock.advance(30)

    resumed = await stage.handoffs.resume(ACME, resumer, session.id)

    assert resumed.status is SessionStatus.ACTIVE
    closed = await stage.handoff(park.id)
    assert closed.status is HandoffStatus.RESUMED
    assert closed.closed_at == stage.clock.now()
    assert (await stage.session(session.id)).status is SessionStatus.ACTIVE
    assert [e.type for e in await stage.timeline(session.id)][-1] is EventType.SESSION_RESUMED


async def test_only_whoever_parked_may_resume_not_even_the_assignee(stage: Stage) -> None:
    session = await stage.start()
    await stage.handoffs.park(ACME, "carol", session.id, "admin parked it")
    await stage.refused(lambda: stage.handoffs.resume(ACME, "alice", session.id), Forbidden)
    await stage.refused(lambda: stage.handoffs.resume(ACME, "bob", session.id), Forbidden)
    await stage.refused(lambda: stage.handoffs.resume(ACME, "vic", session.id), Forbidden)


# --- escalate -----------------------------------------------------------------------------------


async def test_escalation_plans_its_deliveries_in_the_same_transaction(stage: Stage) -> None:
    session, handoff = await stage.escalated()

    pending = await stage.deliveries(handoff.id)  # written before anything was dispatched

    assert {d.recipient_id for d in pending} == ACME_SENIORS_BUT_ALICE
    assert handoff.policy is not None
    [event] = [e for e in await stage.timeline(session.id) if e.handoff_id == handoff.id]
    assert event.type is EventType.SESSION_ESCALATED
    assert event.actor_id == "alice"


async def test_a_manager_escalates_someone_elses_session(stage: Stage) -> None:
    session = await stage.start("alice")

    handoff = await stage.handoffs.escalate(ACME, "carol", session.id, "taking it up")

    recipients = {d.recipient_id for d in await stage.deliveries(handoff.id)}
    assert recipients == {"alice", "bob", "olga"}


@pytest.mark.parametrize("actor", ["bob", "vic", "dan", "ina"])
async def test_escalate_by_anyone_else_is_forbidden(stage: Stage, actor: str) -> None:
    session = await stage.start()
    await stage.refused(lambda: stage.handoffs.escalate(ACME, actor, session.id, "x"), Forbidden)


# --- resolve and revise -------------------------------------------------------------------------


@pytest.mark.parametrize("actor", ["alice", "olga"])
async def test_the_assignee_or_a_manager_resolves(stage: Stage, actor: str) -> None:
    session = await stage.start()
    assert (await stage.handoffs.resolve(ACME, actor, session.id)).status is SessionStatus.RESOLVED
    assert (await stage.session(session.id)).status is SessionStatus.RESOLVED


@pytest.mark.parametrize("actor", ["bob", "vic"])
async def test_resolve_by_anyone_else_is_forbidden(stage: Stage, actor: str) -> None:
    session = await stage.start()
    await stage.refused(lambda: stage.handoffs.resolve(ACME, actor, session.id), Forbidden)


async def test_revise_changes_the_session_but_never_a_snapshot(stage: Stage) -> None:
    session, handoff = await stage.escalated()
    await stage.handoffs.claim(ACME, "bob", handoff.id)

    revised = await stage.handoffs.revise_session(
        ACME, "bob", session.id, problem_summary="DNS, not VPN", context={"messages": ["x"]}
    )

    assert (revised.problem_summary, revised.context) == ("DNS, not VPN", {"messages": ["x"]})
    assert (await stage.handoff(handoff.id)).snapshot == handoff.snapshot
    package = (await stage.session(session.id)).escalation_package
    assert package is not None and package["snapshot"] == handoff.snapshot


@pytest.mark.parametrize("actor", ["bob", "vic"])
async def test_revise_by_anyone_else_is_forbidden(stage: Stage, actor: str) -> None:
    session = await stage.start()
    await stage.refused(
        lambda: stage.handoffs.revise_session(ACME, actor, session.id, problem_summary="x"),
        Forbidden,
    )


# --- every other transition ---------------------------------------------------------------------


async def _in_status(stage: Stage, status: SessionStatus) -> str:
    session = await stage.start()
    if status is SessionStatus.PAUSED:
        await stage.handoffs.park(ACME, "alice", session.id, "p")
    elif status is SessionStatus.ESCALATED:
        await stage.handoffs.escalate(ACME, "alice", session.id, "e")
    elif status is SessionStatus.RESOLVED:
        await stage.handoffs.resolve(ACME, "alice", session.id)
    return session.id


@pytest.mark.parametrize(
    ("status", "action"),
    [
        (SessionStatus.PAUSED, "park"),
        (SessionStatus.PAUSED, "escalate"),
        (SessionStatus.PAUSED, "resolve"),
        (SessionStatus.ESCALATED, "park"),
        (SessionStatus.ESCALATED, "escalate"),
        (SessionStatus.ESCALATED, "resolve"),
        (SessionStatus.ESCALATED, "resume"),
        (SessionStatus.ACTIVE, "resume"),
        (SessionStatus.RESOLVED, "park"),
        (SessionStatus.RESOLVED, "escalate"),
        (SessionStatus.RESOLVED, "resolve"),
        (SessionStatus.RESOLVED, "resume"),
        (SessionStatus.RESOLVED, "revise"),
    ],
)
async def test_any_other_transition_is_refused(
    stage: Stage, status: SessionStatus, action: str
) -> None:
    session_id = await _in_status(stage, status)
    svc = stage.handoffs
    actions = {
        "park": lambda: svc.park(ACME, "alice", session_id, "again"),
        "escalate": lambda: svc.escalate(ACME, "alice", session_id, "again"),
        "resolve": lambda: svc.resolve(ACME, "alice", session_id),
        "resume": lambda: svc.resume(ACME, "alice", session_id),
        "revise": lambda: svc.revise_session(ACME, "alice", session_id, problem_summary="x"),
    }
    error = await stage.refused(actions[action], InvalidTransition)
    assert error.detail


# --- the limits of §3 ---------------------------------------------------------------------------

CONTEXT_MAX = 256 * 1024
WRAPPER = len('{"x":""}')


@pytest.mark.parametrize(
    ("summary", "context", "field"),
    [
        ("s" * 501, {}, "problem_summary"),
        (42, {}, "problem_summary"),
        ("ok", {"x": "a" * (CONTEXT_MAX - WRAPPER + 1)}, "context"),
        ("ok", ["not", "an", "object"], "context"),
        ("ok", {"x": object()}, "context"),
        ("ok", {"x": float("nan")}, "context"),
    ],
)
async def test_start_refuses_what_breaks_a_limit(
    stage: Stage, summary: object, context: object, field: str
) -> None:
    error = await stage.refused(
        lambda: stage.handoffs.start_session(ACME, "alice", summary, context), ValidationError
    )
    assert error.field == field


async def test_the_limits_themselves_are_allowed(stage: Stage) -> None:
    context = {"x": "a" * (CONTEXT_MAX - WRAPPER)}
    session = await stage.start(summary="s" * 500, context=context)
    handoff = await stage.handoffs.park(ACME, "alice", session.id, "n" * 4000)

    assert (await stage.session(session.id)).context == context
    assert len(handoff.engineer_notes) == 4000


@pytest.mark.parametrize(
    ("summary", "context", "field"),
    [("s" * 501, None, "problem_summary"), (None, {"x": {1, 2}}, "context")],
)
async def test_revise_refuses_what_breaks_a_limit(
    stage: Stage, summary: object, context: object, field: str
) -> None:
    session = await stage.start()
    error = await stage.refused(
        lambda: stage.handoffs.revise_session(
            ACME, "alice", session.id, problem_summary=summary, context=context
        ),
        ValidationError,
    )
    assert error.field == field


@pytest.mark.parametrize(
    ("intent", "notes", "field"),
    [
        ("escalate", "n" * 4001, "engineer_notes"),
        ("park", None, "engineer_notes"),
        ("x", "", "intent"),
    ],
)
async def test_hand_off_refuses_what_breaks_a_limit(
    stage: Stage, intent: str, notes: object, field: str
) -> None:
    session = await stage.start()
    error = await stage.refused(
        lambda: stage.handoffs.hand_off(ACME, "alice", session.id, intent, notes), ValidationError
    )
    assert error.field == field


# --- idempotency --------------------------------------------------------------------------------


@pytest.mark.parametrize("intent", ["park", "escalate"])
async def test_a_repeated_idempotency_key_returns_the_first_handoff(
    stage: Stage, intent: str
) -> None:
    session = await stage.start()
    first = await stage.handoffs.hand_off(
        ACME, "alice", session.id, intent, "help", idempotency_key="k-1"
    )
    before = await stage.observe()

    again = await stage.handoffs.hand_off(
        ACME, "alice", session.id, intent, "help", idempotency_key="k-1"
    )

    assert again == first
    assert await stage.observe() == before
    assert (await stage.session(session.id)).handoff_count == 1


async def test_the_same_key_with_another_body_is_a_conflict(stage: Stage) -> None:
    session = await stage.start()
    await stage.handoffs.escalate(ACME, "alice", session.id, "help", idempotency_key="k-1")
    other = await stage.start()

    for action in (
        lambda: stage.handoffs.escalate(ACME, "alice", session.id, "other", idempotency_key="k-1"),
        lambda: stage.handoffs.park(ACME, "alice", session.id, "help", idempotency_key="k-1"),
        lambda: stage.handoffs.escalate(ACME, "alice", other.id, "help", idempotency_key="k-1"),
    ):
        await stage.refused(action, IdempotencyConflict)
