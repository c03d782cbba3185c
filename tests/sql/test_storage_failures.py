"""Losing the database surfaces as StorageUnavailable with a clear detail, and leaves nothing
half written."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from tests.support.net import free_port

from handoff_core import HandoffService, MemberService, StorageUnavailable
from handoff_core.model import EscalationPolicy, EventType, Handoff, Intent, TimelineEvent
from handoff_memory import ManualClock
from handoff_sql import SqlDatabase


@pytest.mark.postgres
async def test_a_postgres_port_with_nothing_listening(pg_url: str) -> None:
    port = free_port()
    db = SqlDatabase(f"postgresql+asyncpg://postgres:s3cret@127.0.0.1:{port}/handoff")
    try:
        with pytest.raises(StorageUnavailable) as failed:
            await MemberService(db, ManualClock()).upsert(
                "acme", "alice", email="a@acme.test", name="A", role="engineer"
            )
    finally:
        await db.close()
    detail = failed.value.detail
    assert detail.startswith("storage unavailable")
    assert f"127.0.0.1:{port}" in detail and "refused" in detail.lower()
    assert "s3cret" not in detail
    # no transaction was ever open: the detail does not say one was rolled back
    assert detail.endswith("nothing was written") and "rolled back" not in detail


async def test_a_sqlite_file_that_cannot_be_opened(tmp_path: Path) -> None:
    db = SqlDatabase(f"sqlite+aiosqlite:///{tmp_path / 'missing-folder' / 'handoff.db'}")
    try:
        with pytest.raises(StorageUnavailable) as failed:
            await MemberService(db, ManualClock()).members("acme")
    finally:
        await db.close()
    assert "unable to open database file" in failed.value.detail


async def _setup(db: SqlDatabase) -> tuple[Any, str]:
    clock = ManualClock()
    await MemberService(db, clock).upsert(
        "acme", "alice", email="alice@acme.test", name="Alice", role="engineer"
    )
    session = await HandoffService(db, clock).start_session("acme", "alice", "vpn")
    return session, session.id


async def _half_an_escalation(uow: Any, session: Any) -> Handoff:
    handoff = Handoff(
        id="h1",
        account_id="acme",
        session_id=session.id,
        intent=Intent.ESCALATE,
        engineer_notes="",
        created_by="alice",
        created_at=session.created_at,
        snapshot=session.snapshot(),
        policy=EscalationPolicy(),
    )
    working = await uow.sessions.get("acme", session.id)
    working.problem_summary = "half written"
    await uow.sessions.update(working)
    await uow.handoffs.add(handoff)
    return handoff


async def _nothing_half_written(db: SqlDatabase, session: Any) -> None:
    async with db() as uow:
        assert await uow.sessions.get("acme", session.id) == session
        assert await uow.handoffs.get("acme", "h1") is None
        assert await uow.deliveries.for_handoff("acme", "h1") == []
        assert [e.type for e in await uow.timeline.for_session("acme", session.id)] == [
            EventType.SESSION_CREATED
        ]


async def _terminate(db: SqlDatabase, pid: int) -> None:
    async with db.engine.connect() as conn:
        await conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})


@pytest.mark.postgres
@pytest.mark.parametrize("when", ["mid-statement", "before-commit"])
async def test_a_backend_terminated_mid_unit_of_work(pg_db: SqlDatabase, when: str) -> None:
    sql_db = pg_db
    session, _ = await _setup(sql_db)
    killer = SqlDatabase(str(sql_db.target.url))
    try:
        with pytest.raises(StorageUnavailable) as failed:
            async with sql_db() as uow:
                pid = (await uow.execute(sa.text("SELECT pg_backend_pid()"))).scalar_one()
                await _half_an_escalation(uow, session)
                if when == "mid-statement":
                    kill = asyncio.create_task(_terminate(killer, pid))
                    await uow.execute(sa.text("SELECT pg_sleep(5)"))
                    await kill
                else:
                    await _terminate(killer, pid)
                    await uow.timeline.add(
                        TimelineEvent(
                            account_id="acme",
                            session_id=session.id,
                            type=EventType.SESSION_ESCALATED,
                            at=session.created_at,
                            handoff_id="h1",
                        )
                    )
                await uow.commit()
    finally:
        await killer.close()
    assert failed.value.detail.startswith("storage unavailable")
    assert "nothing was written" in failed.value.detail
    await _nothing_half_written(sql_db, session)


def _hold_write_lock(path: str, release: threading.Event, holding: threading.Event) -> None:
    """Another process's writer, as SQLite sees it: a connection holding the write lock."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE members SET name = name")
        holding.set()
        release.wait(timeout=10)
        conn.execute("COMMIT")
    finally:
        conn.close()


@asynccontextmanager
async def _write_lock_held(sqlite_url: str) -> AsyncIterator[threading.Event]:
    """The file's write lock is held by another writer for the block, or until the event the
    block gets is set."""
    path = sqlite_url.removeprefix("sqlite+aiosqlite:///")
    release, holding = threading.Event(), threading.Event()
    holder = threading.Thread(target=_hold_write_lock, args=(path, release, holding))
    holder.start()
    try:
        assert await asyncio.to_thread(holding.wait, 5)
        yield release
    finally:
        release.set()
        await asyncio.to_thread(holder.join)


async def test_sqlite_busy_past_the_timeout_is_unavailable_and_writes_nothing(
    sqlite_url: str,
) -> None:
    db = SqlDatabase(sqlite_url)
    session, _ = await _setup(db)
    await db.close()
    impatient = SqlDatabase(sqlite_url + "?busy_timeout=0.2")
    async with _write_lock_held(sqlite_url):
        with pytest.raises(StorageUnavailable) as failed:
            async with impatient() as uow:
                await _half_an_escalation(uow, session)
                await uow.commit()
    assert "database is locked" in failed.value.detail
    await _nothing_half_written(impatient, session)
    await impatient.close()


async def test_sqlite_writers_wait_for_the_lock_instead_of_failing(sqlite_url: str) -> None:
    db = SqlDatabase(sqlite_url)
    session, _ = await _setup(db)
    async with _write_lock_held(sqlite_url) as release:
        asyncio.get_running_loop().call_later(0.3, release.set)
        async with db() as uow:
            await _half_an_escalation(uow, session)
            await uow.commit()
    async with db() as uow:
        assert await uow.handoffs.get("acme", "h1") is not None
    await db.close()
