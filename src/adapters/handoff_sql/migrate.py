"""Schema migrations with Alembic, run from code: `await upgrade(url)` is what `handoff db upgrade`
calls, and `await ensure_schema(url)` is what `serve` calls on an empty SQLite database.

The migration scripts live in this package (migrations/), so an installed wheel can upgrade a
database without an alembic.ini or a source checkout.
"""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import URL, Connection
from sqlalchemy.pool import NullPool

from handoff_core.errors import StorageUnavailable
from handoff_sql.database import DEFAULT_URL, DatabaseUrl, SqlDatabase, build_engine
from handoff_sql.statements import translated
from handoff_sql.tables import metadata

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# Any fixed number: concurrent upgrades on PostgreSQL (several servers starting) take turns.
_PG_MIGRATION_LOCK = 0x68616E64


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@functools.cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head() -> str:
    """The newest revision this package knows."""
    revision = _scripts().get_current_head()
    if revision is None:
        raise RuntimeError("no migrations found in the handoff_sql package")
    return revision


class SchemaNotCurrent(StorageUnavailable):
    """The database's schema is missing or at another revision than this package's head; the
    message is one line that says what to run."""

    code = "schema_not_current"


def schema_problem(where: str, revision: str | None) -> SchemaNotCurrent | None:
    """None when `revision` is this package's head; otherwise the refusal that explains it."""
    wanted = head()
    if revision == wanted:
        return None
    if revision is None:
        state = "has no handoff schema"
        advice = "run `handoff db upgrade` first"
    elif _known(revision):
        state = f"has schema revision {revision}, this release needs {wanted}"
        advice = "run `handoff db upgrade` first"
    else:
        state = f"has schema revision {revision}, which this release does not know"
        advice = "a newer release migrated it: upgrade handoff instead"
    return SchemaNotCurrent(f"the database {where} {state}; {advice}")


def _known(revision: str) -> bool:
    try:
        return _scripts().get_revision(revision) is not None
    except Exception:  # alembic raises its own errors for an unknown or ambiguous id
        return False


async def require_current_schema(database: SqlDatabase) -> None:
    """Raise SchemaNotCurrent unless the database is at this package's head; StorageUnavailable
    when it cannot be reached."""
    problem = schema_problem(database.target.show(), await database.revision())
    if problem is not None:
        raise problem


async def _with_connection(url: str | URL, doing: str, work: Any) -> Any:
    target = DatabaseUrl.parse(url)
    engine = build_engine(target, poolclass=NullPool)
    try:
        with translated(target.show(), doing):
            async with engine.begin() as conn:
                if target.dialect == "postgresql":
                    await conn.execute(
                        sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK}
                    )
                return await conn.run_sync(work)
    finally:
        await engine.dispose()


async def upgrade(url: str | URL = DEFAULT_URL, revision: str = "head") -> None:
    """Bring the database's schema up to `revision`, in one transaction.

    Raises SchemaNotCurrent when the database is at a revision this package does not know (a
    newer release migrated it), StorageUnavailable when it cannot be reached.
    """
    where = DatabaseUrl.parse(url).show()

    def run(connection: Connection) -> None:
        found = MigrationContext.configure(connection).get_current_revision()
        if found is not None and not _known(found):
            problem = schema_problem(where, found)
            assert problem is not None
            raise problem
        command.upgrade(alembic_config(connection), revision)

    await _with_connection(url, "upgrade the schema", run)


async def downgrade(url: str | URL, revision: str) -> None:
    """Take the database's schema back to `revision` (`"base"` drops it all), in one
    transaction. For tests of the migrations and for rolling back a release; data in what is
    dropped is lost.

    Raises:
        BadDatabaseUrl: the URL cannot be used.
        StorageUnavailable: the database cannot be reached.
    """

    def run(connection: Connection) -> None:
        command.downgrade(alembic_config(connection), revision)

    await _with_connection(url, "downgrade the schema", run)


async def current(url: str | URL = DEFAULT_URL) -> str | None:
    """The revision the database is at; None for a database never migrated."""

    def run(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    result: str | None = await _with_connection(url, "read the schema revision", run)
    return result


def _make_folder_for(database_file: str) -> None:
    Path(database_file).expanduser().parent.mkdir(parents=True, exist_ok=True)


async def ensure_schema(url: str | URL = DEFAULT_URL) -> None:
    """Create or upgrade the schema; for SQLite also the folder the file goes in."""
    target = DatabaseUrl.parse(url)
    if target.is_sqlite and target.url.database:
        await asyncio.to_thread(_make_folder_for, target.url.database)
    await upgrade(url)


async def schema_differences(url: str | URL) -> list[Any]:
    """What an autogenerate run would change to make the database match the models: empty when
    the migrations and the models agree."""

    def run(connection: Connection) -> list[Any]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))

    result: list[Any] = await _with_connection(url, "compare the schema", run)
    return result


def upgrade_blocking(url: str | URL = DEFAULT_URL, revision: str = "head") -> None:
    """`upgrade` for callers without an event loop (a sync CLI, a test fixture)."""
    asyncio.run(upgrade(url, revision))
