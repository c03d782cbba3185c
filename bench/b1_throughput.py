"""B1: escalation throughput over HTTP on PostgreSQL, against pgbench running the same SQL.

Eight clients, each with its own account: the escalating engineer and 20 offline seniors, so
every escalation plans 20 emails, which the server sends to the sink in the background while the
load goes on. The sessions are started beforehand over HTTP; only the escalation requests are
timed. Then the server stops and pgbench runs, with the same number of clients, the statements the
server issued for one escalation (bench/pgbench.py), on the same database.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time

from bench.cpu import CpuMeter
from bench.pgbench import escalation_transactions, prepare_sessions, restate, run_pgbench
from bench.report import Figure, Outcome, check
from bench.seed import Team, escalate_request, mirror, one_session_escalated, start_sessions, team
from bench.stack import Context, Databases, rss_mb, running
from bench.stats import median, ms, percentile
from bench.wire import HttpConnection

CLIENTS = 8
SENIORS = 20
RATIO_TARGET = 0.5
P99_BUDGET_MS = 50.0
DRAIN_SECONDS = 30.0


async def _client(
    conn: HttpConnection, requests: list[bytes], deadline: float, latencies: list[float]
) -> list[int]:
    loop = asyncio.get_running_loop()
    statuses: list[int] = []
    for raw in requests:
        if loop.time() >= deadline:
            break
        start = loop.time()
        status, _ = await conn.send(raw)
        latencies.append(loop.time() - start)
        statuses.append(status)
    return statuses


async def _escalate_all(
    conns: list[HttpConnection], teams: list[Team], ids: list[list[str]]
) -> None:
    async def one(i: int) -> None:
        for session_id in ids[i]:
            status, body = await conns[i].send(escalate_request(conns[i], teams[i], session_id))
            if status != 201:
                raise RuntimeError(f"warm-up escalation answered {status}: {body[:200]!r}")

    await asyncio.gather(*(one(i) for i in range(len(conns))))


async def run(ctx: Context) -> Outcome:
    outcome = Outcome("B1", "escalation throughput, HTTP on PostgreSQL vs pgbench")
    per_client = 25 if ctx.quick else 300
    warm = 5 if ctx.quick else 15
    window = 8.0 if ctx.quick else 25.0
    pg_seconds = 5 if ctx.quick else 15

    name = await ctx.databases.fresh("b1")
    teams = [team(f"b1-account-{i}", SENIORS) for i in range(CLIENTS)]
    await mirror(Databases.url(name), teams)
    await ctx.sink.reset()
    server = ctx.server(name, "b1", sql_log=True)
    loop = asyncio.get_running_loop()
    async with running(server):
        # One escalation alone, its SQL captured for pgbench; then capture stops.
        captured, sent, _ = await one_session_escalated(server.port, teams[0])
        committed = await server.commit_of(captured)
        await ctx.sink.wait_for(SENIORS, 10.0)
        await asyncio.sleep(0.3)
        server.signal(signal.SIGUSR1)

        conns = [HttpConnection("127.0.0.1", server.port) for _ in range(CLIENTS)]
        try:
            ids = await asyncio.gather(
                *(start_sessions(conns[i], teams[i], warm + per_client) for i in range(CLIENTS))
            )
            await _escalate_all(conns, teams, [s[:warm] for s in ids])
            await ctx.sink.wait_for(SENIORS * (1 + warm * CLIENTS), 30.0)
            requests = [
                [escalate_request(conns[i], teams[i], sid) for sid in ids[i][warm:]]
                for i in range(CLIENTS)
            ]
            latencies: list[float] = []
            sink_before = (await ctx.sink.stats())["count"]
            with CpuMeter({"server": server.pid, "sink": ctx.sink.pid}) as meter:
                start = loop.time()
                statuses = await asyncio.gather(
                    *(
                        _client(conns[i], requests[i], start + window, latencies)
                        for i in range(CLIENTS)
                    )
                )
                elapsed = loop.time() - start
            cpu = meter.spent["server"]
            sink_after = await ctx.sink.stats()
            rss = rss_mb(server.pid)
            done = [s for client in statuses for s in client]
            expected = SENIORS * len(done)
            drain_start = time.monotonic()
            drained = await ctx.sink.wait_for(sink_before + expected, DRAIN_SECONDS)
            drain = time.monotonic() - drain_start
        finally:
            for conn in conns:
                await conn.close()

    ok = sum(1 for s in done if s == 201)
    rps = ok / elapsed
    p50, p99 = ms(median(latencies)), ms(percentile(latencies, 99))

    assert server.sql_log is not None  # the server was started with sql_log=True
    found = escalation_transactions(server.sql_log, teams[0].account_id, sent, committed)
    restated = restate(found, captured)
    script = ctx.workdir / "b1_escalation.pgbench.sql"
    script.write_text(restated.script)
    await prepare_sessions(Databases.dsn(name), restated, CLIENTS)
    with CpuMeter({}) as pg_meter:
        pg = await run_pgbench(script, name, CLIENTS, pg_seconds, ctx.workdir)

    ratio = rps / pg.tps
    outcome.figures += [
        Figure(
            "B1.ratio_to_pgbench", "HTTP escalations/s ÷ pgbench TPS of the same SQL", ratio, "x",
            f"≥ {RATIO_TARGET:g}x", check(ratio, ratio >= RATIO_TARGET),
        ),
        Figure(
            "B1.p99_ms", "escalation p99 over HTTP", p99, "ms", f"< {P99_BUDGET_MS:g} ms",
            check(p99, p99 < P99_BUDGET_MS),
        ),
        Figure(
            "B1.errors", "escalations not answered 201", float(len(done) - ok), "", "0",
            check(float(ok), ok == len(done)),
        ),
        Figure("B1.requests_per_s", "escalations/s over HTTP, 8 clients", rps, "req/s"),
        Figure("B1.p50_ms", "escalation p50 over HTTP", p50, "ms"),
        Figure("B1.pgbench_tps", "pgbench TPS, same SQL, 8 clients", pg.tps, "tps"),
        Figure("B1.pgbench_p50_ms", "pgbench latency p50", pg.p50_ms, "ms"),
        Figure("B1.pgbench_p99_ms", "pgbench latency p99", pg.p99_ms, "ms"),
        Figure(
            "B1.server_cpu_ms_per_escalation", "server CPU in the window ÷ escalations",
            cpu * 1000 / max(ok, 1), "ms",
        ),
        Figure(
            "B1.emails_sent_in_window_share", "emails accepted in the window ÷ emails planned",
            (sink_after["count"] - sink_before) / max(expected, 1), "x",
        ),
        Figure("B1.server_rss_mb", "server RSS after the run", rss, "MB"),
    ]  # fmt: skip
    accepted = sink_after["count"] - sink_before
    outcome.notes += [
        f"{ok:,} escalations in {elapsed:.1f} s by {CLIENTS} keep-alive clients (bounded at "
        f"{per_client} each and {window:g} s); {warm} warm-up escalations per client before.",
        "Server: one `handoff serve` process (uvicorn, delivery worker in-process). "
        + meter.describe(ok, "escalation")
        + ".",
        f"Emails accepted by the sink during the window: {accepted:,} of {expected:,} planned "
        f"({accepted / elapsed:,.0f}/s); {drained['count'] - sink_before:,} in all "
        f"{drain:.1f} s after the window (waiting at most {DRAIN_SECONDS:g} s): the delivery "
        "backlog grew while the load ran.",
        f"pgbench: {pg.transactions:,} transactions in {pg_seconds} s, {pg.failed} failed, "
        f"`-M prepared -c {CLIENTS} -j 2`. pgbench phase: {pg_meter.describe()} (other "
        "processes include pgbench itself).",
        "pgbench script (bench/out/<run>/b1_escalation.pgbench.sql), "
        f"{len(restated.statements)} statements per escalation, as captured: "
        + "; ".join(restated.statements)
        .replace("ROLLBACK; ", "ROLLBACK | ")
        .replace("COMMIT; ", "COMMIT | ")
        + ".",
    ]
    (ctx.workdir / "b1_statements.json").write_text(json.dumps(restated.statements, indent=1))
    return outcome
