"""SPEC §14 webhooks against a real HTTP receiver on 127.0.0.1: the library (memory adapters, a
manual clock for the outbox) with the real handoff_webhook sender."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from itertools import count

import pytest
from attrs import define
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from tests.support.receiver import HANG, Receiver, receiving

from handoff_core import (
    Channel,
    Delivery,
    DeliveryService,
    DeliverySettings,
    DeliveryStatus,
    EventType,
    HandoffService,
    MemberService,
    NoticeKind,
    Queries,
    RetrySchedule,
    ValidationError,
    WebhookService,
)
from handoff_memory import ManualClock, MemoryDatabase, RecordingMailSender
from handoff_webhook import HttpWebhookSender, TargetGuard, WebhookSettings

ACME = "acme"
SUMMARY = "VPN won't connect after Win update"
PUBLIC_URL = "https://handoff.example"


@define
class World:
    db: MemoryDatabase
    clock: ManualClock
    members: MemberService
    handoffs: HandoffService
    delivery: DeliveryService
    hooks: WebhookService
    queries: Queries
    sender: HttpWebhookSender
    receiver: Receiver

    async def endpoint(
        self, endpoint_id: str, path: str, events: list[str], format: str = "standard"
    ) -> str:
        """Register an endpoint posting to the receiver's `path`; its secret."""
        done = await self.hooks.put(
            ACME,
            "olga",
            endpoint_id,
            url=self.receiver.url(path),
            events=events,
            format=format,
        )
        assert done.created
        return done.endpoint.secret

    async def escalate(self) -> str:
        session = await self.handoffs.start_session(ACME, "erin", SUMMARY)
        return (await self.handoffs.escalate(ACME, "erin", session.id, "Stuck on auth")).id

    async def hooks_of(self, handoff_id: str) -> list[Delivery]:
        return [
            d
            for d in await self.queries.deliveries(ACME, "olga", handoff_id)
            if d.channel is Channel.WEBHOOK
        ]


async def make_world(receiver: Receiver, **settings: object) -> World:
    db = MemoryDatabase()
    clock = ManualClock()
    ids = count(1)

    def make_id() -> str:
        return f"id{next(ids):04d}"

    values: dict[str, object] = {"allow_private": True, "timeout_seconds": 5.0}
    values.update(settings)
    sender = HttpWebhookSender(WebhookSettings(**values))  # type: ignore[arg-type]
    retry = RetrySchedule(base_seconds=30, cap_seconds=60, attempts=3, uniform=lambda lo, hi: hi)
    world = World(
        db=db,
        clock=clock,
        members=MemberService(db, clock),
        handoffs=HandoffService(db, clock, make_id=make_id),
        delivery=DeliveryService(
            db,
            clock,
            RecordingMailSender(),
            settings=DeliverySettings(public_url=PUBLIC_URL, retry=retry),
            make_id=make_id,
            webhooks=sender,
        ),
        hooks=WebhookService(db, clock, sender.guard),
        queries=Queries(db),
        sender=sender,
        receiver=receiver,
    )
    for member_id, name, role in (
        ("olga", "Olga Owner", "owner"),
        ("erin", "Erin Escalator", "engineer"),
        ("eve", "Eve Engineer", "engineer"),
    ):
        await world.members.upsert(
            ACME, member_id, email=f"{member_id}@acme.test", name=name, role=role
        )
    return world


@pytest.fixture
async def world() -> AsyncIterator[World]:
    async with receiving() as receiver:
        built = await make_world(receiver)
        try:
            yield built
        finally:
            await built.sender.close()


async def test_a_standard_webhook_is_signed_and_verified_by_the_library(world: World) -> None:
    secret = await world.endpoint("ops", "ops", ["escalation.created", "escalation.claimed"])
    assert secret.startswith("whsec_")
    handoff_id = await world.escalate()
    assert await world.delivery.dispatch(ACME, handoff_id) >= 1

    [got] = world.receiver.got("ops")
    verified = Webhook(secret).verify(got.body, got.headers)
    assert verified["type"] == "escalation.created"
    data = verified["data"]
    assert (data["handoff_id"], data["problem_summary"], data["actor_id"]) == (
        handoff_id,
        SUMMARY,
        "erin",
    )
    assert data["engineer_notes"] == "Stuck on auth"
    [hook] = await world.hooks_of(handoff_id)
    assert got.headers["webhook-id"] == hook.id
    assert hook.status is DeliveryStatus.SENT
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "A" * 32).verify(got.body, got.headers)

    await world.handoffs.claim(ACME, "eve", handoff_id)
    await world.delivery.run_once()
    types = [r.json()["type"] for r in world.receiver.got("ops")]
    assert types == ["escalation.created", "escalation.claimed"]
    assert world.receiver.got("ops")[1].json()["data"]["claimed_by"] == "eve"


async def test_500_then_200_is_retried_and_sent_once(world: World) -> None:
    world.receiver.script["flaky"] = [500, 200]
    await world.endpoint("flaky", "flaky", ["escalation.created"])
    handoff_id = await world.escalate()
    await world.delivery.dispatch(ACME, handoff_id)
    [hook] = await world.hooks_of(handoff_id)
    assert (hook.status, hook.attempts, hook.last_error) == (
        DeliveryStatus.PENDING,
        1,
        "HTTP 500",
    )
    world.clock.advance(60)
    await world.delivery.run_once()
    world.clock.advance(3600)
    await world.delivery.run_once()
    [hook] = await world.hooks_of(handoff_id)
    assert (hook.status, hook.attempts) == (DeliveryStatus.SENT, 2)
    got = world.receiver.got("flaky")
    assert len(got) == 2
    assert got[0].headers["webhook-id"] == got[1].headers["webhook-id"]  # one message, twice
    session_id = (await world.queries.handoff(ACME, "olga", handoff_id)).session_id
    timeline = await world.queries.timeline(ACME, "olga", session_id)
    hooked = [e for e in timeline if e.data.get("channel") == "webhook"]
    assert [(e.type, e.data["attempts"]) for e in hooked] == [(EventType.DELIVERY_SENT, 2)]


async def test_410_fails_at_once_and_is_never_retried(world: World) -> None:
    world.receiver.script["gone"] = [410]
    await world.endpoint("gone", "gone", ["escalation.created"])
    handoff_id = await world.escalate()
    await world.delivery.dispatch(ACME, handoff_id)
    world.clock.advance(7200)
    await world.delivery.run_once()
    [hook] = await world.hooks_of(handoff_id)
    assert (hook.status, hook.attempts, hook.last_error) == (
        DeliveryStatus.FAILED,
        1,
        "HTTP 410",
    )
    assert len(world.receiver.got("gone")) == 1
    session_id = (await world.queries.handoff(ACME, "olga", handoff_id)).session_id
    timeline = await world.queries.timeline(ACME, "olga", session_id)
    hooked = [e for e in timeline if e.data.get("channel") == "webhook"]
    assert [(e.type, e.data["error"]) for e in hooked] == [(EventType.DELIVERY_FAILED, "HTTP 410")]


@pytest.mark.parametrize("status", [408, 429, 503])
async def test_408_429_and_5xx_are_retried(world: World, status: int) -> None:
    world.receiver.script["busy"] = [status, 200]
    await world.endpoint("busy", "busy", ["escalation.created"])
    handoff_id = await world.escalate()
    await world.delivery.dispatch(ACME, handoff_id)
    world.clock.advance(3600)
    await world.delivery.run_once()
    [hook] = await world.hooks_of(handoff_id)
    assert (hook.status, hook.attempts) == (DeliveryStatus.SENT, 2)


async def test_a_receiver_that_hangs_times_out_and_is_retried() -> None:
    async with receiving() as receiver:
        receiver.script["slow"] = [HANG, 200]
        world = await make_world(receiver, timeout_seconds=0.5)
        try:
            await world.endpoint("slow", "slow", ["escalation.created"])
            handoff_id = await world.escalate()
            await world.delivery.dispatch(ACME, handoff_id)
            [hook] = await world.hooks_of(handoff_id)
            assert hook.status is DeliveryStatus.PENDING
            assert "timed out" in (hook.last_error or "")
            world.clock.advance(3600)
            await world.delivery.run_once()
            [hook] = await world.hooks_of(handoff_id)
            assert (hook.status, hook.attempts) == (
                DeliveryStatus.SENT,
                2,
            )
        finally:
            await world.sender.close()


async def test_an_endpoint_that_hangs_never_holds_back_the_others() -> None:
    async with receiving() as receiver:
        receiver.script["slow"] = [HANG]
        world = await make_world(receiver, timeout_seconds=30.0, per_endpoint=1)
        try:
            await world.endpoint("slow", "slow", ["escalation.created"])
            await world.endpoint("fast", "fast", ["escalation.created"])
            handoffs = [await world.escalate() for _ in range(3)]
            pass_ = asyncio.create_task(world.delivery.run_once())
            for _ in range(500):  # bounded: 10 s at most
                hooks = [d for h in handoffs for d in await world.hooks_of(h)]
                fast = [d for d in hooks if d.recipient_id == "fast"]
                if all(d.status is DeliveryStatus.SENT for d in fast):
                    break
                await asyncio.sleep(0.02)
            # Every fast delivery is sent and recorded while the slow endpoint still holds its
            # one slot with the first request, the other two waiting behind it.
            assert len(world.receiver.got("fast")) == 3
            assert all(d.status is DeliveryStatus.SENT for d in fast)
            assert len(world.receiver.got("slow")) == 1
            assert not pass_.done()
            receiver.release.set()
            await asyncio.wait_for(pass_, timeout=10)
            hooks = [d for h in handoffs for d in await world.hooks_of(h)]
            assert {d.status for d in hooks} == {DeliveryStatus.SENT}
            assert len(world.receiver.got("slow")) == 3
        finally:
            await world.sender.close()


async def test_the_slack_format_posts_a_message_slack_accepts(world: World) -> None:
    await world.endpoint("chat", "chat", ["escalation.created"], format="slack")
    handoff_id = await world.escalate()
    await world.delivery.dispatch(ACME, handoff_id)
    [got] = world.receiver.got("chat")
    body = got.json()
    assert set(body) == {"text", "blocks"}
    assert isinstance(body["text"], str) and SUMMARY.replace("'", "'") in body["text"]
    assert body["blocks"], "at least one block"
    for block in body["blocks"]:
        assert block["type"] == "section"
        assert block["text"]["type"] == "mrkdwn"
        assert 0 < len(block["text"]["text"]) <= 3000
    shown = "\n".join(b["text"]["text"] for b in body["blocks"])
    assert "Erin Escalator" in shown
    assert SUMMARY in shown
    assert f"<{PUBLIC_URL}/|Claim this escalation>" in shown  # the inbox: a channel has no one


async def test_slack_markup_in_a_summary_is_shown_not_obeyed(world: World) -> None:
    """`<!channel>` would page a whole channel and `<https://…|…>` would be a disguised link, in
    the notification text as much as in the blocks."""
    await world.endpoint("chat", "chat", ["escalation.created"], format="slack")
    hostile = "<!channel> VPN & <https://evil.example|Claim here>"
    session = await world.handoffs.start_session(ACME, "erin", hostile)
    handoff_id = (await world.handoffs.escalate(ACME, "erin", session.id, "<@U123> look")).id
    await world.delivery.dispatch(ACME, handoff_id)
    [got] = world.receiver.got("chat")
    body = got.json()
    shown = [body["text"], *(b["text"]["text"] for b in body["blocks"])]
    escaped = "&lt;!channel&gt; VPN &amp; &lt;https://evil.example|Claim here&gt;"
    assert escaped in body["text"] and escaped in shown[1]
    assert "&lt;@U123&gt; look" in shown[1]
    for text in shown:
        assert "<!channel>" not in text and "<https://evil" not in text and "<@U123>" not in text


async def test_no_log_line_carries_a_webhook_urls_path_or_query(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """A Slack or Teams webhook URL is the secret itself: httpx's request line names the host."""
    secret_path = "services-T0001-B0001-SuperSecretPath"
    await world.hooks.put(
        ACME, "olga", "slacky", url=world.receiver.url(f"{secret_path}?token=hunter2"),
        events=["escalation.created"], format="slack",
    )  # fmt: skip
    with caplog.at_level(logging.DEBUG):
        handoff_id = await world.escalate()
        await world.delivery.dispatch(ACME, handoff_id)
    assert len(world.receiver.got(secret_path)) == 1
    # Ours and httpx's (uvicorn's lines are the receiver's, the far end's, own log).
    lines = [r.getMessage() for r in caplog.records if not r.name.startswith("uvicorn")]
    assert any(line.startswith("HTTP Request: POST http://127.0.0.1:") for line in lines), lines
    assert not [line for line in lines if "SuperSecret" in line or "hunter2" in line]


async def test_a_claim_stops_pending_announcements_but_the_claim_itself_goes(
    world: World,
) -> None:
    await world.endpoint("ops", "ops", ["escalation.created", "escalation.claimed"])
    handoff_id = await world.escalate()
    await world.handoffs.claim(ACME, "eve", handoff_id)  # before anything was sent
    await world.delivery.run_once()
    assert [r.json()["type"] for r in world.receiver.got("ops")] == ["escalation.claimed"]
    hooks = {d.kind: d for d in await world.hooks_of(handoff_id)}
    assert hooks[NoticeKind.ESCALATION].status is DeliveryStatus.CANCELLED
    assert hooks[NoticeKind.CLOSURE].status is DeliveryStatus.SENT


async def test_a_removed_endpoint_gets_nothing_more(world: World) -> None:
    await world.endpoint("ops", "ops", ["escalation.created"])
    handoff_id = await world.escalate()
    await world.hooks.remove(ACME, "olga", "ops")
    await world.delivery.dispatch(ACME, handoff_id)
    assert world.receiver.got("ops") == []
    [hook] = await world.hooks_of(handoff_id)
    assert hook.status is DeliveryStatus.CANCELLED
    assert "removed" in (hook.last_error or "")


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook",
        "http://localhost/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://0.0.0.0/hook",
    ],
)
async def test_a_private_target_is_refused_without_the_setting(url: str) -> None:
    db = MemoryDatabase()
    clock = ManualClock()
    members = MemberService(db, clock)
    await members.upsert(ACME, "olga", email="olga@acme.test", name="Olga", role="owner")
    hooks = WebhookService(db, clock, TargetGuard(allow_private=False))
    with pytest.raises(ValidationError) as caught:
        await hooks.put(ACME, "olga", "x", url=url, events=["escalation.created"])
    assert caught.value.field == "url"
    assert await hooks.endpoints(ACME, "olga") == []
    allowed = WebhookService(db, clock, TargetGuard(allow_private=True))
    assert (await allowed.put(ACME, "olga", "x", url=url, events=["escalation.claimed"])).created


@pytest.mark.parametrize("url", ["https://a..b/hook", "https://" + "x" * 64 + ".test/hook"])
async def test_a_host_no_resolver_can_even_ask_for_is_refused_plainly(url: str) -> None:
    # an empty or over-long label makes the resolver's IDNA step raise UnicodeError, not OSError
    db = MemoryDatabase()
    clock = ManualClock()
    await MemberService(db, clock).upsert(
        ACME, "olga", email="olga@acme.test", name="Olga", role="owner"
    )
    hooks = WebhookService(db, clock, TargetGuard(allow_private=False))
    with pytest.raises(ValidationError) as caught:
        await hooks.put(ACME, "olga", "x", url=url, events=["escalation.created"])
    assert caught.value.field == "url" and "cannot be resolved" in str(caught.value)
    assert await hooks.endpoints(ACME, "olga") == []


async def test_a_private_target_is_refused_at_send_time_too(world: World) -> None:
    """Registered while allowed (or its name re-pointed since): the sender checks again."""
    await world.endpoint("ops", "ops", ["escalation.created"])
    world.sender.guard.allow_private = False
    handoff_id = await world.escalate()
    await world.delivery.dispatch(ACME, handoff_id)
    assert world.receiver.got("ops") == []
    [hook] = await world.hooks_of(handoff_id)
    assert hook.status is DeliveryStatus.FAILED
    assert "private" in (hook.last_error or "")
