"""The stores every contract test runs against: memory, SQLite (a temp file) and PostgreSQL.

PostgreSQL gets one fresh database with a random name for the whole test session, emptied before
each test and dropped at the end; its tests are skipped (with the reason) only when nothing
answers at 127.0.0.1:5432.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.support.databases import delete_all_rows, migrated_database, migrated_sqlite

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
from handoff_sql import SqlDatabase


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    with migrated_database("handoff_contract") as url:
        yield url


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test: faster than migrating each time."""
    return migrated_sqlite(tmp_path_factory.mktemp("template"))


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
        await delete_all_rows(database)
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
