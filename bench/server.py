"""`handoff serve`, unchanged, plus two measuring hooks installed before it starts.

Run by the harness as `python -m bench.server --port P [--no-worker]` with the HANDOFF_* settings
in its environment. SQLAlchemy's class-level events see every engine the server makes:

- BENCH_COMMIT_LOG=path: for each transaction that inserted a handoff, one line
  `<COMMIT sent> <COMMIT returned> <handoff id>` on the monotonic clock (shared by every process
  of this machine), so "commit → email accepted" and "commit → event on a stream" start at the
  commit itself rather than at the HTTP response.
- BENCH_SQL_LOG=path: every statement with its parameters, and each BEGIN/COMMIT/ROLLBACK, as
  JSON lines, until the process receives SIGUSR1: what the adapter really issues, for pgbench.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import IO, Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import Pool

from bench.stack import raise_nofile

HANDOFF_INSERT = "INSERT INTO handoffs"
MARK = "bench_handoff"
SENT = "bench_commit_sent"


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


class SqlCapture:
    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.on = True

    def stop(self, *_: object) -> None:
        self.on = False
        self.out.flush()

    def write(self, conn: Connection, sql: str, params: Any = None, many: bool = False) -> None:
        if not self.on:
            return
        dbapi = conn.connection.dbapi_connection
        if many:
            shown = [[plain(v) for v in row] for row in params]
        elif params is None:
            shown = None
        else:
            shown = [plain(v) for v in params]
        row = {"t": time.monotonic(), "conn": id(dbapi), "sql": sql, "params": shown, "many": many}
        self.out.write(json.dumps(row) + "\n")


def install(commit_log: str | None, sql_log: str | None) -> None:
    commits = open(commit_log, "a", buffering=1, encoding="utf-8") if commit_log else None  # noqa: SIM115
    capture = SqlCapture(open(sql_log, "a", encoding="utf-8")) if sql_log else None  # noqa: SIM115
    if capture is not None:
        signal.signal(signal.SIGUSR1, capture.stop)

    @event.listens_for(Engine, "before_cursor_execute")
    def _statement(
        conn: Connection, cursor: Any, statement: str, params: Any, context: Any, many: bool
    ) -> None:
        if statement.startswith(HANDOFF_INSERT) and context is not None:
            compiled = getattr(context, "compiled_parameters", None)
            if compiled:
                conn.info[MARK] = compiled[0].get("id")
        if capture is not None:
            capture.write(conn, statement, params, many)

    @event.listens_for(Engine, "begin")
    def _begin(conn: Connection) -> None:
        if capture is not None:
            capture.write(conn, "BEGIN")

    @event.listens_for(Engine, "commit")
    def _commit(conn: Connection) -> None:
        if MARK in conn.info:
            conn.info[SENT] = time.monotonic()
        if capture is not None:
            capture.write(conn, "COMMIT")

    @event.listens_for(Engine, "rollback")
    def _rollback(conn: Connection) -> None:
        conn.info.pop(MARK, None)
        conn.info.pop(SENT, None)
        if capture is not None:
            capture.write(conn, "ROLLBACK")

    @event.listens_for(Pool, "checkin")
    def _checkin(dbapi_connection: Any, record: Any) -> None:
        # The unit of work gives its connection back right after COMMIT returned.
        if record is None:
            return
        handoff_id = record.info.pop(MARK, None)
        sent = record.info.pop(SENT, None)
        if commits is not None and handoff_id is not None and sent is not None:
            commits.write(f"{sent:.6f} {time.monotonic():.6f} {handoff_id}\n")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.server")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--no-worker", action="store_true")
    args = parser.parse_args()
    raise_nofile()
    install(os.environ.get("BENCH_COMMIT_LOG"), os.environ.get("BENCH_SQL_LOG"))
    from handoff_app.cli import main as handoff

    argv = ["serve", "--host", "127.0.0.1", "--port", str(args.port)]
    return handoff([*argv, "--no-worker"] if args.no_worker else argv)


if __name__ == "__main__":
    sys.exit(main())
