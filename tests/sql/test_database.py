"""URL options, SQLite's locking settings, and concurrency through the real services."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa

from handoff_core import DeliveryService, HandoffService, MemberService
from handoff_core.model import DeliveryStatus
from handoff_memory import ManualClock, RecordingMailSender
from handoff_sql import BadDatabaseUrl, DatabaseUrl, SqlDatabase
from handoff_sql.tables import members


def test_pool_settings_come_from_the_url(tmp_path: Path) -> None:
    target = DatabaseUrl.parse(
        "postgresql+asyncpg://app:pw@db.internal/handoff"
        "?pool_size=7&max_overflow=3&pool_timeout=2.5&pool_recycle=600&pool_pre_ping=true"
        "&connect_timeout=4&ssl=require"
    )
    assert target.pool == {
        "pool_size": 7,
        "max_overflow": 3,
        "pool_timeout": 2.5,
        "pool_recycle": 600,
        "pool_pre_ping": True,
    }
    assert target.connect_timeout == 4
    assert target.url.query == {"ssl": "require"}
    assert "pw" not in target.show()


async def test_the_engine_uses_the_urls_pool_size(tmp_path: Path) -> None:
    db = SqlDatabase(f"sqlite+aiosqlite:///{tmp_path / 'h.db'}?pool_size=3&max_overflow=1")
    try:
        pool = db.engine.pool
        assert (pool.size(), pool._max_overflow) == (3, 1)  # type: ignore[attr-defined]
    finally:
        await db.close()


def test_short_schemes_get_the_async_drivers() -> None:
    assert DatabaseUrl.parse("postgresql://u@h/db").url.drivername == "postgresql+asyncpg"
    assert DatabaseUrl.parse("postgres://u@h/db").url.drivername == "postgresql+asyncpg"
    assert DatabaseUrl.parse("sqlite:///./x.db").url.drivername == "sqlite+aiosqlite"


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("mysql://u@h/db", "'mysql' is not supported"),
        ("not a url", "is not a URL"),
        ("sqlite+aiosqlite:///./x.db?pool_size=lots", "pool_size='lots' must be an integer"),
        ("sqlite+aiosqlite:///./x.db?busy_timeout=-1", "must not be negative"),
        ("sqlite+aiosqlite:///./x.db?pool_pre_ping=maybe", "must be true or false"),
        ("sqlite+aiosqlite:///./x.db?pool_size=1&pool_size=2", "more than once"),
        ("sqlite+aiosqlite://", "in-memory SQLite"),
        ("sqlite+aiosqlite:///:memory:", "in-memory SQLite"),
        ("postgresql+asyncpg://u@h/db?pool_sise=3", "pool_sise are not known"),
        ("postgresql+asyncpg://u@h/db?connect_timeout=1e999", "must be a finite number"),
        ("postgresql+asyncpg://u@h/db?connect_timeout=nan", "must be a finite number"),
        ("postgresql+asyncpg://u@h/db?connect_timeout=86400", "at most 3600 seconds"),
        ("sqlite+aiosqlite:///./x.db?busy_timeout=1e300", "at most 3600 seconds"),
        ("postgresql+asyncpg://u@h/db?pool_timeout=inf", "must be a finite number"),
        ("postgresql+asyncpg://u@127.0.0.1:99999/db", "port 99999 is not a port number"),
        ("postgresql+asyncpg://u@127.0.0.1:0/db", "port 0 is not a port number"),
        ("postgresql+asyncpg://u@127.0.0.1:abc/db", "is not a URL"),
        ("postgresql+asyncpg://u@[::1/db", "is not a URL"),
        ("postgresql+asyncpg://u@bad\udcffhost/db", "valid UTF-8"),
        ("postgresql+asyncpg://u@a<b>/db", "host 'a<b>' is not a host name"),
    ],
)
def test_a_bad_url_is_refused_with_a_clear_reason(url: str, words: str) -> None:
    with pytest.raises(BadDatabaseUrl, match=words):
        SqlDatabase(url)


async def test_sqlite_runs_in_wal_mode_with_foreign_keys(sqlite_url: str) -> None:
    db = SqlDatabase(sqlite_url)
    try:
        async with db.engine.connect() as conn:
            mode = (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar()
            fks = (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar()
            busy = (await conn.exec_driver_sql("PRAGMA busy_timeout")).scalar()
    finally:
        await db.close()
    assert (mode, fks) == ("wal", 1)
    assert busy == 15_000


_WRITER = """
import asyncio, sys
from handoff_core import MemberService
from handoff_memory import ManualClock
from handoff_sql import SqlDatabase

async def main() -> None:
    db = SqlDatabase(sys.argv[1])
    service = MemberService(db, ManualClock())
    for i in range(40):
        await service.upsert("acme", f"other{i}", email=f"o{i}@acme.test", name="o", role="viewer")
    await db.close()

asyncio.run(main())
"""


async def test_writers_in_two_processes_both_succeed_on_sqlite(sqlite_url: str) -> None:
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", textwrap.dedent(_WRITER), sqlite_url, stderr=subprocess.PIPE
    )
    db = SqlDatabase(sqlite_url)
    service = MemberService(db, ManualClock())
    try:
        await asyncio.gather(
            *(
                service.upsert("acme", f"here{i}", email=f"h{i}@acme.test", name="h", role="viewer")
                for i in range(40)
            )
        )
        _, errors = await asyncio.wait_for(child.communicate(), timeout=60)
        assert child.returncode == 0, errors.decode()
        async with db.engine.connect() as conn:
            count = (await conn.execute(sa.select(sa.func.count()).select_from(members))).scalar()
    finally:
        await db.close()
    assert count == 80


async def test_concurrent_workers_send_each_delivery_once(sql_db: SqlDatabase) -> None:
    clock = ManualClock()
    team = MemberService(sql_db, clock)
    await team.upsert("acme", "esc", email="esc@acme.test", name="Esc", role="engineer")
    for i in range(40):
        await team.upsert("acme", f"s{i}", email=f"s{i}@acme.test", name="S", role="engineer")
    service = HandoffService(sql_db, clock)
    session = await service.start_session("acme", "esc", "fan-out")
    handoff = await service.escalate("acme", "esc", session.id, "")
    mail = RecordingMailSender()
    workers = [DeliveryService(sql_db, clock, mail, worker_id=f"w{i}") for i in range(4)]
    for worker in workers:
        worker._settings.batch_size = 7
    sent = 0
    while True:
        passes = await asyncio.gather(*(w.run_once() for w in workers))
        if not any(passes):
            break
        sent += sum(passes)
    assert sent == 40
    assert all(len(notices) == 1 for notices in mail.sent.values())
    assert len(mail.sent) == 40
    async with sql_db() as uow:
        stored = await uow.deliveries.for_handoff("acme", handoff.id)
    assert {d.status for d in stored} == {DeliveryStatus.SENT}


async def test_the_same_idempotency_key_at_once_makes_one_handoff(sql_db: SqlDatabase) -> None:
    clock = ManualClock()
    await MemberService(sql_db, clock).upsert(
        "acme", "alice", email="a@acme.test", name="A", role="engineer"
    )
    service = HandoffService(sql_db, clock)
    session = await service.start_session("acme", "alice", "vpn")
    results = await asyncio.gather(
        *(service.park("acme", "alice", session.id, "wait", idempotency_key="k") for _ in range(5)),
        return_exceptions=True,
    )
    assert all(not isinstance(r, BaseException) for r in results), results
    assert len({r.id for r in results}) == 1  # type: ignore[union-attr]
    async with sql_db() as uow:
        assert len(await uow.handoffs.for_session("acme", session.id)) == 1
