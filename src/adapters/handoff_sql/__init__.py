"""SQLAlchemy 2 async adapters: SQLite (the embedded default) and PostgreSQL, with Alembic.

    db = SqlDatabase("sqlite+aiosqlite:///./handoff.db")   # or postgresql+asyncpg://…
    await ensure_schema(db.target.url)                     # or `handoff db upgrade`
    await db.start()
    service = HandoffService(db, clock, presence=db.presence())
    ...
    await db.close()

`SqlDatabase` is a UnitOfWorkFactory, like handoff_memory.MemoryDatabase. Pool settings come from
the URL (`?pool_size=20&max_overflow=10`) or keyword arguments.
"""

from handoff_sql.database import DEFAULT_URL, BadDatabaseUrl, DatabaseUrl, SqlDatabase
from handoff_sql.migrate import (
    SchemaNotCurrent,
    current,
    downgrade,
    ensure_schema,
    head,
    require_current_schema,
    schema_differences,
    upgrade,
    upgrade_blocking,
)
from handoff_sql.presence import SqlPresence
from handoff_sql.uow import SqlUnitOfWork

__all__ = [
    "DEFAULT_URL",
    "BadDatabaseUrl",
    "DatabaseUrl",
    "SchemaNotCurrent",
    "SqlDatabase",
    "SqlPresence",
    "SqlUnitOfWork",
    "current",
    "downgrade",
    "ensure_schema",
    "head",
    "require_current_schema",
    "schema_differences",
    "upgrade",
    "upgrade_blocking",
]
