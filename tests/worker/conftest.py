"""Fixtures for the worker and outbox fault tests: a fresh PostgreSQL database per test module
(random name, dropped after; skipped with the reason only when nothing answers at
127.0.0.1:5432), a migrated SQLite file per test, SMTP sinks and worker processes that are all
stopped at the end."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from tests.support.databases import empty, migrated_database
from tests.worker.harness import SinkServer, Store, WorkerProcess

from handoff_sql import ensure_schema


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    """A migrated PostgreSQL database of this test module's own."""
    with migrated_database("handoff_worker") as url:
        yield url


@pytest.fixture(params=[pytest.param("postgres", marks=pytest.mark.postgres), "sqlite"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty, migrated database of each kind."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'handoff.db'}"
        await ensure_schema(url)
        return url
    url = str(request.getfixturevalue("pg_url"))
    await empty(url)
    return url


@pytest.fixture
async def postgres_url(pg_url: str) -> str:
    """This module's PostgreSQL database, emptied for the test."""
    await empty(pg_url)
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
