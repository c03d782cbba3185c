"""The engine behind every unit of work: URL options, pooling and SQLite's locking rules.

SQLite (the embedded default) runs in WAL mode with a busy timeout, and every unit of work
begins with BEGIN IMMEDIATE: it takes the write lock up front, so two writers queue instead of
one failing halfway with "database is locked". Within one process the writers also queue on an
asyncio lock, which is fair and costs no polling; across processes SQLite's busy timeout does it.
"""

from __future__ import annotations

import asyncio
import inspect
import ipaddress
import math
import os
import re
from typing import Any

from attrs import frozen
from sqlalchemy import event
from sqlalchemy import inspect as inspect_schema
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from handoff_core.errors import StorageUnavailable
from handoff_core.ports import Clock
from handoff_sql.presence import SqlPresence
from handoff_sql.statements import BEGIN_MODE, translated
from handoff_sql.uow import SqlUnitOfWork

DEFAULT_URL = "sqlite+aiosqlite:///./handoff.db"
DEFAULT_BUSY_TIMEOUT = 15.0
DEFAULT_CONNECT_TIMEOUT = 10.0

_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgres": "postgresql+asyncpg",
    "postgresql": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
}


class BadDatabaseUrl(ValueError):
    """The database URL cannot be used; the message says which part and why."""


def _flag(name: str, raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise BadDatabaseUrl(f"database URL option {name}={raw!r} must be true or false")


def _number(kind: type[int] | type[float], name: str, raw: str) -> Any:
    try:
        value = kind(raw)
    except ValueError:
        noun = "an integer" if kind is int else "a number"
        raise BadDatabaseUrl(f"database URL option {name}={raw!r} must be {noun}") from None
    if not math.isfinite(value):
        raise BadDatabaseUrl(f"database URL option {name}={raw!r} must be a finite number")
    if value < 0:
        raise BadDatabaseUrl(f"database URL option {name}={raw!r} must not be negative")
    if name in _TIMEOUTS and value > TIMEOUT_MAX:
        raise BadDatabaseUrl(
            f"database URL option {name}={raw!r} must be at most {TIMEOUT_MAX:g} seconds"
        )
    return value


# The waits an option sets, in seconds: past an hour a wait is a mistake, not a setting (and an
# infinite one never ends, or overflows where it is turned into milliseconds).
_TIMEOUTS = {"busy_timeout", "connect_timeout", "pool_timeout"}
TIMEOUT_MAX = 3600.0
_HOSTNAME = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.?")


def _check_address(url: URL) -> None:
    """A port the driver could not connect to, or a host no resolver could look up, refused
    when the URL is read rather than at the first connection."""
    if url.port is not None and not 1 <= url.port <= 65535:
        raise BadDatabaseUrl(f"database URL port {url.port} is not a port number (1 to 65535)")
    host = url.host
    if host is None or host == "":
        return
    try:
        ipaddress.ip_address(host)
        return
    except ValueError:
        pass
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        ascii_host = ""
    if not _HOSTNAME.fullmatch(ascii_host):
        raise BadDatabaseUrl(f"database URL host {host!r} is not a host name or an IP address")


_POOL_OPTIONS: dict[str, type[int] | type[float] | type[bool]] = {
    "pool_size": int,
    "max_overflow": int,
    "pool_timeout": float,
    "pool_recycle": int,
    "pool_pre_ping": bool,
}
# Query options SQLAlchemy's asyncpg dialect takes for itself; the rest go to asyncpg.connect().
_SQLALCHEMY_ASYNCPG_OPTIONS = {"prepared_statement_cache_size", "prepared_statement_name_func"}
_OWN_OPTIONS: dict[str, type[int] | type[float]] = {
    "busy_timeout": float,
    "connect_timeout": float,
}


@frozen
class DatabaseUrl:
    """A URL split into what the driver sees and what the pool and this adapter take from it.

    `?pool_size=&max_overflow=&pool_timeout=&pool_recycle=&pool_pre_ping=` size the pool;
    `?busy_timeout=` (seconds, SQLite) bounds the wait for the write lock and
    `?connect_timeout=` (seconds, PostgreSQL) the wait for a connection.
    """

    url: URL
    pool: dict[str, Any]
    busy_timeout: float
    connect_timeout: float

    @property
    def dialect(self) -> str:
        """The database kind: `"sqlite"` or `"postgresql"`."""
        return self.url.get_backend_name()

    @property
    def is_sqlite(self) -> bool:
        """True for SQLite, whose writers queue on one lock (see the module's notes)."""
        return self.dialect == "sqlite"

    def show(self) -> str:
        """The URL as it may be printed: never with the password."""
        return self.url.render_as_string(hide_password=True)

    @classmethod
    def parse(cls, raw: str | URL) -> DatabaseUrl:
        """Split a database URL into the driver's URL and the options this adapter takes.

        `sqlite://` and `postgres(ql)://` get their async drivers (aiosqlite, asyncpg).

        Raises:
            BadDatabaseUrl: not a URL, a scheme other than SQLite or PostgreSQL, an option given
                twice or not a (non-negative) number or flag, an option asyncpg does not know,
                PostgreSQL without asyncpg installed, or an in-memory SQLite database.
        """
        if isinstance(raw, str):
            try:
                raw.encode("utf-8")
            except UnicodeEncodeError:
                raise BadDatabaseUrl("database URL must be valid UTF-8") from None
        try:
            url = make_url(raw)
        except (ArgumentError, ValueError):  # ValueError: a port that is not a number
            raise BadDatabaseUrl(
                "database URL is not a URL like sqlite+aiosqlite:///./handoff.db "
                "or postgresql+asyncpg://user@host/db"
            ) from None
        driver = _DRIVERS.get(url.drivername)
        if driver is None:
            raise BadDatabaseUrl(
                f"database URL scheme {url.drivername!r} is not supported; "
                "use sqlite+aiosqlite:// or postgresql+asyncpg://"
            )
        _check_address(url)
        query = dict(url.query)
        pool: dict[str, Any] = {}
        own: dict[str, Any] = {}
        for name, kind in _POOL_OPTIONS.items():
            if name in query:
                raw_value = _single(name, query.pop(name))
                pool[name] = (
                    _flag(name, raw_value) if kind is bool else _number(kind, name, raw_value)
                )
        for name, number in _OWN_OPTIONS.items():
            if name in query:
                own[name] = _number(number, name, _single(name, query.pop(name)))
        if driver == "postgresql+asyncpg":
            _check_asyncpg_options(query)
        if driver == "sqlite+aiosqlite" and url.database in (None, "", ":memory:"):
            raise BadDatabaseUrl(
                "an in-memory SQLite database is not shared between connections; "
                "use a file, e.g. sqlite+aiosqlite:///./handoff.db"
            )
        return cls(
            url=url.set(drivername=driver, query=query),
            pool=pool,
            busy_timeout=own.get("busy_timeout", DEFAULT_BUSY_TIMEOUT),
            connect_timeout=own.get("connect_timeout", DEFAULT_CONNECT_TIMEOUT),
        )


def _check_asyncpg_options(query: dict[str, Any]) -> None:
    """What asyncpg would only refuse at the first connection, refused now with the reason."""
    try:
        import asyncpg
    except ImportError:
        raise BadDatabaseUrl(
            "PostgreSQL needs the asyncpg driver: pip install 'handoff[postgres]'"
        ) from None
    known = set(inspect.signature(asyncpg.connect).parameters) | _SQLALCHEMY_ASYNCPG_OPTIONS
    unknown = sorted(set(query) - known)
    if unknown:
        pool = ", ".join(_POOL_OPTIONS)
        raise BadDatabaseUrl(
            f"database URL option(s) {', '.join(unknown)} are not known; pool options are {pool}"
        )


def _single(name: str, value: str | tuple[str, ...]) -> str:
    if isinstance(value, tuple):
        raise BadDatabaseUrl(f"database URL option {name} is given more than once")
    return value


# A fixed pool: connections past the pool's size are closed when given back, so a burst larger
# than the pool (B4: 50 claims at once) made and dropped PostgreSQL backends each time, each a
# fork on the server; waiting for one of 20 kept connections is cheaper.
# Last in, first out: the connections a load keeps busy are the ones handed out again, so their
# prepared statements (asyncpg prepares each statement once per connection) are already there,
# and the rest of the pool stays idle instead of each connection preparing everything in turn.
POSTGRES_POOL_DEFAULTS = {"pool_size": 20, "max_overflow": 0, "pool_use_lifo": True}
# What only a pool that keeps connections takes; NullPool (migrations, one-off checks) refuses them.
_SIZING = ("pool_size", "max_overflow", "pool_timeout")


def build_engine(target: DatabaseUrl, **options: Any) -> AsyncEngine:
    """An engine for `target`; `options` (pool sizes and the like) win over the URL's.

    With `poolclass=NullPool` the URL's sizing options are left out: they size a pool that keeps
    connections, and the URL an operator wrote for the server serves the one-off commands too.
    """
    settings = {**target.pool, **options}
    if options.get("poolclass") is NullPool:
        settings = {k: v for k, v in settings.items() if k not in _SIZING}
    if not target.is_sqlite:
        # Keep the connections a burst needs: SQLAlchemy's default (5 kept, 10 more opened and
        # closed again on return) made every burst of claims open ~10 new backends.
        if "poolclass" not in settings:
            settings = {**POSTGRES_POOL_DEFAULTS, **settings}
        connect_args = {
            "timeout": target.connect_timeout,
            "server_settings": {"application_name": "handoff"},
        }
        return create_async_engine(target.url, connect_args=connect_args, **settings)
    engine = create_async_engine(
        target.url, connect_args={"timeout": target.busy_timeout}, **settings
    )
    busy_ms = int(target.busy_timeout * 1000)

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, record: Any) -> None:
        # Take BEGIN away from the driver so that the "begin" hook below decides its mode.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in (
            "PRAGMA journal_mode=WAL",
            f"PRAGMA busy_timeout={busy_ms}",
            "PRAGMA foreign_keys=ON",
            "PRAGMA synchronous=NORMAL",
        ):
            cursor.execute(pragma)
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        mode = connection.get_execution_options().get(BEGIN_MODE, "IMMEDIATE")
        connection.exec_driver_sql(f"BEGIN {mode}")

    return engine


class SqlDatabase:
    """A whole SQL database: call it for a fresh unit of work (a UnitOfWorkFactory).

    `SqlDatabase(url, pool_size=…)`; `await start()` before use and `await close()` at the end
    (or `async with`). The schema is made by `handoff_sql.upgrade(url)`.
    """

    def __init__(self, url: str | URL = DEFAULT_URL, **engine_options: Any) -> None:
        self.target = DatabaseUrl.parse(url)
        self._options = engine_options
        self._engine: AsyncEngine | None = None
        self._writer: asyncio.Lock | None = None
        self._writer_loop: asyncio.AbstractEventLoop | None = None

    @property
    def dialect(self) -> str:
        """The database kind: `"sqlite"` or `"postgresql"`."""
        return self.target.dialect

    @property
    def where(self) -> str:
        """The database's URL as it may be shown: no password."""
        return self.target.show()

    @property
    def engine(self) -> AsyncEngine:
        """The SQLAlchemy async engine, made on first use (and again after `close`)."""
        if self._engine is None:
            self._engine = build_engine(self.target, **self._options)
        return self._engine

    async def start(self) -> None:
        """Make the engine; connections are opened on first use."""
        _ = self.engine

    async def close(self) -> None:
        """Close every pooled connection. Harmless when repeated; a later use starts anew."""
        if self._engine is not None:
            engine, self._engine = self._engine, None
            await engine.dispose()

    async def __aenter__(self) -> SqlDatabase:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __call__(self) -> SqlUnitOfWork:
        """A fresh unit of work on this database."""
        return SqlUnitOfWork(self)

    def presence(self, clock: Clock | None = None) -> SqlPresence:
        """Presence kept in this database, so every process sees every stream."""
        return SqlPresence(self, clock)

    async def ping(self) -> bool:
        """True if the database answers (for a readiness probe); never raises."""
        from sqlalchemy import text

        try:
            async with self.engine.connect() as conn:
                reader = await conn.execution_options(**{BEGIN_MODE: "DEFERRED"})
                await reader.execute(text("SELECT 1"))
            return True
        except Exception:
            return False

    async def revision(self) -> str | None:
        """The Alembic revision the database is at; None when it was never migrated.

        Raises StorageUnavailable when the database cannot be reached.
        """
        from sqlalchemy import text

        with translated(self.target.show(), "read the schema revision"):
            async with self.engine.connect() as conn:
                reader = await conn.execution_options(**{BEGIN_MODE: "DEFERRED"})
                has_table = await reader.run_sync(
                    lambda sync: inspect_schema(sync).has_table("alembic_version")
                )
                if not has_table:
                    return None
                row = (
                    await reader.execute(text("SELECT version_num FROM alembic_version"))
                ).first()
        return None if row is None else str(row[0])

    async def hold_writer(self) -> bool:
        """On SQLite, wait for this process's turn to write; False on PostgreSQL (no need)."""
        if not self.target.is_sqlite:
            return False
        self._require_folder()
        loop = asyncio.get_running_loop()
        if self._writer is None or self._writer_loop is not loop:
            self._writer, self._writer_loop = asyncio.Lock(), loop
        try:
            await asyncio.wait_for(self._writer.acquire(), timeout=self.target.busy_timeout)
        except TimeoutError:
            raise StorageUnavailable(
                f"storage unavailable: {self.target.show()} stayed busy for "
                f"{self.target.busy_timeout:g} s (another unit of work held it)"
            ) from None
        return True

    def _require_folder(self) -> None:
        """A missing folder is the usual reason a SQLite file cannot be opened; saying so here
        is clearer than the driver's words, and spares aiosqlite a failed connection thread."""
        database = self.target.url.database or ""
        folder = os.path.dirname(os.path.abspath(os.path.expanduser(database)))
        if not os.path.isdir(folder):
            raise StorageUnavailable(
                f"storage unavailable: the folder of the SQLite database {self.target.show()} "
                "does not exist (unable to open database file)"
            )

    def release_writer(self) -> None:
        """End this process's turn to write that `hold_writer` gave; harmless if none is held."""
        if self._writer is not None and self._writer.locked():
            self._writer.release()
