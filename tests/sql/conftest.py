"""Real databases for the SQL adapter's own tests: a temp SQLite file, and a PostgreSQL database
with a random name made for this test session and dropped at its end (tests skipped, with the
reason, only when nothing answers at 127.0.0.1:5432)."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from functools import partial
from pathlib import Path

import pytest
from tests.support.databases import (
    blocking,
    create_database,
    drop_database,
    empty,
    migrated_sqlite,
    postgres_url,
    require_postgres,
)

from handoff_sql import SqlDatabase, upgrade


class PgDatabases:
    """Makes empty PostgreSQL databases with random names and drops them all at the end."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def create(self) -> str:
        name = blocking(lambda: create_database("handoff_sql"))
        self.names.append(name)
        return postgres_url(name)

    def drop_all(self) -> None:
        for name in self.names:
            blocking(partial(drop_database, name))


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
    return migrated_sqlite(tmp_path_factory.mktemp("template"))


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    path = tmp_path / "handoff.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def sql_url(request: pytest.FixtureRequest) -> str:
    """A migrated, empty database of each kind."""
    if request.param == "sqlite":
        url: str = request.getfixturevalue("sqlite_url")
        return url
    url = request.getfixturevalue("pg_url")
    await empty(url)
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
    await empty(pg_url)
    database = SqlDatabase(pg_url)
    try:
        yield database
    finally:
        await database.close()
