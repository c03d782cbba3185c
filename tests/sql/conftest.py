"""Real databases for the SQL adapter's own tests: a temp SQLite file, and a PostgreSQL database
with a random name made for this test session and dropped at its end (tests skipped, with the
reason, only when nothing answers at 127.0.0.1:5432)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import shutil
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from functools import partial
from pathlib import Path
from typing import TypeVar

import asyncpg
import pytest
import sqlalchemy as sa

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


def require_postgres() -> None:
    try:
        with socket.create_connection((PG_HOST, PG_PORT), timeout=1):
            return
    except OSError:
        pytest.skip(f"PostgreSQL is not reachable at {PG_HOST}:{PG_PORT}")


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


class PgDatabases:
    """Makes empty PostgreSQL databases with random names and drops them all at the end."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def create(self) -> str:
        name = f"handoff_sql_{uuid.uuid4().hex[:12]}"
        blocking(lambda: _admin(f'CREATE DATABASE "{name}"'))
        self.names.append(name)
        return f"postgresql+asyncpg://postgres@{PG_HOST}:{PG_PORT}/{name}"

    def drop_all(self) -> None:
        for name in self.names:
            blocking(partial(_admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def pg_databases() -> Iterator[PgDatabases]:
    require_postgres()
    made = PgDatabases()
    try:
        yield made
    finally:
        made.drop_all()


@pytest.fixture(scope="session")
def pg_url(pg_databases: PgDatabases) -> str:
    """One migrated database for the session; `sql_url` empties it before each test."""
    url = pg_databases.create()
    blocking(lambda: upgrade(url))
    return url


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "handoff.db"
    blocking(lambda: upgrade(f"sqlite+aiosqlite:///{path}"))
    return path


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    path = tmp_path / "handoff.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite+aiosqlite:///{path}"


async def _empty(url: str) -> None:
    engine = SqlDatabase(url).engine
    try:
        async with engine.begin() as conn:
            for table in ALL_TABLES:
                await conn.execute(sa.delete(table))
    finally:
        await engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def sql_url(request: pytest.FixtureRequest) -> str:
    """A migrated, empty database of each kind."""
    if request.param == "sqlite":
        url: str = request.getfixturevalue("sqlite_url")
        return url
    url = request.getfixturevalue("pg_url")
    await _empty(url)
    return url


@pytest.fixture
async def sql_db(sql_url: str) -> AsyncIterator[SqlDatabase]:
    database = SqlDatabase(sql_url, pool_size=20, max_overflow=40)
    await database.start()
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
async def pg_db(pg_url: str) -> AsyncIterator[SqlDatabase]:
    """The session's PostgreSQL database, emptied."""
    await _empty(pg_url)
    database = SqlDatabase(pg_url)
    try:
        yield database
    finally:
        await database.close()
