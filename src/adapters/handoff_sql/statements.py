"""What every part of the SQL adapter shares, and nothing else: how database failures become the
core's errors (a lost database is StorageUnavailable, a refused write a Conflict), the shape of
what runs statements, and the dialect's upsert.

It imports no other module of the adapter, so the rest import it without going in a circle:
statements <- repositories, outbox <- uow <- database; statements <- presence <- database.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql import Executable

from handoff_core.errors import Conflict, StorageUnavailable

BEGIN_MODE = "handoff_begin"  # execution option: "DEFERRED" makes a SQLite reader take no lock

Params = Mapping[str, Any] | Sequence[Mapping[str, Any]] | None


def reason(exc: BaseException) -> str:
    """The driver's own words, first line only: never the SQL or its parameters."""
    cause = exc.orig if isinstance(exc, sa_exc.DBAPIError) and exc.orig is not None else exc
    words = str(cause).strip().splitlines()
    text = words[0] if words else ""
    return f"{type(cause).__name__}: {text}" if text else type(cause).__name__


# PostgreSQL SQLSTATE classes that mean "could not get a usable connection": connection exception,
# bad credentials, no such database, server shutting down or starting, too many connections; and
# a transaction the server undid (deadlock, serialization): nothing was written, try again.
_UNREACHABLE_STATES = ("08", "28", "3D000", "57P", "53300", "40P01", "40001")


def is_unavailable(exc: BaseException) -> bool:
    """Failures of reaching or keeping the database, as opposed to mistakes in what was asked."""
    if isinstance(exc, sa_exc.DBAPIError):
        return (
            exc.connection_invalidated
            or isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError)
            or str(getattr(exc.orig, "sqlstate", "") or "").startswith(_UNREACHABLE_STATES)
        )
    return isinstance(exc, OSError | TimeoutError | sa_exc.TimeoutError)


# What became of the work when the database was lost while `doing` it.
OUTCOMES = {
    "commit": "the transaction either committed whole or not at all",
    "open a transaction": "nothing was written",
}


@contextlib.contextmanager
def translated(where: str, doing: str) -> Iterator[None]:
    """Raise the core's errors for the database's. `where` names the database (no password)."""
    try:
        yield
    except sa_exc.IntegrityError as exc:
        raise Conflict(f"the database refused to {doing}: {reason(exc)}") from exc
    except Exception as exc:
        if not is_unavailable(exc):
            raise
        lost = isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated
        what = "lost the connection to" if lost else "could not use"
        outcome = OUTCOMES.get(doing, "its transaction was rolled back and nothing was written")
        raise StorageUnavailable(
            f"storage unavailable: {what} the database {where} while trying to {doing} "
            f"({reason(exc)}); {outcome}"
        ) from exc


def upsert_insert(dialect: str, table: sa.Table) -> Any:
    """An INSERT that can say ON CONFLICT, in the dialect's own spelling."""
    return postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)


class Statements(Protocol):
    """What a repository runs its statements through: one unit of work's transaction."""

    @property
    def dialect(self) -> str: ...

    async def execute(
        self, statement: Executable, params: Params = None, *, doing: str = "run a query"
    ) -> CursorResult[Any]: ...


class Store(Protocol):
    """What a unit of work and presence need of the database: its engine, its dialect, a name
    to show (no password), and SQLite's one-writer turn."""

    @property
    def dialect(self) -> str: ...

    @property
    def engine(self) -> AsyncEngine: ...

    @property
    def where(self) -> str: ...

    async def hold_writer(self) -> bool: ...

    def release_writer(self) -> None: ...
