"""Presence in the database: every process sees every live stream until it leaves or lapses."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa
from tests.support.net import free_port

from handoff_core import DeliveryService, HandoffService, MemberService
from handoff_core.errors import StorageUnavailable
from handoff_core.model import Channel
from handoff_core.services.common import StreamAnnouncer
from handoff_memory import ManualClock, RecordingMailSender, RecordingPushHub
from handoff_sql import SqlDatabase


async def test_enter_heartbeat_leave_and_lapse(sql_db: SqlDatabase) -> None:
    clock = ManualClock()
    presence = sql_db.presence(clock)
    first = await presence.enter("acme", "bob", 30)
    second = await presence.enter("acme", "bob", 30)
    assert first != second
    await presence.enter("acme", "carol", 30, stream_id="stream-3")
    await presence.enter("globex", "dan", 30, stream_id="stream-4")
    assert await presence.online("acme", ["bob", "carol", "dan", "erin"]) == {"bob", "carol"}
    assert await presence.online("globex", ["bob", "dan"]) == {"dan"}
    assert await presence.online("acme", []) == frozenset()

    await presence.leave(first)
    assert await presence.online("acme", ["bob"]) == {"bob"}  # the second stream is still open
    clock.advance(20)
    await presence.heartbeat(second, ttl_seconds=30)
    clock.advance(15)  # stream-3 lapsed at 30 s; the second was renewed until 50 s
    assert await presence.online("acme", ["bob", "carol"]) == {"bob"}
    assert await presence.purge() == 2  # stream-3 and stream-4
    await presence.leave(second)
    await presence.leave("never-existed")
    assert await presence.online("acme", ["bob", "carol"]) == frozenset()


async def test_a_heartbeat_puts_back_a_stream_that_lapsed(sql_url: str) -> None:
    """A process paused past the ttl, or another process purged the row: the stream is still
    open here, so the next heartbeat makes it visible again."""
    clock = ManualClock()
    here, there = SqlDatabase(sql_url), SqlDatabase(sql_url)
    try:
        mine = here.presence(clock)
        stream = await mine.enter("acme", "bob", 30)
        clock.advance(31)
        assert await there.presence(clock).purge() == 1
        assert await there.presence(clock).online("acme", ["bob"]) == frozenset()
        await mine.heartbeat(stream, 30)
        assert await there.presence(clock).online("acme", ["bob"]) == {"bob"}
        await there.presence(clock).heartbeat("someone-elses", 30)  # unknown: nothing to renew
        assert await there.presence(clock).purge() == 0
    finally:
        await here.close()
        await there.close()


async def test_another_process_sees_the_streams(sql_url: str) -> None:
    clock = ManualClock()
    here, there = SqlDatabase(sql_url), SqlDatabase(sql_url)
    try:
        await here.presence(clock).enter("acme", "bob", 60)
        assert await there.presence(clock).online("acme", ["bob"]) == {"bob"}
    finally:
        await here.close()
        await there.close()


async def test_a_large_team_is_asked_in_chunks(sql_db: SqlDatabase) -> None:
    presence = sql_db.presence(ManualClock())
    await presence.enter("acme", "m2500", 60)
    members = [f"m{i}" for i in range(3000)]
    assert await presence.online("acme", members) == {"m2500"}


async def test_a_ttl_must_be_positive(sql_db: SqlDatabase) -> None:
    with pytest.raises(ValueError, match="ttl_seconds"):
        await sql_db.presence().enter("acme", "bob", 0)


async def test_escalation_pushes_to_those_online_and_emails_the_rest(sql_db: SqlDatabase) -> None:
    """Presence is read in the middle of the escalation's unit of work (on SQLite while it holds
    the write lock): it must not wait for that lock."""
    clock = ManualClock()
    presence = sql_db.presence(clock)
    members = MemberService(sql_db, clock)
    for member_id in ("alice", "bob", "carol"):
        await members.upsert(
            "acme", member_id, email=f"{member_id}@acme.test", name=member_id, role="engineer"
        )
    await presence.enter("acme", "bob", 60)
    hub, mail = RecordingPushHub(), RecordingMailSender()
    service = HandoffService(sql_db, clock, presence=presence, announcer=StreamAnnouncer(hub))
    delivery = DeliveryService(sql_db, clock, mail, presence=presence)
    session = await service.start_session("acme", "alice", "printer")
    handoff = await service.escalate("acme", "alice", session.id, "help")
    async with sql_db() as uow:
        planned = await uow.deliveries.for_handoff("acme", handoff.id)
    assert {(d.recipient_id, d.channel) for d in planned} == {
        ("bob", Channel.PUSH),
        ("carol", Channel.EMAIL),
    }
    assert await delivery.dispatch("acme", handoff.id) == 2
    assert [(e.seq, e.data["handoff_id"]) for e in hub.received_by("acme", "bob")] == [
        (1, handoff.id)
    ]
    assert sorted(mail.sent) == ["carol@acme.test"]


async def test_heartbeats_close_together_are_renewed_in_one_transaction(
    sql_db: SqlDatabase,
) -> None:
    """300 streams beating at once (a process that opened them in a burst) cost one renewal,
    not 300 transactions; every one of them is renewed, and a lapsed one of ours is put back."""
    clock = ManualClock()
    presence = sql_db.presence(clock)
    streams = [await presence.enter("acme", f"m{i}", 30) for i in range(300)]
    clock.advance(20)
    await presence.enter("acme", "m0", 1, stream_id=streams[0])  # this one lapses at 21 s
    clock.advance(2)
    assert await presence.purge() == 1  # and is gone from the table, as another process would do
    assert len(await presence.online("acme")) == 299
    began: list[str] = []

    def counted(conn: object) -> None:
        began.append("BEGIN")

    sa.event.listen(sql_db.engine.sync_engine, "begin", counted)
    try:
        await asyncio.gather(*(presence.heartbeat(s, 30) for s in streams))
    finally:
        sa.event.remove(sql_db.engine.sync_engine, "begin", counted)
    assert len(began) == 2  # one renewal, and one put-back for the purged stream
    assert await presence.online("acme") == {f"m{i}" for i in range(300)}
    clock.advance(29)
    assert len(await presence.online("acme")) == 300


async def test_every_heartbeat_of_a_batch_hears_that_the_database_is_down() -> None:
    presence = SqlDatabase(f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/x").presence()
    outcomes = await asyncio.gather(
        *(presence.heartbeat(f"s{i}", 30) for i in range(5)), return_exceptions=True
    )
    assert all(isinstance(o, StorageUnavailable) for o in outcomes), outcomes
    assert all("renew live streams" in str(o) for o in outcomes)
