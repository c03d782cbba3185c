"""`Escalations`: an escalation's reads and writes as one call each, on every store alike.

What `inputs` and `add` do must be what the repositories do one by one (`inputs_by_parts`,
`add_by_parts`): PostgreSQL makes each one statement, the other stores compose them.
"""

from __future__ import annotations

from typing import Any

import pytest

from handoff_core.errors import Conflict, IdempotencyConflict
from handoff_core.model import (
    Channel,
    EscalationPolicy,
    EventType,
    Handoff,
    Member,
    Role,
    Session,
    TimelineEvent,
)
from handoff_core.ports import NewEscalation, UnitOfWorkFactory, inputs_by_parts
from handoff_core.stream import StreamEventType, escalation_created
from handoff_core.webhooks import WebhookEndpoint, WebhookFormat


async def _team(make: Any) -> dict[str, Member]:
    return {
        "alice": await make.member("acme", "alice"),
        "zed": await make.member("acme", "zed", Role.ADMIN),
        "bob": await make.member("acme", "bob", Role.OWNER),
        "idle": await make.member("acme", "idle", active=False),
        "gone": await make.member("acme", "gone", deleted_at=make.at(1)),
        "viewer": await make.member("acme", "viewer", Role.VIEWER),
        "elsewhere": await make.member("other", "elsewhere"),
    }


async def test_inputs_are_what_the_repositories_read(db: UnitOfWorkFactory, make: Any) -> None:
    await _team(make)
    session = await make.session("acme")
    policy = EscalationPolicy(roles=frozenset({Role.ADMIN}), max_reminders=1)
    async with db() as uow:
        await uow.policies.put("acme", policy)
        await uow.commit()
    async with db() as uow:
        got = await uow.escalations.inputs("acme", session.id)
        expected = await inputs_by_parts(uow, "acme", session.id)
    assert got == expected
    assert got.session is not None and got.session.id == session.id
    assert got.session.context == session.context and got.session.version == 1
    assert got.policy == policy
    # Not deleted (the inactive one included), by id, of this account only.
    assert [m.id for m in got.members] == ["alice", "bob", "idle", "viewer", "zed"]
    assert {m.id: m.role for m in got.members}["bob"] is Role.OWNER
    assert not {m.id: m for m in got.members}["idle"].active
    assert got.endpoints == []


async def test_inputs_without_a_session_policy_or_members(db: UnitOfWorkFactory, make: Any) -> None:
    await make.member("acme", "alice")
    async with db() as uow:
        missing = await uow.escalations.inputs("acme", "no-such-session")
        empty = await uow.escalations.inputs("nobody", "no-such-session")
    assert missing.session is None and missing.policy is None
    assert [m.id for m in missing.members] == ["alice"]
    assert empty.members == [] and empty.session is None and empty.endpoints == []


async def test_inputs_list_the_accounts_webhook_endpoints(db: UnitOfWorkFactory, make: Any) -> None:
    session = await make.session("acme")
    endpoint = WebhookEndpoint(
        account_id="acme",
        id="wh1",
        url="https://hooks.example.test/in",
        events=frozenset({StreamEventType.ESCALATION_CREATED}),
        format=WebhookFormat.STANDARD,
        secret="whsec_" + "A" * 32,
        created_at=make.at(0),
        updated_at=make.at(0),
    )
    async with db() as uow:
        await uow.webhooks.save(endpoint)
        await uow.commit()
    async with db() as uow:
        got = await uow.escalations.inputs("acme", session.id)
    assert got.endpoints == [endpoint]


def _escalation(make: Any, session: Session, actor: Member, **changes: Any) -> NewEscalation:
    handoff = session.escalate(
        actor,
        handoff_id=changes.pop("handoff_id", make.id()),
        notes="stuck",
        policy=EscalationPolicy(),
        now=make.at(5),
    )
    for name, value in changes.items():
        setattr(handoff, name, value)
    event = TimelineEvent(
        account_id=session.account_id,
        session_id=session.id,
        type=EventType.SESSION_ESCALATED,
        at=make.at(5),
        handoff_id=handoff.id,
        actor_id=actor.id,
        data={"engineer_notes": "stuck", "recipients": 2},
    )
    deliveries = [
        make.delivery_object(handoff, "bob"),
        make.delivery_object(handoff, "zed", channel=Channel.PUSH),
    ]
    notice = escalation_created(handoff, ["bob", "zed"])
    return NewEscalation(handoff, session, event, notice, deliveries)


async def _add(db: UnitOfWorkFactory, escalation: NewEscalation) -> tuple[Any, Any]:
    async with db() as uow:
        written = await uow.escalations.add(escalation)
        await uow.commit()
    return written


async def test_add_writes_every_part_and_numbers_the_stream(
    db: UnitOfWorkFactory, make: Any
) -> None:
    team = await _team(make)
    first = await make.session("acme")
    second = await make.session("acme")
    one = _escalation(make, first, team["alice"])
    stored, streamed = await _add(db, one)
    two = _escalation(make, second, team["alice"])
    _, later = await _add(db, two)
    assert first.version == 2  # bumped, as Sessions.update does
    assert (streamed.seq, later.seq) == (1, 2)
    async with db() as uow:
        assert await uow.handoffs.get("acme", one.handoff.id) == one.handoff
        kept = await uow.sessions.get("acme", first.id)
        events = await uow.timeline.for_session("acme", first.id)
        stream = await uow.stream.after("acme", 0, 10)
        sent = await uow.deliveries.for_handoff("acme", one.handoff.id)
    assert kept is not None and kept.status == first.status and kept.version == 2
    assert kept.escalation_package == first.escalation_package
    assert events == [stored] and stored.id is not None and stored.data == one.event.data
    assert stream[0] == streamed and streamed.data == one.notice.data
    assert streamed.audience == frozenset({"bob", "zed"})
    by_channel = {d.channel: d for d in sent}
    assert by_channel[Channel.PUSH].stream_seq == 1  # a push points at its stream event
    assert by_channel[Channel.EMAIL].stream_seq is None
    assert {d.id for d in sent} == {d.id for d in one.deliveries}
    assert by_channel[Channel.EMAIL].address == one.deliveries[0].address


async def test_add_with_no_deliveries(db: UnitOfWorkFactory, make: Any) -> None:
    alice = await make.member("acme", "alice")
    session = await make.session("acme")
    escalation = _escalation(make, session, alice)
    _, streamed = await _add(db, NewEscalation(
        escalation.handoff, session, escalation.event, escalation.notice, []
    ))  # fmt: skip
    async with db() as uow:
        assert await uow.deliveries.for_handoff("acme", escalation.handoff.id) == []
        assert await uow.stream.bounds("acme") == (0, streamed.seq)


async def _nothing_written(db: UnitOfWorkFactory, session: Session, handoff: Handoff) -> None:
    async with db() as uow:
        assert await uow.deliveries.for_handoff("acme", handoff.id) == []
        assert await uow.timeline.for_session("acme", session.id) == []
        assert await uow.stream.bounds("acme") == (0, 0)


async def test_a_taken_handoff_id_is_a_conflict(db: UnitOfWorkFactory, make: Any) -> None:
    alice = await make.member("acme", "alice")
    session = await make.session("acme")
    taken = await make.handoff(session)
    escalation = _escalation(make, session, alice, handoff_id=taken.id)
    with pytest.raises(Conflict):
        await _add(db, escalation)
    await _nothing_written(db, session, escalation.handoff)
    async with db() as uow:
        kept = await uow.sessions.get("acme", session.id)
    assert kept is not None and kept.version == 1 and kept.status.value == "active"


async def test_a_taken_idempotency_key_is_an_idempotency_conflict(
    db: UnitOfWorkFactory, make: Any
) -> None:
    alice = await make.member("acme", "alice")
    session = await make.session("acme")
    await make.handoff(await make.session("acme"), idempotency_key="k1")
    escalation = _escalation(make, session, alice, idempotency_key="k1")
    with pytest.raises(IdempotencyConflict):
        await _add(db, escalation)
    await _nothing_written(db, session, escalation.handoff)


async def test_a_session_changed_meanwhile_is_a_conflict(db: UnitOfWorkFactory, make: Any) -> None:
    alice = await make.member("acme", "alice")
    session = await make.session("acme")
    async with db() as uow:
        stale = await uow.sessions.get("acme", session.id)
    assert stale is not None
    async with db() as uow:  # someone else writes it first
        await uow.sessions.update(session)
        await uow.commit()
    escalation = _escalation(make, stale, alice)
    with pytest.raises(Conflict, match="changed by someone else"):
        await _add(db, escalation)
    async with db() as uow:
        assert await uow.handoffs.get("acme", escalation.handoff.id) is None
    await _nothing_written(db, session, escalation.handoff)
