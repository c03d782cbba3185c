"""SPEC §5: channels by presence, fallback, reminders, retries, the policy copied per escalation."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Collection, Sequence
from datetime import timedelta

from tests.unit.stage import (
    ACME,
    ACME_SENIORS_BUT_ALICE,
    OTHER,
    SUMMARY,
    Stage,
    address_of,
    build_stage,
    instant_retry,
    seed_team,
)

from handoff_core import (
    Channel,
    DeliveryService,
    DeliverySettings,
    DeliveryStatus,
    EscalationPolicy,
    EventType,
    Notice,
    NoticeKind,
    Role,
    SendOutcome,
)
from handoff_core.ports import Withdrawn

BOB = address_of(ACME, "bob")

# --- push and email -----------------------------------------------------------------------------


async def test_an_online_member_gets_a_push_and_the_others_email(stage: Stage) -> None:
    stage.presence.enter(ACME, "bob")
    inbox = stage.hub.subscribe(ACME, "bob")
    _, handoff = await stage.escalated(notes="Stuck on auth handshake")

    assert await stage.delivery.dispatch(ACME, handoff.id) == 3

    channels = {(d.recipient_id, d.channel, d.status) for d in await stage.deliveries(handoff.id)}
    assert channels == {
        ("bob", Channel.PUSH, DeliveryStatus.SENT),
        ("carol", Channel.EMAIL, DeliveryStatus.SENT),
        ("olga", Channel.EMAIL, DeliveryStatus.SENT),
    }
    assert BOB not in stage.mail.sent
    # One stream event, at commit, for every recipient; bob's stream had it at once.
    [event] = stage.hub.published
    assert inbox.get_nowait() == event
    assert event.type == "escalation.created"
    assert event.seq == 1
    assert event.audience == ACME_SENIORS_BUT_ALICE
    assert event.data["handoff_id"] == handoff.id
    assert event.data["problem_summary"] == SUMMARY
    assert event.data["actor_id"] == "alice"
    assert stage.hub.received_by(ACME, "alice") == []
    [push] = [d for d in await stage.deliveries(handoff.id) if d.channel is Channel.PUSH]
    assert push.stream_seq == 1


async def test_email_online_too_emails_everyone_and_pushes_to_those_online(stage: Stage) -> None:
    await stage.members.set_policy(ACME, {"email_online_too": True})
    stage.presence.enter(ACME, "bob")
    _, handoff = await stage.escalated()

    assert await stage.delivery.dispatch(ACME, handoff.id) == 4

    pairs = {(d.recipient_id, d.channel) for d in await stage.deliveries(handoff.id)}
    assert pairs == {("bob", Channel.PUSH)} | {(m, Channel.EMAIL) for m in ACME_SENIORS_BUT_ALICE}
    assert len(stage.mail.sent[BOB]) == 1


async def test_a_push_whose_member_left_falls_back_to_email(stage: Stage) -> None:
    stage.presence.enter(ACME, "bob")
    _, handoff = await stage.escalated()
    stage.presence.leave(ACME, "bob")

    assert await stage.delivery.dispatch(ACME, handoff.id) == 3

    bob = [
        (d.channel, d.status) for d in await stage.deliveries(handoff.id) if d.recipient_id == "bob"
    ]
    assert sorted(bob) == [
        (Channel.EMAIL, DeliveryStatus.SENT),
        (Channel.PUSH, DeliveryStatus.CANCELLED),
    ]
    assert len(stage.mail.sent[BOB]) == 1
    [push] = [d for d in await stage.deliveries(handoff.id) if d.channel is Channel.PUSH]
    assert push.last_error == "recipient had no live stream; sent by email instead"


async def test_with_email_online_too_a_vanished_push_is_not_a_second_email(stage: Stage) -> None:
    await stage.members.set_policy(ACME, {"email_online_too": True})
    stage.presence.enter(ACME, "bob")
    _, handoff = await stage.escalated()
    stage.presence.leave(ACME, "bob")

    assert await stage.delivery.dispatch(ACME, handoff.id) == 3

    assert len(stage.mail.sent[BOB]) == 1
    bob = [
        (d.channel, d.status) for d in await stage.deliveries(handoff.id) if d.recipient_id == "bob"
    ]
    assert sorted(bob) == [
        (Channel.EMAIL, DeliveryStatus.SENT),
        (Channel.PUSH, DeliveryStatus.CANCELLED),
    ]


async def test_escalation_still_works_when_presence_is_down() -> None:
    """Presence is a hint: if it cannot answer, everyone is reached by email."""

    class BrokenPresence:
        async def online(
            self, account_id: str, member_ids: Collection[str] | None = None
        ) -> frozenset[str]:
            raise ConnectionError("presence store unreachable")

    stage = build_stage()
    await seed_team(stage)
    stage.handoffs = type(stage.handoffs)(stage.db, stage.clock, presence=BrokenPresence())
    _, handoff = await stage.escalated()

    assert await stage.delivery.dispatch(ACME, handoff.id) == 3
    assert set(stage.mail.sent) == {address_of(ACME, m) for m in ACME_SENIORS_BUT_ALICE}


async def test_no_fallback_email_for_an_escalation_withdrawn_during_the_push(stage: Stage) -> None:
    """The escalator withdraws while the worker is between lease and record: nobody is mailed."""
    stage.presence.enter(ACME, "bob")
    _, handoff = await stage.escalated()

    class WithdrawnMeanwhile:
        async def online(
            self, account_id: str, member_ids: Collection[str] | None = None
        ) -> frozenset[str]:
            await stage.handoffs.withdraw(ACME, "alice", handoff.id)
            return frozenset()

    worker = DeliveryService(stage.db, stage.clock, stage.mail, presence=WithdrawnMeanwhile())
    await worker.dispatch(ACME, handoff.id)
    await stage.delivery.run_once()

    assert BOB not in stage.mail.sent
    statuses = {d.status for d in await stage.deliveries(handoff.id) if d.recipient_id == "bob"}
    assert DeliveryStatus.PENDING not in statuses


# --- reminders ----------------------------------------------------------------------------------


async def test_reminders_go_out_after_remind_after_up_to_max_reminders(stage: Stage) -> None:
    stage.presence.enter(ACME, "bob")  # presence is ignored for reminders: bob is emailed too
    session, handoff = await stage.escalated()
    await stage.delivery.dispatch(ACME, handoff.id)

    stage.clock.advance(599)
    assert await stage.delivery.remind_due() == 0
    stage.clock.advance(1)
    assert await stage.delivery.remind_due() == 1
    assert await stage.delivery.dispatch(ACME, handoff.id) == 3
    stage.clock.advance(600)
    assert await stage.delivery.remind_due() == 1
    assert await stage.delivery.dispatch(ACME, handoff.id) == 3
    stage.clock.advance(6000)
    assert await stage.delivery.remind_due() == 0

    reminders = [d for d in await stage.deliveries(handoff.id) if d.kind is NoticeKind.REMINDER]
    assert sorted((d.round, d.recipient_id, d.channel) for d in reminders) == sorted(
        (r, m, Channel.EMAIL) for r in (1, 2) for m in ACME_SENIORS_BUT_ALICE
    )
    subjects = [n.body.subject for n in stage.mail.sent[BOB]]
    assert subjects == [
        f"Reminder 1: still unclaimed: {SUMMARY}",
        f"Reminder 2: still unclaimed: {SUMMARY}",
    ]
    rounds = [
        e.data["round"]
        for e in await stage.timeline(session.id)
        if e.type is EventType.ESCALATION_REMINDED
    ]
    assert rounds == [1, 2]


async def test_a_reminder_carries_the_recipients_own_claim_link_good_for_a_fresh_ttl(
    stage: Stage,
) -> None:
    _, handoff = await stage.escalated()
    await stage.delivery.dispatch(ACME, handoff.id)
    stage.clock.advance(600)
    assert await stage.delivery.remind_due() == 1
    await stage.delivery.dispatch(ACME, handoff.id)
    first, reminder = stage.mail.sent[BOB][-2:]
    assert reminder.body.subject.startswith("Reminder 1")
    tokens = [re.findall(r"/claim/([\w.-]+)", n.body.text)[0] for n in (first, reminder)]
    tickets = [stage.links.read(t) for t in tokens]
    assert {(t.member_id, t.handoff_id) for t in tickets} == {("bob", handoff.id)}
    assert tickets[1].expires_at - tickets[0].expires_at == timedelta(seconds=600)


async def test_reminders_stop_at_claim(stage: Stage) -> None:
    _, handoff = await stage.escalated()
    stage.clock.advance(300)
    await stage.handoffs.claim(ACME, "bob", handoff.id)
    stage.clock.advance(3600)

    assert await stage.delivery.remind_due() == 0
    assert all(d.kind is NoticeKind.ESCALATION for d in await stage.deliveries(handoff.id))


async def test_reminders_stop_at_withdraw(stage: Stage) -> None:
    _, handoff = await stage.escalated()
    stage.clock.advance(600)
    assert await stage.delivery.remind_due() == 1
    await stage.handoffs.withdraw(ACME, "alice", handoff.id)
    stage.clock.advance(3600)

    assert await stage.delivery.remind_due() == 0
    assert await stage.delivery.run_once() == 0
    assert stage.mail.messages == []


async def test_a_member_removed_since_the_escalation_is_not_reminded(stage: Stage) -> None:
    _, handoff = await stage.escalated()
    await stage.members.remove(ACME, "carol")
    stage.clock.advance(600)
    await stage.delivery.remind_due()

    reminded = {
        d.recipient_id for d in await stage.deliveries(handoff.id) if d.kind is NoticeKind.REMINDER
    }
    assert reminded == {"bob", "olga"}


# --- the policy is copied into each escalation --------------------------------------------------


async def test_editing_the_policy_never_changes_an_escalation_in_flight(stage: Stage) -> None:
    await stage.members.set_policy(
        ACME, {"roles": ["admin", "owner"], "remind_after_seconds": 60, "max_reminders": 1}
    )
    _, handoff = await stage.escalated()
    await stage.members.set_policy(ACME, {"max_reminders": 0})

    assert handoff.policy == EscalationPolicy(
        roles=frozenset({Role.ADMIN, Role.OWNER}), remind_after_seconds=60, max_reminders=1
    )
    assert (await stage.handoff(handoff.id)).policy == handoff.policy
    stage.clock.advance(60)
    assert await stage.delivery.remind_due() == 1
    stage.clock.advance(600)
    assert await stage.delivery.remind_due() == 0
    recipients = {(d.kind, d.recipient_id) for d in await stage.deliveries(handoff.id)}
    assert recipients == {
        (k, m) for k in (NoticeKind.ESCALATION, NoticeKind.REMINDER) for m in ("carol", "olga")
    }

    # A new escalation takes the policy in force now: every senior, no reminders.
    _, later = await stage.escalated()
    assert later.policy == EscalationPolicy(max_reminders=0)
    assert {d.recipient_id for d in await stage.deliveries(later.id)} == ACME_SENIORS_BUT_ALICE


async def test_the_policy_is_per_account(stage: Stage) -> None:
    await stage.members.set_policy(ACME, {"roles": ["owner"]})

    _, theirs = await stage.escalated("oscar", account=OTHER)

    assert theirs.policy == EscalationPolicy()
    assert await stage.members.policy(OTHER) == EscalationPolicy()
    assert {d.recipient_id for d in await stage.deliveries(theirs.id, OTHER)} == {"zed"}


# --- retries ------------------------------------------------------------------------------------


async def test_a_deferred_address_is_retried_with_backoff_then_dead() -> None:
    stage = build_stage(retry=instant_retry(attempts=3))
    await seed_team(stage)
    stage.mail.defer.add(BOB)
    session, handoff = await stage.escalated()

    assert await stage.delivery.dispatch(ACME, handoff.id) == 2

    def bob() -> list[tuple[DeliveryStatus, int]]:
        return [(d.status, d.attempts) for d in deliveries if d.recipient_id == "bob"]

    deliveries = await stage.deliveries(handoff.id)
    assert bob() == [(DeliveryStatus.PENDING, 1)]
    [first] = [d for d in deliveries if d.recipient_id == "bob"]
    assert (first.next_attempt_at - stage.clock.now()).total_seconds() == 30
    assert first.last_error == "451 try again later"

    stage.clock.advance(29)
    assert await stage.delivery.run_once() == 0  # not due yet
    deliveries = await stage.deliveries(handoff.id)
    assert bob() == [(DeliveryStatus.PENDING, 1)]

    stage.clock.advance(1)
    await stage.delivery.run_once()
    deliveries = await stage.deliveries(handoff.id)
    assert bob() == [(DeliveryStatus.PENDING, 2)]

    stage.clock.advance(60)
    await stage.delivery.run_once()
    deliveries = await stage.deliveries(handoff.id)
    assert bob() == [(DeliveryStatus.DEAD, 3)]
    assert stage.mail.attempts == 2 + 3

    stage.clock.advance(120)
    stage.mail.defer.clear()
    await stage.delivery.dispatch(ACME, handoff.id)
    assert BOB not in stage.mail.sent
    dead = [e for e in await stage.timeline(session.id) if e.type is EventType.DELIVERY_DEAD]
    assert [e.data["recipient_id"] for e in dead] == ["bob"]


async def test_an_attempt_that_fails_after_the_escalation_was_claimed_is_cancelled() -> None:
    """A senior claims while the relay is still answering bob's message with a 4xx: bob's last
    attempt would make his delivery dead (an alarm about a notice nobody needs); it is
    cancelled instead, with the reason, and nothing retries it."""
    retry = instant_retry(attempts=1)
    stage = build_stage(retry=retry)
    await seed_team(stage)
    session, handoff = await stage.escalated()
    mail = stage.mail

    class ClaimedMeanwhile:
        async def send(
            self, notices: Sequence[Notice], withdrawn: Withdrawn | None = None
        ) -> list[SendOutcome]:
            # Already on their way: nothing is withdrawn any more.
            await stage.handoffs.claim(ACME, "carol", handoff.id)
            mail.defer.add(BOB)
            return await mail.send(notices)

    worker = DeliveryService(
        stage.db, stage.clock, ClaimedMeanwhile(), settings=DeliverySettings(retry=retry)
    )
    await worker.dispatch(ACME, handoff.id)

    [bob] = [d for d in await stage.deliveries(handoff.id) if d.recipient_id == "bob"]
    assert (bob.status, bob.attempts) == (DeliveryStatus.CANCELLED, 1)
    assert bob.last_error == (
        "the escalation was claimed while this was on its way; "
        "the attempt had failed: 451 try again later"
    )
    types = {e.type for e in await stage.timeline(session.id)}
    assert EventType.DELIVERY_DEAD not in types and EventType.DELIVERY_FAILED not in types


async def test_a_claim_while_a_batch_goes_out_stops_the_emails_not_yet_written() -> None:
    """SPEC §11: the claim commits after the first email of the batch went; the worker reads
    the escalation again while the batch is out, and the rest stay unsent, cancelled with the
    reason. The email that went counts as sent."""
    stage = build_stage()
    await seed_team(stage)
    _, handoff = await stage.escalated()
    mail = stage.mail
    claimed = False

    async def claim_after_the_first(_: Notice) -> None:
        nonlocal claimed
        if not claimed:
            claimed = True
            await stage.handoffs.claim(ACME, "carol", handoff.id)
            await asyncio.sleep(0.1)  # the worker reads the escalation again every 0.01 s

    mail.after_each = claim_after_the_first
    worker = DeliveryService(
        stage.db, stage.clock, mail, settings=DeliverySettings(recheck_seconds=0.01)
    )
    await worker.dispatch(ACME, handoff.id)

    emails = [d for d in await stage.deliveries(handoff.id) if d.channel is Channel.EMAIL]
    assert len(emails) >= 2
    [went] = [d for d in emails if d.status is DeliveryStatus.SENT]
    assert mail.messages and [n.delivery_id for n in mail.messages] == [went.id]
    stopped = [d for d in emails if d is not went]
    assert {(d.status, d.last_error, d.attempts) for d in stopped} == {
        (DeliveryStatus.CANCELLED, "the escalation was claimed before this was sent", 0)
    }


async def test_a_retried_message_keeps_its_message_id() -> None:
    stage = build_stage(retry=instant_retry())
    await seed_team(stage)
    stage.mail.defer.add(BOB)
    _, handoff = await stage.escalated()
    await stage.delivery.dispatch(ACME, handoff.id)

    stage.mail.defer.clear()
    stage.clock.advance(30)
    assert await stage.delivery.dispatch(ACME, handoff.id) == 1

    [delivery] = [d for d in await stage.deliveries(handoff.id) if d.recipient_id == "bob"]
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.SENT, 2)
    assert [n.message_id for n in stage.mail.sent[BOB]] == [delivery.message_id]


async def test_a_refused_address_fails_after_one_attempt(stage: Stage) -> None:
    stage.mail.refuse.add(BOB)
    session, handoff = await stage.escalated()

    assert await stage.delivery.dispatch(ACME, handoff.id) == 2
    stage.clock.advance(3 * 3600)
    await stage.delivery.dispatch(ACME, handoff.id)

    [delivery] = [
        d
        for d in await stage.deliveries(handoff.id)
        if d.recipient_id == "bob" and d.kind is NoticeKind.ESCALATION
    ]
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.FAILED, 1)
    assert delivery.last_error == "550 mailbox unavailable"
    failed = [e for e in await stage.timeline(session.id) if e.type is EventType.DELIVERY_FAILED]
    assert {e.data["delivery_id"] for e in failed} == {delivery.id}


async def test_the_message_names_the_escalator_notes_summary_and_claim_link() -> None:
    stage = build_stage(public_url="https://help.example/app/")
    await seed_team(stage)
    _, handoff = await stage.escalated(notes="Tried <b>everything</b>")
    await stage.delivery.dispatch(ACME, handoff.id)

    [notice] = stage.mail.sent[BOB]
    [token] = re.findall(r"https://help\.example/app/claim/([\w.-]+)", notice.body.text)
    assert f"https://help.example/app/claim/{token}" in notice.body.html
    ticket = stage.links.read(token)
    assert (ticket.account_id, ticket.member_id, ticket.handoff_id) == (ACME, "bob", handoff.id)
    assert notice.body.subject == f"Escalation: {SUMMARY}"
    for part in (notice.body.text, notice.body.html):
        assert "Alice" in part and "[claim-link-" not in part
    assert "Tried <b>everything</b>" in notice.body.text
    assert "Tried &lt;b&gt;everything&lt;/b&gt;" in notice.body.html
    assert notice.to_name == "Bob"
