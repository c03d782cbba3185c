"""One connection and one transaction per unit of work, and the translation of database failures
into the core's words: a lost database is StorageUnavailable, a refused write a Conflict.
"""

from __future__ import annotations

import contextlib
import logging
from types import TracebackType
from typing import Any, Self

from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import Executable

from handoff_core.ports import EscalationsByParts, UnitOfWork
from handoff_sql.escalations import SqlEscalations
from handoff_sql.outbox import SqlDeliveries, SqlStream, SqlTimeline
from handoff_sql.repositories import (
    SqlHandoffs,
    SqlLoginLinks,
    SqlMembers,
    SqlPolicies,
    SqlSessions,
    SqlWebhooks,
)
from handoff_sql.statements import Params, Store, reason, translated

log = logging.getLogger("handoff.sql")


class SqlUnitOfWork(UnitOfWork):
    """`async with uow:` opens a connection and a transaction; leaving the block without
    `commit()` rolls it back, so nothing half-done is ever seen by anyone else."""

    def __init__(self, database: Store) -> None:
        self._db = database
        self._conn: AsyncConnection | None = None
        self._holds_writer = False
        self._where = database.where
        self.members = SqlMembers(self)
        self.sessions = SqlSessions(self)
        self.handoffs = SqlHandoffs(self)
        self.deliveries = SqlDeliveries(self)
        self.timeline = SqlTimeline(self)
        self.policies = SqlPolicies(self)
        self.stream = SqlStream(self)
        self.webhooks = SqlWebhooks(self)
        self.login_links = SqlLoginLinks(self)
        self.escalations = SqlEscalations(self, EscalationsByParts(self))

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
                    log.warning("rollback failed", extra={"error": reason(exc)})
                    with contextlib.suppress(Exception):
                        await conn.invalidate()
        finally:
            self._let_go_of_writer()

    def _let_go_of_writer(self) -> None:
        if self._holds_writer:
            self._holds_writer = False
            self._db.release_writer()
