"""Real databases for the tests: fresh PostgreSQL databases with random names, dropped at the end,
and migrated SQLite files.

PostgreSQL tests are skipped, with the reason, only when nothing answers at 127.0.0.1:5432. The
admin connection that creates and drops databases comes from HANDOFF_TEST_PG_ADMIN.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import TypeVar

import asyncpg
import pytest
import sqlalchemy as sa
from tests.support.net import listening

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
        return pool.submit(asyncio.run, run()).result(timeout=60)


def require_postgres() -> None:
    """Skip the test, saying why, when no PostgreSQL server answers."""
    if not listening(PG_HOST, PG_PORT):
        pytest.skip(f"PostgreSQL is not reachable at {PG_HOST}:{PG_PORT}")


def postgres_url(name: str) -> str:
    return f"postgresql+asyncpg://postgres@{PG_HOST}:{PG_PORT}/{name}"


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def create_database(prefix: str) -> str:
    """Create an empty database named `prefix` plus a random suffix; return its name."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    await _admin(f'CREATE DATABASE "{name}"')
    return name


async def drop_database(name: str) -> None:
    """Drop it even while connections are still open (a test that failed halfway)."""
    await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@asynccontextmanager
async def fresh_database(prefix: str) -> AsyncIterator[str]:
    """The URL of an empty database of the block's own, dropped when the block ends."""
    require_postgres()
    name = await create_database(prefix)
    try:
        yield postgres_url(name)
    finally:
        await drop_database(name)


@contextmanager
def migrated_database(prefix: str) -> Iterator[str]:
    """For synchronous (session- or module-scoped) fixtures: a fresh database at the latest
    schema, dropped when the block ends."""
    require_postgres()
    name = blocking(lambda: create_database(prefix))
    try:
        url = postgres_url(name)
        blocking(lambda: upgrade(url))
        yield url
    finally:
        blocking(lambda: drop_database(name))


def migrated_sqlite(folder: Path) -> Path:
    """A SQLite file at the latest schema, to copy for each test: faster than migrating each."""
    path = folder / "handoff.db"
    blocking(lambda: upgrade(f"sqlite+aiosqlite:///{path}"))
    return path


async def delete_all_rows(database: SqlDatabase) -> None:
    """Empty every table and keep the schema (DELETE beats TRUNCATE on tables this small)."""
    async with database.engine.begin() as conn:
        for table in ALL_TABLES:
            await conn.execute(sa.delete(table))


async def empty(url: str) -> None:
    """Empty the database at `url` between tests that share it."""
    database = SqlDatabase(url)
    try:
        await delete_all_rows(database)
    finally:
        await database.close()
