"""The SQL limit of B1: pgbench running the statements the adapter really issued for one escalation.

bench.server logged every statement of the running server (SQLAlchemy events) while the harness
escalated one session alone. The transactions of that request — authentication, the unit of work,
the presence lookup — are restated here as a pgbench script: the same statements with their
captured values as literals (an array parameter as an ARRAY[...] of them), except the keys that
must be new each time (handoff and delivery ids) or must name a session that exists (a pool of
copies of the captured session, one range per client so no two clients update the same row). The
stream is numbered by the statement itself (the head upsert and the events' insert are one WITH),
so each pgbench transaction appends after the last. An executemany (asyncpg pipelines it)
becomes a pgbench pipeline. pgbench runs with -M prepared, as asyncpg prepares its statements.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncpg
from attrs import define, field

from bench.stack import PG_HOST, PG_PORT, PG_USER, BenchError
from bench.stats import median, percentile

PGBENCH_PATHS = ("/usr/lib/postgresql/15/bin/pgbench",)
SESSIONS_PER_CLIENT = 1000
WORKER_SIGNS = ("SKIP LOCKED", "next_reminder_at <=", "SELECT 1")
PLACEHOLDER = re.compile(r"\$(\d+)")
COLON_NAME = re.compile(r":(?=[A-Za-z_])")
HANDOFF_INSERT = re.compile(r"(WITH h AS \()?INSERT INTO handoffs\b")
UNNESTED_DELIVERIES = re.compile(r"INSERT INTO deliveries .*?unnest\((.*?)\) AS r\(([^)]*)\)", re.S)
# The session's new version and the one it must still have: Core's UPDATE, or the escalation's
# WITH (handoff_sql.escalations).
SET_VERSION = re.compile(r"\bversion ?= ?(?:CAST\()?\$(\d+)")  # the first: SET comes first
WHERE_VERSION = re.compile(r"(?:sessions\.version = \$|AND version = CAST\(\$)(\d+)")


def pgbench_binary() -> str:
    found = shutil.which("pgbench")
    if found:
        return found
    for path in PGBENCH_PATHS:
        if Path(path).exists():
            return path
    raise BenchError("pgbench not found (Debian: apt-get install postgresql-client)")


@define
class Transaction:
    conn: int
    began: float
    rows: list[dict[str, Any]] = field(factory=list)

    @property
    def text(self) -> str:
        return "\n".join(str(r["sql"]) for r in self.rows)

    def mentions(self, value: str) -> bool:
        for row in self.rows:
            params = row["params"] or []
            flat = [v for p in params for v in p] if row["many"] else params
            if value in flat:
                return True
        return False


def transactions(log: Path) -> list[Transaction]:
    """The captured statements grouped into transactions, per connection, by BEGIN time; a
    statement outside any (AUTOCOMMIT: presence is read that way) is one of its own."""
    open_by_conn: dict[int, Transaction] = {}
    done: list[Transaction] = []
    for line in log.read_text().splitlines():
        row = json.loads(line)
        conn = int(row["conn"])
        if row["sql"] != "BEGIN" and conn not in open_by_conn:
            done.append(Transaction(conn=conn, began=float(row["t"]), rows=[row]))
            continue
        if row["sql"] == "BEGIN":
            open_by_conn[conn] = Transaction(conn=conn, began=float(row["t"]))
        txn = open_by_conn[conn]
        txn.rows.append(row)
        if row["sql"] in ("COMMIT", "ROLLBACK"):
            done.append(open_by_conn.pop(conn))
    return sorted(done, key=lambda t: t.began)


def escalation_transactions(
    log: Path, account_id: str, sent: float, committed: float
) -> list[Transaction]:
    """The transactions of one escalation request: begun between the request and its commit,
    touching its account; the worker's cross-account polls are left out."""
    found = [
        t
        for t in transactions(log)
        if sent <= t.began <= committed
        and t.mentions(account_id)
        and not any(sign in t.text for sign in WORKER_SIGNS)
    ]
    if not any(HANDOFF_INSERT.search(t.text) for t in found):
        raise BenchError("the captured SQL has no escalation transaction")
    return found


def short(sql: str) -> str:
    """`SELECT members`, `INSERT deliveries`, `COMMIT`: a statement in two words."""
    if sql.startswith("SELECT"):
        table = re.search(r"\bFROM\s+(\w+)", sql)
        return f"SELECT {table.group(1) if table else '?'}"
    if sql.startswith("WITH"):  # data-modifying WITH: what each part writes
        written = re.findall(r"\b(INSERT INTO|UPDATE|DELETE FROM)\s+(\w+)", sql)
        return "WITH " + " + ".join(f"{verb.split()[0]} {table}" for verb, table in written)
    found = re.match(r"(INSERT INTO|UPDATE|DELETE FROM)\s+(\w+)", sql)
    if found:
        return f"{found.group(1).split()[0]} {found.group(2)}"
    return sql.split()[0] if sql.split() else sql


def literal(value: Any) -> str:
    """A captured parameter as an SQL literal pgbench will not mistake for a :variable."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dict):
        value = value.get("$dt") or value.get("$json") or value.get("$repr") or ""
    text = str(value).replace("'", "''")
    # pgbench reads ":name" anywhere in a statement as a variable, inside quotes too.
    text = COLON_NAME.sub(":' || '", text)
    quoted = f"'{text}'"
    return f"({quoted})" if "||" in quoted else quoted


def array_of(value: Any) -> list[Any] | None:
    """The elements of a captured array parameter (bench.hooks keeps a list as {"$json": ...}),
    or None for any other value."""
    if isinstance(value, dict) and "$json" in value:
        found = json.loads(value["$json"])
        if isinstance(found, list):
            return found
    return None


@define
class Restated:
    """A pgbench script and what it stands for."""

    script: str
    statements: list[str]
    session_id: str
    account_id: str


def restate(found: Sequence[Transaction], handoff_id: str) -> Restated:
    """The escalation's transactions as a pgbench script (see the module's docstring)."""
    session_id = account_id = ""
    delivery_ids: dict[str, int] = {}
    for txn in found:
        for row in txn.rows:
            sql = str(row["sql"])
            if HANDOFF_INSERT.match(sql):  # alone, or opening a whole escalation's WITH
                session_id = row["params"][2]
                account_id = row["params"][0]
            unnested = UNNESTED_DELIVERIES.search(sql)
            if unnested:
                # PostgreSQL: one array per column, unnested into rows, on its own or as part of
                # an escalation's WITH: the id array is the one its column list names "id".
                arrays = PLACEHOLDER.findall(unnested.group(1))
                column = unnested.group(2).split(", ").index("id")
                ids = array_of(row["params"][int(arrays[column]) - 1]) or []
            elif sql.startswith("INSERT INTO deliveries"):
                # One row per execution (executemany), or all rows in one VALUES list.
                columns = sql[sql.index("(") + 1 : sql.index(")")].split(", ")
                at = columns.index("id")
                flat = [v for p in row["params"] for v in p] if row["many"] else row["params"]
                ids = flat[at :: len(columns)]
            else:
                ids = []
            for k, value in enumerate(ids):
                delivery_ids[value] = k
    if not session_id:
        raise BenchError("no handoff insert in the captured escalation")
    keys = {
        handoff_id: "('pgbh-' || :h)",
        session_id: "('pgbs-' || :s)",
        **{d: f"('pgbd-' || :h || '-{k}')" for d, k in delivery_ids.items()},
    }

    def one(sql: str, params: Sequence[Any]) -> str:
        values = list(params)
        if "UPDATE sessions" in sql:
            set_at = SET_VERSION.search(sql)
            where_at = WHERE_VERSION.search(sql)
            if set_at and where_at:  # keep the pool's sessions matching, run after run
                values[int(set_at.group(1)) - 1] = values[int(where_at.group(1)) - 1]

        def put(match: re.Match[str]) -> str:
            index = int(match.group(1)) - 1
            value = values[index]
            if isinstance(value, str) and value in keys:
                return keys[value]
            items = array_of(value)
            if items is not None:  # an array parameter (unnest): element by element
                return (
                    "ARRAY["
                    + ", ".join(
                        keys[x] if isinstance(x, str) and x in keys else literal(x) for x in items
                    )
                    + "]"
                )
            return literal(value)

        return PLACEHOLDER.sub(put, sql).strip() + ";"

    lines = [
        "-- One escalation's SQL as the handoff adapter issued it (restated by bench/pgbench.py).",
        "\\set h random(1, 9000000000000000)",
        f"\\set s :client_id * {SESSIONS_PER_CLIENT} + random(0, {SESSIONS_PER_CLIENT - 1})",
    ]
    statements: list[str] = []
    for txn in found:
        for row in txn.rows:
            sql = str(row["sql"])
            statements.append(short(sql) + (f" x{len(row['params'])}" if row["many"] else ""))
            if sql in ("BEGIN", "COMMIT", "ROLLBACK"):
                lines.append(sql + ";")
            elif row["many"]:
                lines.append("\\startpipeline")
                lines += [one(sql, params) for params in row["params"]]
                lines.append("\\endpipeline")
            else:
                lines.append(one(sql, row["params"] or []))
    return Restated("\n".join(lines) + "\n", statements, session_id, account_id)


async def prepare_sessions(dsn: str, restated: Restated, clients: int) -> None:
    """Copies of the captured session for pgbench to escalate, `SESSIONS_PER_CLIENT` a client."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            """
            INSERT INTO sessions (account_id, id, owner_id, assignee_id, status, problem_summary,
                                  context, handoff_count, escalation_package, created_at,
                                  updated_at, version)
            SELECT account_id, 'pgbs-' || g, owner_id, assignee_id, 'active', problem_summary,
                   context, 0, NULL, created_at, updated_at, 1
            FROM sessions, generate_series(0, $3::int - 1) AS g
            WHERE account_id = $1 AND id = $2
            """,
            restated.account_id,
            restated.session_id,
            clients * SESSIONS_PER_CLIENT,
        )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


@define
class PgbenchResult:
    tps: float
    p50_ms: float
    p99_ms: float
    transactions: int
    failed: int


def _clear_logs(workdir: Path) -> None:
    for old in workdir.glob("pgbench_log*"):
        old.unlink()


def _keep(path: Path, text: str) -> None:
    path.write_text(text)


def _latencies(workdir: Path) -> list[float]:
    """Each transaction's latency in ms, from pgbench's -l logs (its third field, in µs)."""
    found: list[float] = []
    for log in workdir.glob("pgbench_log*"):
        for line in log.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3:
                found.append(int(parts[2]) / 1000.0)
    return found


async def run_pgbench(
    script: Path, database: str, clients: int, seconds: int, workdir: Path
) -> PgbenchResult:
    _clear_logs(workdir)
    argv = [
        pgbench_binary(), "-n", "-M", "prepared", "-c", str(clients), "-j", "2",
        "-T", str(seconds), "-f", str(script), "-l", "--log-prefix=pgbench_log",
        "-h", PG_HOST, "-p", str(PG_PORT), "-U", PG_USER, database,
    ]  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        *argv, cwd=workdir, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        out, _ = await asyncio.wait_for(process.communicate(), seconds + 60)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise BenchError("pgbench did not finish in time") from None
    text = out.decode(errors="replace")
    tps = re.search(r"tps = ([\d.]+) \(without initial connection time\)", text)
    if process.returncode != 0 or tps is None:
        raise BenchError(f"pgbench failed ({process.returncode}):\n{text[-1500:]}")
    _keep(workdir / "pgbench.out", text)
    failed = re.search(r"number of failed transactions: (\d+)", text)
    latencies = _latencies(workdir)
    return PgbenchResult(
        tps=float(tps.group(1)),
        p50_ms=median(latencies),
        p99_ms=percentile(latencies, 99),
        transactions=len(latencies),
        failed=int(failed.group(1)) if failed else 0,
    )
