"""The server's two measuring hooks, installed in every process of `handoff serve`.

SQLAlchemy's class-level events see every engine a process makes:

- BENCH_COMMIT_LOG=path: for each transaction that inserted a handoff, one line
  `<COMMIT sent> <COMMIT returned> <handoff id>` on the monotonic clock (shared by every process
  of this machine), so "commit → email accepted" and "commit → event on a stream" start at the
  commit itself rather than at the HTTP response.
- BENCH_SQL_LOG=path: every statement with its parameters, and each BEGIN/COMMIT/ROLLBACK, as
  JSON lines, until the process receives SIGUSR1: what the adapter really issues, for pgbench.

`handoff serve --workers N` runs its servers in processes that uvicorn spawns afresh, so the
hooks are installed at interpreter start (`sitecustomize.py` beside this file, put first on the
server's PYTHONPATH by bench.stack.Server), in the supervisor and in each child alike. Every
process opens both files in append mode and writes whole lines in one `write` each, so the
lines of several processes never interleave.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import time
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any

# The statements that insert a handoff, and the parameter that holds its id: the handoff alone,
# and PostgreSQL's one statement for a whole escalation (handoff_sql.escalations).
HANDOFF_INSERTS = (("INSERT INTO handoffs", "id"), ("WITH h AS (INSERT INTO handoffs", "h_id"))
MARK = "bench_handoff"
SENT = "bench_commit_sent"
COMMIT_LOG = "BENCH_COMMIT_LOG"
SQL_LOG = "BENCH_SQL_LOG"
FLUSH_BYTES = 1 << 16  # the SQL log goes out in whole-line chunks of about this size

_installed = False


def plain(value: Any) -> Any:
    """A parameter as JSON, tagged where JSON alone would lose its type."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, datetime | date):
        return {"$dt": value.isoformat()}
    if isinstance(value, Enum):
        return plain(value.value)
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dict | list | tuple):
        return {"$json": json.dumps(value, default=str, separators=(",", ":"))}
    return {"$repr": repr(value)}


def _append(path: str) -> int:
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


def _write_all(fd: int, data: bytes) -> None:
    """One `write` (O_APPEND: the whole chunk lands at the end at once); a short write, which a
    regular file only makes when the disk is full or a signal interrupts, is finished after."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class SqlCapture:
    """Statements as JSON lines, kept in memory and written out in whole-line chunks."""

    def __init__(self, path: str) -> None:
        self.fd = _append(path)
        self.on = True
        self._rows: list[str] = []
        self._size = 0

    def stop(self, *_: object) -> None:
        self.on = False
        self.flush()

    def flush(self) -> None:
        rows, self._rows, self._size = self._rows, [], 0
        if rows:
            _write_all(self.fd, "".join(rows).encode())

    def write(self, conn: Any, sql: str, params: Any = None, many: bool = False) -> None:
        if not self.on:
            return
        dbapi = conn.connection.dbapi_connection
        if many:
            shown = [[plain(v) for v in row] for row in params]
        elif params is None:
            shown = None
        else:
            shown = [plain(v) for v in params]
        row = {"t": time.monotonic(), "pid": os.getpid(), "conn": id(dbapi), "sql": sql,
               "params": shown, "many": many}  # fmt: skip
        line = json.dumps(row) + "\n"
        self._rows.append(line)
        self._size += len(line)
        if self._size >= FLUSH_BYTES:
            self.flush()


def install_from_env() -> bool:
    """Install the hooks named by BENCH_COMMIT_LOG / BENCH_SQL_LOG, once per process; nothing
    when neither is set. Returns whether the hooks are installed in this process."""
    global _installed
    if _installed:
        return True
    commit_log, sql_log = os.environ.get(COMMIT_LOG), os.environ.get(SQL_LOG)
    if not commit_log and not sql_log:
        return False
    install(commit_log or None, sql_log or None)
    _installed = True
    return True


def install(commit_log: str | None, sql_log: str | None) -> None:
    """Listen to every engine's statements, transactions and pool check-ins (see the module)."""
    from sqlalchemy import event
    from sqlalchemy.engine import Connection, Engine
    from sqlalchemy.engine.interfaces import ExecuteStyle
    from sqlalchemy.pool import Pool

    commits = _append(commit_log) if commit_log else None
    capture = SqlCapture(sql_log) if sql_log else None
    if capture is not None:
        signal.signal(signal.SIGUSR1, capture.stop)
        atexit.register(capture.flush)

    @event.listens_for(Engine, "before_cursor_execute")
    def _statement(
        conn: Connection, cursor: Any, statement: str, params: Any, context: Any, many: bool
    ) -> None:
        for start, key in HANDOFF_INSERTS:
            if statement.startswith(start) and context is not None:
                compiled = getattr(context, "compiled_parameters", None)
                if compiled:
                    conn.info[MARK] = compiled[0].get(key)
        if capture is not None:
            # insertmanyvalues: one INSERT … VALUES (…), (…) with its rows' parameters flat.
            batch = getattr(context, "execute_style", None) is ExecuteStyle.INSERTMANYVALUES
            capture.write(conn, statement, params, many and not batch)

    def _autocommit(conn: Connection) -> bool:
        """A connection in AUTOCOMMIT sends no BEGIN, COMMIT or ROLLBACK to the server, whatever
        SQLAlchemy's own transaction events say (presence is read that way)."""
        return conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT"

    @event.listens_for(Engine, "begin")
    def _begin(conn: Connection) -> None:
        if capture is not None and not _autocommit(conn):
            capture.write(conn, "BEGIN")

    @event.listens_for(Engine, "commit")
    def _commit(conn: Connection) -> None:
        if MARK in conn.info:
            conn.info[SENT] = time.monotonic()
        if capture is not None and not _autocommit(conn):
            capture.write(conn, "COMMIT")

    @event.listens_for(Engine, "rollback")
    def _rollback(conn: Connection) -> None:
        conn.info.pop(MARK, None)
        conn.info.pop(SENT, None)
        if capture is not None and not _autocommit(conn):
            capture.write(conn, "ROLLBACK")

    @event.listens_for(Pool, "checkin")
    def _checkin(dbapi_connection: Any, record: Any) -> None:
        # The unit of work gives its connection back right after COMMIT returned.
        if record is None:
            return
        handoff_id = record.info.pop(MARK, None)
        sent = record.info.pop(SENT, None)
        if commits is not None and handoff_id is not None and sent is not None:
            _write_all(commits, f"{sent:.6f} {time.monotonic():.6f} {handoff_id}\n".encode())
