"""One connection and one transaction per unit of work, and the translation of database failures
into the core's words: a lost database is StorageUnavailable, a refused write a Conflict.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import Executable

from handoff_core.errors import Conflict, StorageUnavailable
from handoff_core.ports import UnitOfWork
from handoff_sql.outbox import SqlDeliveries, SqlStream, SqlTimeline
from handoff_sql.repositories import (
    SqlHandoffs,
    SqlLoginLinks,
    SqlMembers,
    SqlPolicies,
    SqlSessions,
    SqlWebhooks,
)

if TYPE_CHECKING:
    from handoff_sql.database import SqlDatabase

log = logging.getLogger("handoff.sql")

Params = Mapping[str, Any] | Sequence[Mapping[str, Any]] | None


def _reason(exc: BaseException) -> str:
    """The driver's own words, first line only: never the SQL or its parameters."""
    cause = exc.orig if isinstance(exc, sa_exc.DBAPIError) and exc.orig is not None else exc
    words = str(cause).strip().splitlines()
    text = words[0] if words else ""
    return f"{type(cause).__name__}: {text}" if text else type(cause).__name__


# PostgreSQL SQLSTATE classes that mean "could not get a usable connection": connection exception,
# bad credentials, no such database, server shutting down or starting, too many connections.
_UNREACHABLE_STATES = ("08", "28", "3D000", "57P", "53300")


def is_unavailable(exc: BaseException) -> bool:
    """Failures of reaching or keeping the database, as opposed to mistakes in what was asked."""
    if isinstance(exc, sa_exc.DBAPIError):
        return (
            exc.connection_invalidated
            or isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError)
            or str(getattr(exc.orig, "sqlstate", "") or "").startswith(_UNREACHABLE_STATES)
        )
    return isinstance(exc, OSError | TimeoutError | sa_exc.TimeoutError)


@contextlib.contextmanager
def translated(where: str, doing: str) -> Iterator[None]:
    """Raise the core's errors for the database's. `where` names the database (no password)."""
    try:
        yield
    except sa_exc.IntegrityError as exc:
        raise Conflict(f"the database refused to {doing}: {_reason(exc)}") from exc
    except Exception as exc:
        if not is_unavailable(exc):
            raise
        lost = isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated
        what = "lost the connection to" if lost else "could not use"
        outcome = (
            "the transaction either committed whole or not at all"
            if doing == "commit"
            else "its transaction was rolled back and nothing was written"
        )
        raise StorageUnavailable(
            f"storage unavailable: {what} the database {where} while trying to {doing} "
            f"({_reason(exc)}); {outcome}"
        ) from exc


class SqlUnitOfWork(UnitOfWork):
    """`async with uow:` opens a connection and a transaction; leaving the block without
    `commit()` rolls it back, so nothing half-done is ever seen by anyone else."""

    def __init__(self, database: SqlDatabase) -> None:
        self._db = database
        self._conn: AsyncConnection | None = None
        self._holds_writer = False
        self._where = database.target.show()
        self.members = SqlMembers(self)
        self.sessions = SqlSessions(self)
        self.handoffs = SqlHandoffs(self)
        self.deliveries = SqlDeliveries(self)
        self.timeline = SqlTimeline(self)
        self.policies = SqlPolicies(self)
        self.stream = SqlStream(self)
        self.webhooks = SqlWebhooks(self)
        self.login_links = SqlLoginLinks(self)

    @property
    def dialect(self) -> str:
        """The database kind: `"sqlite"` or `"postgresql"`."""
        return self._db.dialect

    async def __aenter__(self) -> Self:
        if self._conn is not None:
            raise RuntimeError("this unit of work is already open; make a new one per use case")
        self._holds_writer = await self._db.hold_writer()
        try:
            with translated(self._where, "open a transaction"):
                conn = await self._db.engine.connect()
                try:
                    await conn.begin()
                except BaseException:
                    with contextlib.suppress(Exception):
                        await conn.close()
                    raise
        except BaseException:
            self._let_go_of_writer()
            raise
        self._conn = conn
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self.rollback()
        finally:
            conn, self._conn = self._conn, None
            if conn is not None:
                try:
                    await conn.close()
                except Exception as close_error:
                    log.warning("closing a connection failed", extra={"error": repr(close_error)})

    def _connection(self) -> AsyncConnection:
        if self._conn is None:
            raise RuntimeError("use the unit of work inside `async with uow:`")
        return self._conn

    async def execute(
        self, statement: Executable, params: Params = None, *, doing: str = "run a query"
    ) -> CursorResult[Any]:
        """Run one statement in this unit of work's transaction."""
        conn = self._connection()
        with translated(self._where, doing):
            return await conn.execute(statement, params)

    async def commit(self) -> None:
        """Make every write of this unit of work visible to others, all at once.

        Raises:
            RuntimeError: called outside `async with uow:`.
            Conflict: the database refused a write (a uniqueness or foreign key rule).
            StorageUnavailable: the database was lost; the transaction committed whole or not
                at all.
        """
        conn = self._connection()
        try:
            with translated(self._where, "commit"):
                await conn.commit()
        finally:
            self._let_go_of_writer()

    async def rollback(self) -> None:
        """Throw away what was not committed. A connection already lost has nothing to throw
        away: the server dropped its transaction with it."""
        conn = self._conn
        try:
            if conn is not None and conn.in_transaction():
                try:
                    await conn.rollback()
                except Exception as exc:
                    log.warning("rollback failed", extra={"error": _reason(exc)})
                    with contextlib.suppress(Exception):
                        await conn.invalidate()
        finally:
            self._let_go_of_writer()

    def _let_go_of_writer(self) -> None:
        if self._holds_writer:
            self._holds_writer = False
            self._db.release_writer()
