"""The stores every contract test runs against: memory, SQLite (a temp file) and PostgreSQL.

PostgreSQL gets one fresh database with a random name for the whole test session, emptied before
each test and dropped at the end; its tests are skipped (with the reason) only when nothing
answers at 127.0.0.1:5432.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import shutil
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest
import sqlalchemy as sa

from handoff_core.model import (
    Channel,
    Delivery,
    EscalationPolicy,
    Handoff,
    Intent,
    Member,
    NoticeKind,
    Role,
    Session,
    SessionStatus,
)
from handoff_core.ports import UnitOfWorkFactory
from handoff_memory import MemoryDatabase
from handoff_sql import SqlDatabase, upgrade
from handoff_sql.tables import ALL_TABLES

PG_HOST, PG_PORT = "127.0.0.1", 5432
PG_ADMIN = os.environ.get(
    "HANDOFF_TEST_PG_ADMIN", f"postgresql://postgres@{PG_HOST}:{PG_PORT}/test"
)
T = TypeVar("T")


def blocking(make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion from anywhere, even inside a running loop (a fixture)."""

    async def run() -> T:
        return await make()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, run()).result()


def postgres_reachable() -> bool:
    try:
        with socket.create_connection((PG_HOST, PG_PORT), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    if not postgres_reachable():
        pytest.skip(f"PostgreSQL is not reachable at {PG_HOST}:{PG_PORT}")
    name = f"handoff_contract_{uuid.uuid4().hex[:12]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(PG_ADMIN)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    blocking(lambda: admin(f'CREATE DATABASE "{name}"'))
    url = f"postgresql+asyncpg://postgres@{PG_HOST}:{PG_PORT}/{name}"
    try:
        blocking(lambda: upgrade(url))
        yield url
    finally:
        blocking(lambda: admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test: faster than migrating each time."""
    path = tmp_path_factory.mktemp("template") / "handoff.db"
    blocking(lambda: upgrade(f"sqlite+aiosqlite:///{path}"))
    return path


BACKENDS = ["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[UnitOfWorkFactory]:
    """A unit-of-work factory over an empty store."""
    if request.param == "memory":
        yield MemoryDatabase()
        return
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "handoff.db"
        shutil.copy(template, path)
        database = SqlDatabase(f"sqlite+aiosqlite:///{path}")
    else:
        database = SqlDatabase(request.getfixturevalue("pg_url"), pool_size=10, max_overflow=10)
        async with database.engine.begin() as conn:
            for table in ALL_TABLES:  # DELETE beats TRUNCATE on tables this small
                await conn.execute(sa.delete(table))
    await database.start()
    try:
        yield database
    finally:
        await database.close()


# --- building blocks ----------------------------------------------------------------------------

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def new_id() -> str:
    return uuid.uuid4().hex


class Make:
    """Builds domain objects and stores them through the ports, each in its own unit of work."""

    T0 = T0

    def __init__(self, db: UnitOfWorkFactory) -> None:
        self.db = db

    @staticmethod
    def at(seconds: float) -> datetime:
        return at(seconds)

    @staticmethod
    def id() -> str:
        return new_id()

    async def member(
        self, account: str, member_id: str, role: Role = Role.ENGINEER, **changes: Any
    ) -> Member:
        member = Member(
            id=member_id,
            account_id=account,
            email=f"{member_id}@{account}.test",
            name=member_id.title(),
            role=role,
            **changes,
        )
        async with self.db() as uow:
            await uow.members.save(member)
            await uow.commit()
        return member

    def session_object(self, account: str, owner: str = "alice", **changes: Any) -> Session:
        values: dict[str, Any] = {
            "id": new_id(),
            "account_id": account,
            "owner_id": owner,
            "assignee_id": owner,
            "status": SessionStatus.ACTIVE,
            "problem_summary": "VPN won't connect after Win update",
            "context": {"messages": [{"role": "user", "text": "it fails"}], "tier": 2},
            "created_at": T0,
            "updated_at": T0,
        }
        values.update(changes)
        return Session(**values)

    async def session(self, account: str, owner: str = "alice", **changes: Any) -> Session:
        session = self.session_object(account, owner, **changes)
        async with self.db() as uow:
            await uow.sessions.add(session)
            await uow.commit()
        return session

    def handoff_object(self, session: Session, **changes: Any) -> Handoff:
        values: dict[str, Any] = {
            "id": new_id(),
            "account_id": session.account_id,
            "session_id": session.id,
            "intent": Intent.ESCALATE,
            "engineer_notes": "stuck on the auth handshake",
            "created_by": session.owner_id,
            "created_at": T0,
            "snapshot": session.snapshot(),
            "policy": EscalationPolicy(),
        }
        values.update(changes)
        return Handoff(**values)

    async def handoff(self, session: Session | None = None, **changes: Any) -> Handoff:
        if session is None:
            session = await self.session(changes.pop("account", "acme"))
        handoff = self.handoff_object(session, **changes)
        async with self.db() as uow:
            await uow.handoffs.add(handoff)
            await uow.commit()
        return handoff

    def delivery_object(self, handoff: Handoff, recipient: str = "bob", **changes: Any) -> Delivery:
        values: dict[str, Any] = {
            "id": new_id(),
            "account_id": handoff.account_id,
            "handoff_id": handoff.id,
            "recipient_id": recipient,
            "address": f"{recipient}@{handoff.account_id}.test",
            "channel": Channel.EMAIL,
            "kind": NoticeKind.ESCALATION,
            "created_at": T0,
            "next_attempt_at": T0,
        }
        values.update(changes)
        return Delivery(**values)

    async def deliveries(self, handoff: Handoff, *deliveries: Delivery) -> list[Delivery]:
        async with self.db() as uow:
            await uow.deliveries.add_many(deliveries)
            await uow.commit()
        return list(deliveries)


@pytest.fixture
def make(db: UnitOfWorkFactory) -> Make:
    return Make(db)
