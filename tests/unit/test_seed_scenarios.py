"""Every scenario of the seed's HandoffManager tests, restated against the library (SPEC §4, §5)."""

from __future__ import annotations

from tests.unit.stage import (
    ACME,
    ACME_SENIORS_BUT_ALICE,
    SUMMARY,
    Stage,
    address_of,
    build_stage,
)

from handoff_core import (
    DeliveryStatus,
    HandoffStatus,
    Intent,
    NoticeKind,
    SessionStatus,
)


async def test_park_creates_a_snapshot_and_pauses_the_session(stage: Stage) -> None:
    context = {"messages": [{"role": "user", "content": "help me"}], "confidence_tier": "discovery"}
    session = await stage.start(context=context)

    handoff = await stage.handoffs.park(
        ACME, "alice", session.id, "Waiting for client to provide logs"
    )

    assert handoff.intent is Intent.PARK
    assert handoff.status is HandoffStatus.OPEN
    assert handoff.engineer_notes == "Waiting for client to provide logs"
    assert handoff.snapshot["context"] == context
    assert handoff.snapshot["problem_summary"] == SUMMARY
    assert handoff.snapshot["status"] == "active"
    stored = await stage.session(session.id)
    assert stored.status is SessionStatus.PAUSED
    assert stored.handoff_count == 1
    assert stored.escalation_package is None


async def test_escalate_writes_the_escalation_package_with_the_snapshot(stage: Stage) -> None:
    session = await stage.start(context={"branch_map": {"root": ["dns", "auth"]}})

    handoff = await stage.handoffs.escalate(ACME, "alice", session.id, "Need senior help")

    assert handoff.intent is Intent.ESCALATE
    stored = await stage.session(session.id)
    assert stored.status is SessionStatus.ESCALATED
    assert stored.handoff_count == 1
    package = stored.escalation_package
    assert package is not None
    assert package["snapshot"] == handoff.snapshot
    assert package["snapshot"]["context"] == {"branch_map": {"root": ["dns", "auth"]}}
    assert package["handoff_id"] == handoff.id
    assert package["engineer_notes"] == "Need senior help"
    assert package["escalated_by"] == "alice"
    assert package["escalated_at"] == stage.clock.now().isoformat()


async def test_claim_sets_claimed_by_and_reactivates_the_session(stage: Stage) -> None:
    session, handoff = await stage.escalated(notes="Need help")
    stage.clock.advance(90)

    claimed = await stage.handoffs.claim(ACME, "carol", handoff.id)

    assert claimed.claimed_by == "carol"
    assert claimed.claimed_at == stage.clock.now()
    assert claimed.status is HandoffStatus.CLAIMED
    assert (await stage.handoff(handoff.id)).claimed_by == "carol"
    stored = await stage.session(session.id)
    assert stored.status is SessionStatus.ACTIVE
    assert stored.assignee_id == "carol"


async def test_dispatch_emails_exactly_the_eligible_teammates(stage: Stage) -> None:
    """Viewer, escalator, soft-deleted, inactive and other-account members hear nothing."""
    _, handoff = await stage.escalated(notes="Stuck on auth handshake")

    sent = await stage.delivery.dispatch(ACME, handoff.id)

    assert sent == 3
    expected = {address_of(ACME, m) for m in ACME_SENIORS_BUT_ALICE}
    assert set(stage.mail.sent) == expected
    assert all(len(stage.mail.sent[a]) == 1 for a in expected)
    for notice in stage.mail.messages:
        assert SUMMARY in notice.body.subject
        assert "Stuck on auth handshake" in notice.body.text
    deliveries = await stage.deliveries(handoff.id)
    assert {d.recipient_id for d in deliveries} == ACME_SENIORS_BUT_ALICE
    assert {d.status for d in deliveries} == {DeliveryStatus.SENT}


async def test_dispatch_of_a_park_sends_nothing(stage: Stage) -> None:
    session = await stage.start()
    park = await stage.handoffs.park(ACME, "alice", session.id, "waiting on customer")

    assert await stage.delivery.dispatch(ACME, park.id) == 0

    assert stage.mail.messages == []
    assert stage.mail.attempts == 0
    assert await stage.deliveries(park.id) == []


async def test_dispatch_survives_a_mail_sender_that_raises(stage: Stage) -> None:
    """Best effort: the handoff stands, nothing escapes, and the deliveries wait for a retry."""
    session, handoff = await stage.escalated(notes="help")
    stage.mail.fail_with = RuntimeError("SMTP down")

    assert await stage.delivery.dispatch(ACME, handoff.id) == 0

    assert (await stage.session(session.id)).status is SessionStatus.ESCALATED
    pending = await stage.deliveries(handoff.id)
    assert {d.recipient_id for d in pending} == ACME_SENIORS_BUT_ALICE
    for d in pending:
        assert d.status is DeliveryStatus.PENDING
        assert d.attempts == 1
        assert d.last_error is not None and "SMTP down" in d.last_error
        assert d.next_attempt_at > stage.clock.now()

    # SMTP comes back: the worker sends what waited, once each.
    stage.mail.fail_with = None
    stage.clock.advance(60)  # past the first backoff step (30 s at most), before any reminder
    assert await stage.delivery.dispatch(ACME, handoff.id) == 3
    assert set(stage.mail.sent) == {address_of(ACME, m) for m in ACME_SENIORS_BUT_ALICE}
    assert {d.status for d in await stage.deliveries(handoff.id)} == {DeliveryStatus.SENT}


async def test_escalating_with_one_teammate_notifies_that_teammate() -> None:
    """The seed's endpoint scenario at library level: escalate, then dispatch, one email out."""
    stage = build_stage()
    for member_id in ("alice", "t2"):
        await stage.members.upsert(
            ACME, member_id, email=address_of(ACME, member_id), name=member_id, role="engineer"
        )
    await stage.members.upsert(ACME, "audit", email="audit@acme.test", name="A", role="viewer")
    _, handoff = await stage.escalated(notes="Need help")

    assert await stage.delivery.dispatch(ACME, handoff.id) == 1

    assert [n.to_address for n in stage.mail.messages] == [address_of(ACME, "t2")]
    [delivery] = await stage.deliveries(handoff.id)
    assert delivery.kind is NoticeKind.ESCALATION
    assert stage.mail.messages[0].message_id == delivery.message_id
