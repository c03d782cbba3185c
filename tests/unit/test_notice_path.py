"""SPEC §10-11 on the library with its in-memory adapters: one ordered stream per account, seen or
email, removal and claims stop what is unsent, one catch-up reminder after a pause."""

from __future__ import annotations

from tests.unit.stage import (
    ACME,
    ACME_SENIORS_BUT_ALICE,
    Stage,
    address_of,
)

from handoff_core import Channel, DeliveryStatus, NoticeKind, StreamEventType, ValidationError

BOB = address_of(ACME, "bob")
CAROL = address_of(ACME, "carol")


async def _down(stage: Stage) -> None:
    """The relay answers 4xx to everyone for now."""
    stage.mail.defer.update(address_of(ACME, m) for m in ACME_SENIORS_BUT_ALICE)


async def test_a_claim_right_after_an_escalation_streams_created_then_claimed(
    stage: Stage,
) -> None:
    _, handoff = await stage.escalated()
    await stage.handoffs.claim(ACME, "bob", handoff.id)

    events = stage.hub.received_by(ACME, "carol")
    assert [(e.type, e.seq) for e in events] == [
        (StreamEventType.ESCALATION_CREATED, 1),
        (StreamEventType.ESCALATION_CLAIMED, 2),
    ]
    replay = await stage.streams.replay(ACME, "carol", 0)
    assert replay.events == tuple(events)  # the same events, the same data
    assert (await stage.streams.replay(ACME, "carol", 2)).events == ()


async def test_replay_follows_the_same_audience_as_live(stage: Stage) -> None:
    """Policy owner/admin: bob (an engineer) is told nothing of the escalation, live or replayed,
    but sees the queue change when it is claimed."""
    await stage.members.set_policy(ACME, {"roles": ["owner", "admin"]})
    _, handoff = await stage.escalated()
    await stage.handoffs.claim(ACME, "carol", handoff.id)

    live = [e.type for e in stage.hub.received_by(ACME, "bob")]
    replayed = [e.type for e in (await stage.streams.replay(ACME, "bob", 0)).events]
    assert live == replayed == [StreamEventType.ESCALATION_CLAIMED]
    assert [e.type for e in (await stage.streams.replay(ACME, "olga", 0)).events] == [
        StreamEventType.ESCALATION_CREATED,
        StreamEventType.ESCALATION_CLAIMED,
    ]


async def test_an_id_that_cannot_be_replayed_is_a_reset(stage: Stage) -> None:
    await stage.escalated()
    assert (await stage.streams.replay(ACME, "bob", 7)).reset  # from a store that was reset
    assert not (await stage.streams.replay(ACME, "bob", 1)).reset
    stage.clock.advance(3600)
    await stage.escalated()
    async with stage.db() as uow:
        assert await uow.stream.prune(stage.clock.now()) == 1  # the first escalation's event
        await uow.commit()
    replay = await stage.streams.replay(ACME, "bob", 0)  # older than what is kept
    assert replay.reset and replay.position == 2
    assert [e.seq for e in (await stage.streams.replay(ACME, "bob", 1)).events] == [2]


async def test_a_rolled_back_escalation_leaves_no_stream_event_and_no_gap(stage: Stage) -> None:
    session = await stage.start()
    await stage.handoffs.escalate(ACME, "alice", session.id, "first")
    async with stage.db() as uow:
        await uow.stream.append(stage.hub.published)  # written, never committed
    assert await stage.streams.position(ACME) == 1
    _, second = await stage.escalated()
    assert [e.seq for e in stage.hub.published] == [1, 2]
    assert stage.hub.published[1].handoff_id == second.id


async def test_an_unseen_push_is_emailed_once_its_confirm_time_passes(stage: Stage) -> None:
    await stage.members.set_policy(ACME, {"push_confirm_seconds": 30})
    stage.presence.enter(ACME, "bob")
    _, handoff = await stage.escalated()
    await stage.delivery.dispatch(ACME, handoff.id)
    assert BOB not in stage.mail.sent

    stage.clock.advance(29)
    await stage.delivery.run_once()
    assert BOB not in stage.mail.sent
    stage.clock.advance(1)
    await stage.delivery.run_once()
    await stage.delivery.run_once()

    assert len(stage.mail.sent[BOB]) == 1
    bob = {
        (d.channel, d.status) for d in await stage.deliveries(handoff.id) if d.recipient_id == "bob"
    }
    assert bob == {(Channel.PUSH, DeliveryStatus.UNCONFIRMED), (Channel.EMAIL, DeliveryStatus.SENT)}
    [push] = [d for d in await stage.deliveries(handoff.id) if d.channel is Channel.PUSH]
    assert push.last_error is not None and push.last_error.startswith("unconfirmed")


async def test_a_push_marked_seen_is_never_emailed(stage: Stage) -> None:
    stage.presence.enter(ACME, "bob")
    _, handoff = await stage.escalated()
    await stage.delivery.dispatch(ACME, handoff.id)
    [event] = stage.hub.received_by(ACME, "bob")
    seen_at = stage.clock.now()

    assert await stage.streams.mark_seen(ACME, "bob", str(event.seq)) == 1
    assert await stage.streams.mark_seen(ACME, "bob", str(event.seq)) == 0  # once is enough
    stage.clock.advance(300)  # long past the 30 s to confirm, before the first reminder
    await stage.delivery.run_once()

    assert BOB not in stage.mail.sent
    [push] = [d for d in await stage.deliveries(handoff.id) if d.channel is Channel.PUSH]
    assert (push.status, push.seen_at) == (DeliveryStatus.SENT, seen_at)


async def test_seen_up_to_an_earlier_id_leaves_later_pushes_unseen(stage: Stage) -> None:
    stage.presence.enter(ACME, "bob")
    _, first = await stage.escalated()
    _, second = await stage.escalated(actor="carol")
    for h in (first, second):
        await stage.delivery.dispatch(ACME, h.id)
    assert await stage.streams.mark_seen(ACME, "bob", "1") == 1
    stage.clock.advance(31)
    await stage.delivery.run_once()
    await stage.delivery.run_once()
    [email] = stage.mail.sent[BOB]
    assert email.delivery_id in {d.id for d in await stage.deliveries(second.id)}


async def test_push_confirm_zero_counts_a_push_once_written(stage: Stage) -> None:
    await stage.members.set_policy(ACME, {"push_confirm_seconds": 0})
    stage.presence.enter(ACME, "bob")
    _, handoff = await stage.escalated()
    await stage.delivery.dispatch(ACME, handoff.id)
    stage.clock.advance(300)
    await stage.delivery.run_once()
    assert BOB not in stage.mail.sent


async def test_seen_refuses_an_id_the_stream_never_sent(stage: Stage) -> None:
    for bad in ("abc", "-1", str(2**63), "", 1.5, None, True):
        error = await stage.refused(
            lambda bad=bad: stage.streams.mark_seen(ACME, "bob", bad), ValidationError
        )
        assert error.field == "last_event_id"


async def test_a_claim_while_smtp_is_down_stops_every_email(stage: Stage) -> None:
    await _down(stage)
    _, handoff = await stage.escalated()
    await stage.delivery.dispatch(ACME, handoff.id)
    await stage.handoffs.claim(ACME, "bob", handoff.id)
    stage.mail.defer.clear()
    stage.clock.advance(3600)
    for _ in range(3):
        await stage.delivery.run_once()

    assert stage.mail.messages == []
    statuses = {d.status for d in await stage.deliveries(handoff.id)}
    assert statuses == {DeliveryStatus.CANCELLED}


async def test_a_withdrawal_while_smtp_is_down_stops_every_email(stage: Stage) -> None:
    await _down(stage)
    _, handoff = await stage.escalated()
    await stage.delivery.dispatch(ACME, handoff.id)
    await stage.handoffs.withdraw(ACME, "alice", handoff.id)
    stage.mail.defer.clear()
    stage.clock.advance(3600)
    await stage.delivery.run_once()
    assert stage.mail.messages == []


async def test_nothing_leased_before_a_claim_is_sent_after_it(stage: Stage) -> None:
    """A worker leased the batch, then the claim committed: the send-time check cancels it."""
    _, handoff = await stage.escalated()
    sender = stage.delivery._sender
    leased = await sender.lease()
    await stage.handoffs.claim(ACME, "bob", handoff.id)
    assert (await sender.deliver(leased)).sent == 0
    assert stage.mail.messages == []


async def test_a_member_removed_while_smtp_was_down_gets_nothing_when_it_is_back(
    stage: Stage,
) -> None:
    await _down(stage)
    _, handoff = await stage.escalated()
    await stage.delivery.dispatch(ACME, handoff.id)
    await stage.members.remove(ACME, "carol")
    stage.mail.defer.clear()
    stage.clock.advance(3600)
    for _ in range(2):
        await stage.delivery.run_once()

    assert CAROL not in stage.mail.sent
    assert BOB in stage.mail.sent
    [carol] = [d for d in await stage.deliveries(handoff.id) if d.recipient_id == "carol"]
    assert carol.status is DeliveryStatus.CANCELLED
    assert carol.last_error == "the recipient is no longer a member the policy tells"


async def test_a_deactivated_or_demoted_member_is_not_told_either(stage: Stage) -> None:
    await _down(stage)
    _, handoff = await stage.escalated()
    await stage.delivery.dispatch(ACME, handoff.id)
    await stage.members.upsert(ACME, "carol", email=CAROL, name="Carol", role="admin", active=False)
    await stage.members.upsert(
        ACME, "olga", email=address_of(ACME, "olga"), name="O", role="viewer"
    )
    stage.mail.defer.clear()
    stage.clock.advance(3600)
    await stage.delivery.run_once()
    assert set(stage.mail.sent) == {BOB}


async def test_a_role_dropped_from_the_policy_stops_its_members_being_told(stage: Stage) -> None:
    await _down(stage)
    _, handoff = await stage.escalated()
    await stage.delivery.dispatch(ACME, handoff.id)
    await stage.members.set_policy(ACME, {"roles": ["owner", "admin"]})
    stage.mail.defer.clear()
    stage.clock.advance(3600)
    await stage.delivery.run_once()
    assert BOB not in stage.mail.sent
    assert set(stage.mail.sent) == {CAROL, address_of(ACME, "olga")}


async def test_workers_paused_past_several_reminders_raise_one_then_keep_the_spacing(
    stage: Stage,
) -> None:
    await stage.members.set_policy(ACME, {"remind_after_seconds": 2, "max_reminders": 3})
    _, handoff = await stage.escalated()
    await stage.delivery.dispatch(ACME, handoff.id)

    stage.clock.advance(9)  # reminders 1 to 4 would all be due by now
    while await stage.delivery.run_once():
        pass
    assert await stage.delivery.remind_due() == 0
    subjects = [n.body.subject.split(":")[0] for n in stage.mail.sent[BOB]]
    assert subjects == ["Escalation", "Reminder 1"]

    stage.clock.advance(1.9)
    assert await stage.delivery.remind_due() == 0
    stage.clock.advance(0.1)
    assert await stage.delivery.remind_due() == 1
    stage.clock.advance(2)
    assert await stage.delivery.remind_due() == 1
    stage.clock.advance(60)
    assert await stage.delivery.remind_due() == 0
    reminded = [
        d.round for d in await stage.deliveries(handoff.id) if d.kind is NoticeKind.REMINDER
    ]
    assert sorted(set(reminded)) == [1, 2, 3]


async def test_the_worker_forgets_stream_events_older_than_it_keeps(stage: Stage) -> None:
    await stage.members.set_policy(ACME, {"max_reminders": 0})
    await stage.escalated()
    stage.clock.advance(8 * 24 * 3600)  # past the 7 days kept by default
    _, recent = await stage.escalated()
    await stage.delivery.run_once()
    assert (await stage.streams.replay(ACME, "bob", 0)).reset
    replay = await stage.streams.replay(ACME, "bob", 1)
    assert [e.handoff_id for e in replay.events] == [recent.id]


# --- what a fresh user's tryout found -------------------------------------------------------


async def test_ids_with_invisible_or_undecodable_characters_are_refused(stage: Stage) -> None:
    for bad in ("a\u202eb", "\ufeffbob", "bob\ufffd", "x\u200by"):
        error = await stage.refused(
            lambda bad=bad: stage.members.upsert(
                ACME, bad, email="x@acme.test", name="X", role="engineer"
            ),
            ValidationError,
        )
        assert error.field == "id"


async def test_names_are_one_line_and_summaries_are_not_blank(stage: Stage) -> None:
    for bad in ("Bob\r\nBcc: eve@acme.test", "Bob\tSmith"):
        error = await stage.refused(
            lambda bad=bad: stage.members.upsert(
                ACME, "bob2", email="bob2@acme.test", name=bad, role="engineer"
            ),
            ValidationError,
        )
        assert error.field == "name"
    for blank in ("", "   "):
        error = await stage.refused(lambda blank=blank: stage.start(summary=blank), ValidationError)
        assert error.field == "problem_summary"
