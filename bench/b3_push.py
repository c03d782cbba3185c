"""B3: live push to 1,000 open streams, commit → event on each stream.

1,000 seniors hold a stream each (bench.streams, a client process of its own), so every one of
them is online and the escalation reaches them by push, not email. Measured twice on PostgreSQL
(push over LISTEN/NOTIFY, presence in the database, as `HANDOFF_PUSH=auto` chooses): with one
server process holding the streams and taking the escalation, then with two, the streams on one
and the escalation on the other. The server's memory is read with the 1,000 streams open.
"""

from __future__ import annotations

import json

from bench.cpu import CpuMeter
from bench.report import Figure, Outcome, check
from bench.seed import Team, mirror, one_session_escalated, settled, team, token
from bench.stack import BenchError, Child, Context, Databases, Server, rss_mb, running
from bench.stats import median, ms, percentile

STREAMS = 1000
ONE_P99_MS = 100.0
TWO_P99_MS = 250.0
RSS_MB = 250.0


async def _measure(
    ctx: Context, streams_at: Server, escalate_at: Server, t: Team, dsn: str, label: str
) -> tuple[dict[str, float], str]:
    """Figures of one setup, and where the CPU went while it pushed."""
    tokens = ctx.workdir / "b3_tokens.json"
    tokens.write_text(json.dumps([token(t.account_id, s) for s in t.seniors]))
    rss_before = rss_mb(streams_at.pid)
    client = Child(
        "bench.streams", "--port", str(streams_at.port), "--tokens", str(tokens),
        name=f"streams-{label}", workdir=ctx.workdir,
    )  # fmt: skip
    rounds = 1 if ctx.quick else 3
    latencies: list[float] = []
    missing = 0
    try:
        opened = await client.start(ready_timeout=150.0)
        if opened["opened"] != STREAMS:
            raise BenchError(f"opened {opened['opened']} of {STREAMS} streams: {opened}")
        rss_open = rss_mb(streams_at.pid)
        await ctx.sink.reset()
        parties = {"server": streams_at.pid, "sink": ctx.sink.pid, "streams": client.pid}
        if escalate_at is not streams_at:
            parties = {"streams server": streams_at.pid, "escalating server": escalate_at.pid,
                       "sink": ctx.sink.pid, "stream client": client.pid}  # fmt: skip
        meter = CpuMeter(parties).__enter__()
        for _ in range(rounds):
            handoff_id, _, _ = await one_session_escalated(escalate_at.port, t)
            committed = await escalate_at.commit_of(handoff_id)
            got = await client.ask(f"wait {handoff_id} 30", timeout=40.0)
            latencies += [float(a) - committed for a in got["arrivals"]]
            missing += int(got["missing"])
            await settled(dsn, handoff_id, 30.0)
        meter.__exit__()
        rss_after = rss_mb(streams_at.pid)
        emails = (await ctx.sink.stats())["count"]
    finally:
        await client.stop()
    return {
        "p50": ms(median(latencies)),
        "p99": ms(percentile(latencies, 99)),
        "max": ms(max(latencies)) if latencies else float("nan"),
        "missing": float(missing),
        "emails": float(emails),
        "rss_before": rss_before,
        "rss_open": rss_open,
        "rss_after": rss_after,
        "open_seconds": float(opened["seconds"]),
        "events": float(len(latencies)),
    }, meter.describe(rounds, "escalation")


async def run(ctx: Context) -> Outcome:
    outcome = Outcome("B3", "push to 1,000 open streams")
    name = await ctx.databases.fresh("b3")
    url, dsn = Databases.url(name), Databases.dsn(name)
    t = team("b3-account", STREAMS)
    await mirror(url, [t])

    one = ctx.server(name, "b3-one")
    async with running(one):
        single, single_cpu = await _measure(ctx, one, one, t, dsn, "one")
    streams_at = ctx.server(name, "b3-streams")
    escalate_at = ctx.server(name, "b3-escalate")
    async with running(streams_at, escalate_at):
        double, double_cpu = await _measure(ctx, streams_at, escalate_at, t, dsn, "two")

    rss = max(single["rss_open"], single["rss_after"])
    lost = single["missing"] + double["missing"]
    outcome.figures += [
        Figure("B3.one_process_p99_ms", "commit → event p99, one process", single["p99"], "ms",
               f"< {ONE_P99_MS:g} ms", check(single["p99"], single["p99"] < ONE_P99_MS)),
        Figure("B3.two_process_p99_ms", "commit → event p99, two processes", double["p99"],
               "ms", f"< {TWO_P99_MS:g} ms", check(double["p99"], double["p99"] < TWO_P99_MS)),
        Figure("B3.server_rss_mb", "server RSS with 1,000 streams open", rss, "MB",
               f"< {RSS_MB:g} MB", check(rss, rss < RSS_MB)),
        Figure("B3.events_missed", "streams that never got their event", lost, "", "0",
               check(lost, lost == 0)),
        Figure("B3.one_process_p50_ms", "commit → event p50, one process", single["p50"], "ms"),
        Figure("B3.two_process_p50_ms", "commit → event p50, two processes", double["p50"],
               "ms"),
        Figure("B3.rss_per_stream_kb", "server memory per open stream",
               (single["rss_open"] - single["rss_before"]) * 1024 / STREAMS, "KB"),
    ]  # fmt: skip
    for label, r, cpu in (
        ("one process", single, single_cpu),
        ("two processes", double, double_cpu),
    ):
        outcome.notes.append(
            f"{label}: {r['events']:.0f} events over {1 if ctx.quick else 3} escalations, p50 "
            f"{r['p50']:.0f} ms, p99 {r['p99']:.0f} ms, max {r['max']:.0f} ms; 1,000 streams "
            f"opened in {r['open_seconds']:.1f} s; RSS {r['rss_before']:.0f} MB before, "
            f"{r['rss_open']:.0f} MB open, {r['rss_after']:.0f} MB after; emails sent "
            f"instead: {r['emails']:.0f}. {cpu}."
        )
    outcome.notes.append(
        "Commit = the escalation's COMMIT returning in the escalating server (bench.server); "
        "arrival = the stream client reading the event's chunk, same monotonic clock."
    )
    return outcome
