"""Who has a live stream open, kept in the database so every process sees every stream.

A stream is a row with an expiry: the process that holds the stream renews it with heartbeats,
and a process that dies simply stops renewing, so its streams lapse without anyone cleaning up.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from handoff_core.ports import Clock, Presence
from handoff_sql.statements import BEGIN_MODE, Store, translated, upsert_insert
from handoff_sql.tables import presence

# PostgreSQL takes at most 32,767 parameters in one statement; stay well below.
_CHUNK = 1_000
# A read with no transaction around it: on PostgreSQL one round trip instead of BEGIN, SELECT,
# ROLLBACK (presence is read once per escalation); SQLite's reader takes no lock.
_READ_ONLY: dict[str, dict[str, str]] = {
    "postgresql": {"isolation_level": "AUTOCOMMIT"},
    "sqlite": {BEGIN_MODE: "DEFERRED"},
}
_LIVE = (
    presence.c.account_id == sa.bindparam("account_id"),
    presence.c.expires_at > sa.bindparam("now", type_=presence.c.expires_at.type),
)
_ONLINE = sa.select(presence.c.member_id).distinct().where(*_LIVE)
_ONLINE_OF = _ONLINE.where(presence.c.member_id.in_(sa.bindparam("ids", expanding=True)))
_STREAMS = presence.c.stream_id.in_(sa.bindparam("ids", expanding=True))
_RENEW = sa.update(presence).where(_STREAMS).values(expires_at=sa.bindparam("expires_at"))
_KEPT = sa.select(presence.c.stream_id).where(_STREAMS)
# Heartbeats that arrive within this many seconds of the first (at most a 20th of their ttl) are
# renewed by one statement: a process holding 1,000 streams opened in a burst beats in a burst
# too, and one transaction per beat held the whole connection pool (B3, 1,000 streams: an
# escalation waited behind them, commit -> push p99 330 ms instead of 100 ms).
RENEW_WINDOW_SECONDS = 0.5


class _SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


def _positive(ttl_seconds: float) -> timedelta:
    if not ttl_seconds > 0:
        raise ValueError("ttl_seconds must be greater than 0")
    return timedelta(seconds=ttl_seconds)


class _Renewal:
    """Heartbeats renewed together: each stream's ttl, and the outcome every caller awaits."""

    def __init__(self, done: asyncio.Future[None], window: float) -> None:
        self.done = done
        self.window = window
        self.due: dict[str, timedelta] = {}
        self.task: asyncio.Task[None] | None = None


class SqlPresence(Presence):
    """The core's Presence port, plus the stream lifecycle the push endpoint drives.

    Each call is its own short transaction, never part of a unit of work: `online` is asked in
    the middle of an escalation's unit of work, and on SQLite it reads without the write lock.
    """

    def __init__(self, database: Store, clock: Clock | None = None) -> None:
        self._db = database
        self._clock: Clock = clock or _SystemClock()
        self._where = database.where
        self._mine: dict[str, tuple[str, str]] = {}  # streams this process opened
        self._renewal: _Renewal | None = None  # the heartbeats waiting to be renewed together

    async def _write(self, statement: Any, doing: str) -> int:
        with translated(self._where, doing):
            async with self._db.engine.begin() as conn:
                result = await conn.execute(statement)
                return int(result.rowcount)

    async def enter(
        self, account_id: str, member_id: str, ttl_seconds: float, *, stream_id: str | None = None
    ) -> str:
        """A stream opened: returns its id (a new one unless `stream_id` names it)."""
        stream_id = stream_id or uuid.uuid4().hex
        await self._put(stream_id, account_id, member_id, ttl_seconds)
        self._mine[stream_id] = (account_id, member_id)
        return stream_id

    async def heartbeat(self, stream_id: str, ttl_seconds: float) -> None:
        """Keep a stream alive for `ttl_seconds` more. One this process opened that lapsed
        meanwhile (a long pause, or purged by another process) is put back, so an open stream
        never stays invisible.

        Heartbeats within RENEW_WINDOW_SECONDS (or a 20th of the ttl, if less) of the first
        are renewed together, in one transaction; each returns once its stream is renewed.

        Raises:
            StorageUnavailable: the database cannot be reached (every heartbeat of the batch).
        """
        ttl = _positive(ttl_seconds)
        renewal = self._renewal
        if renewal is None:
            window = min(RENEW_WINDOW_SECONDS, ttl.total_seconds() / 20)
            renewal = _Renewal(asyncio.get_running_loop().create_future(), window)
            self._renewal = renewal
            renewal.task = asyncio.get_running_loop().create_task(self._renew(renewal))
        renewal.due[stream_id] = max(renewal.due.get(stream_id, ttl), ttl)
        await asyncio.shield(renewal.done)

    async def _renew(self, renewal: _Renewal) -> None:
        try:
            await asyncio.sleep(renewal.window)
            if self._renewal is renewal:
                self._renewal = None  # later heartbeats start the next batch
            await self._renew_now(renewal.due)
        except asyncio.CancelledError:
            if self._renewal is renewal:
                self._renewal = None
            renewal.done.cancel()
            raise
        except Exception as exc:
            renewal.done.set_exception(exc)
            renewal.done.exception()  # retrieved here too: no warning if every waiter left
        else:
            renewal.done.set_result(None)

    async def _renew_now(self, due: dict[str, timedelta]) -> None:
        ttl = max(due.values())
        ids = sorted(due)
        kept: set[str] = set()
        with translated(self._where, "renew live streams"):
            async with self._db.engine.begin() as conn:
                for start in range(0, len(ids), _CHUNK):
                    chunk = ids[start : start + _CHUNK]
                    params = {"ids": chunk, "expires_at": self._clock.now() + ttl}
                    await conn.execute(_RENEW, params)
                    kept.update((await conn.execute(_KEPT, {"ids": chunk})).scalars())
        for stream_id in ids:
            if stream_id not in kept and stream_id in self._mine:
                account_id, member_id = self._mine[stream_id]
                await self._put(stream_id, account_id, member_id, due[stream_id].total_seconds())

    async def leave(self, stream_id: str) -> None:
        """A stream closed: forget it at once (its member is offline if it was their last).

        Raises:
            StorageUnavailable: the database cannot be reached.
        """
        self._mine.pop(stream_id, None)
        await self._write(
            sa.delete(presence).where(presence.c.stream_id == stream_id), "forget a live stream"
        )

    async def _put(self, stream_id: str, account_id: str, member_id: str, ttl: float) -> None:
        expires_at = self._clock.now() + _positive(ttl)
        statement = upsert_insert(self._db.dialect, presence).values(
            stream_id=stream_id, account_id=account_id, member_id=member_id, expires_at=expires_at
        )
        statement = statement.on_conflict_do_update(
            index_elements=[presence.c.stream_id],
            set_={
                "account_id": statement.excluded.account_id,
                "member_id": statement.excluded.member_id,
                "expires_at": statement.excluded.expires_at,
            },
        )
        await self._write(statement, "record a live stream")

    async def purge(self) -> int:
        """Delete lapsed streams; they are already ignored, this only keeps the table small."""
        statement = sa.delete(presence).where(presence.c.expires_at <= self._clock.now())
        return await self._write(statement, "purge lapsed streams")

    async def online(
        self, account_id: str, member_ids: Collection[str] | None = None
    ) -> frozenset[str]:
        """Which of these members (None: any of the account) have a live stream on any
        process; one read, in chunks for long lists.

        Raises:
            StorageUnavailable: the database cannot be reached.
        """
        wanted = None if member_ids is None else sorted(set(member_ids))
        if wanted == []:
            return frozenset()
        params = {"account_id": account_id, "now": self._clock.now()}
        found: set[str] = set()
        chunks = (
            [None]
            if wanted is None
            else [wanted[start : start + _CHUNK] for start in range(0, len(wanted), _CHUNK)]
        )
        with translated(self._where, "look up live streams"):
            async with self._db.engine.connect() as conn:
                reader = await conn.execution_options(**_READ_ONLY[self._db.dialect])
                for chunk in chunks:
                    if chunk is None:
                        result = await reader.execute(_ONLINE, params)
                    else:
                        result = await reader.execute(_ONLINE_OF, {**params, "ids": chunk})
                    found.update(result.scalars())
                await reader.rollback()
        return frozenset(found)
