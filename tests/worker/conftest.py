"""Fixtures for the worker and outbox fault tests: a fresh PostgreSQL database per test module
(random name, dropped after; skipped with the reason only when nothing answers at
127.0.0.1:5432), a migrated SQLite file per test, SMTP sinks and worker processes that are all
stopped at the end."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import asyncpg
import pytest
import sqlalchemy as sa
from tests.worker.harness import SinkServer, Store, WorkerProcess

from handoff_sql import SqlDatabase, ensure_schema, upgrade
from handoff_sql.tables import ALL_TABLES

PG_HOST, PG_PORT = "127.0.0.1", 5432
PG_ADMIN = os.environ.get(
    "HANDOFF_TEST_PG_ADMIN", f"postgresql://postgres@{PG_HOST}:{PG_PORT}/test"
)
T = TypeVar("T")


def _blocking(make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion from a synchronous (module-scoped) fixture."""

    async def run() -> T:
        return await make()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, run()).result(timeout=60)


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    """A migrated PostgreSQL database of this test module's own."""
    try:
        with socket.create_connection((PG_HOST, PG_PORT), timeout=1):
            pass
    except OSError:
        pytest.skip(f"PostgreSQL is not reachable at {PG_HOST}:{PG_PORT}")
    name = f"handoff_worker_{uuid.uuid4().hex[:12]}"
    _blocking(lambda: _admin(f'CREATE DATABASE "{name}"'))
    url = f"postgresql+asyncpg://postgres@{PG_HOST}:{PG_PORT}/{name}"
    try:
        _blocking(lambda: upgrade(url))
        yield url
    finally:
        _blocking(lambda: _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _empty(url: str) -> None:
    db = SqlDatabase(url)
    try:
        async with db.engine.begin() as conn:
            for table in ALL_TABLES:
                await conn.execute(sa.delete(table))
    finally:
        await db.close()


@pytest.fixture(params=[pytest.param("postgres", marks=pytest.mark.postgres), "sqlite"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty, migrated database of each kind."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'handoff.db'}"
        await ensure_schema(url)
        return url
    url = str(request.getfixturevalue("pg_url"))
    await _empty(url)
    return url


@pytest.fixture
async def postgres_url(pg_url: str) -> str:
    """This module's PostgreSQL database, emptied for the test."""
    await _empty(pg_url)
    return pg_url


@pytest.fixture
async def open_store() -> AsyncIterator[Callable[[str], Store]]:
    """Read-only views of databases, their engines closed at the end."""
    made: list[Store] = []

    def open_(url: str) -> Store:
        store = Store(url)
        made.append(store)
        return store

    yield open_
    for store in made:
        await store.close()


@pytest.fixture
def start_sink() -> Iterator[Callable[..., SinkServer]]:
    """Start counting SMTP sinks on 127.0.0.1; every one is stopped at the end."""
    started: list[SinkServer] = []

    def start(port: int | None = None, delay: float = 0.0) -> SinkServer:
        server = SinkServer(port, delay)
        started.append(server)
        server.start()
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start `handoff worker` processes; any still running at the end is killed by its pid."""
    started: list[WorkerProcess] = []

    def start(env: dict[str, str], name: str | None = None) -> WorkerProcess:
        worker = WorkerProcess(tmp_path, env, name or f"worker{len(started) + 1}")
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.reap()
