"""B2: one escalation to 1,000 offline seniors, commit → last email accepted by the sink.

The limit is raw aiosmtplib sending the very same 1,000 messages (kept by the sink from a warm-up
escalation) to the same sink on 1, 2, 4 and 8 reused connections, opened before the clock
starts; the best of those counts. The server runs as shipped (its SMTP pool at the default size).
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import deque
from pathlib import Path

import aiosmtplib
from attrs import frozen

from bench.cpu import CpuMeter
from bench.report import Figure, Outcome, check
from bench.seed import mirror, one_session_escalated, settled, team
from bench.stack import BenchError, Context, Databases, Sink, running
from bench.stats import median, ms

RECIPIENTS = 1000
CONNECTIONS = (1, 2, 4, 8)
TARGET = 1.25


@frozen
class Message:
    sender: str
    recipients: list[str]
    data: bytes


def load(path: Path) -> list[Message]:
    found = []
    for line in path.read_text().splitlines():
        row = json.loads(line)
        found.append(Message(row["from"], row["to"], row["data"].encode("latin-1")))
    return found


def pauses(times: list[float], over: float = 0.02) -> tuple[int, float]:
    """How often, and for how long in all, the sink accepted nothing for more than `over` s."""
    ordered = sorted(times)
    gaps = [b - a for a, b in itertools.pairwise(ordered) if b - a > over]
    return len(gaps), sum(gaps)


async def send_all(messages: list[Message], pool: list[aiosmtplib.SMTP]) -> None:
    """Every message, each connection of `pool` taking the next one as soon as it is free."""
    queue = deque(messages)

    async def work(conn: aiosmtplib.SMTP) -> None:
        while queue:
            m = queue.popleft()
            await conn.sendmail(m.sender, m.recipients, m.data)

    await asyncio.gather(*(work(c) for c in pool))


async def raw_send(messages: list[Message], connections: int, sink: Sink) -> float:
    """Seconds from the first send to the sink's last acceptance, on `connections` connections."""
    pool = [aiosmtplib.SMTP(hostname="127.0.0.1", port=sink.port, timeout=30) for _ in range(
        connections)]  # fmt: skip
    for conn in pool:
        await conn.connect()
    await sink.reset()
    loop = asyncio.get_running_loop()
    try:
        start = loop.time()
        await asyncio.wait_for(send_all(messages, pool), 120)
    finally:
        for conn in pool:
            await conn.quit()
    stats = await sink.stats()
    if stats["count"] != len(messages):
        raise BenchError(f"raw send: the sink accepted {stats['count']} of {len(messages)}")
    return float(stats["last"]) - start


async def run(ctx: Context) -> Outcome:
    outcome = Outcome("B2", "fan-out to 1,000 offline seniors by email")
    runs = 1 if ctx.quick else 3
    name = await ctx.databases.fresh("b2")
    t = team("b2-account", RECIPIENTS)
    await mirror(Databases.url(name), [t])
    server = ctx.server(name, "b2")
    kept = ctx.workdir / "b2_messages.jsonl"
    spans: list[float] = []
    recorded: list[float] = []
    requests: list[float] = []
    stalls: list[tuple[int, float]] = []
    async with running(server):
        for i in range(runs + 1):  # the first is a warm-up, whose messages the sink keeps
            await ctx.sink.reset(keep=i == 0)
            with CpuMeter({"server": server.pid, "sink": ctx.sink.pid}) as meter:
                handoff_id, sent, answered = await one_session_escalated(server.port, t)
                committed = await server.commit_of(handoff_id)
                stats = await ctx.sink.wait_for(RECIPIENTS, 60.0)
                if stats["count"] < RECIPIENTS:
                    raise BenchError(f"the sink got {stats['count']} of {RECIPIENTS} in 60 s")
                done = await settled(Databases.dsn(name), handoff_id, 60.0)
            if i == 0:
                await ctx.sink.ask(f"dump {kept}")
                continue
            spans.append(float(stats["last"]) - committed)
            requests.append(answered - sent)
            stalls.append(pauses((await ctx.sink.ask("times"))["times"]))
            if done is not None:
                recorded.append(done - committed)
    messages = load(kept)
    if len(messages) != RECIPIENTS:
        raise BenchError(f"kept {len(messages)} messages, expected {RECIPIENTS}")
    raw: dict[int, float] = {}
    raw_meter: dict[int, CpuMeter] = {}
    for connections in CONNECTIONS:
        for _ in range(1 if ctx.quick else 2):
            with CpuMeter({"sink": ctx.sink.pid}) as timed:
                took = await raw_send(messages, connections, ctx.sink)
            if took < raw.get(connections, float("inf")):
                raw[connections], raw_meter[connections] = took, timed
    best_k = min(raw, key=lambda k: raw[k])
    span = median(spans)
    ratio = span / raw[best_k]
    outcome.figures += [
        Figure(
            "B2.ratio_to_raw_smtp", "commit → last email accepted ÷ raw aiosmtplib, best pool",
            ratio, "x", f"≤ {TARGET:g}x", check(ratio, ratio <= TARGET),
        ),
        Figure("B2.commit_to_last_email_ms", "commit → 1,000th email accepted", ms(span), "ms"),
        Figure("B2.raw_best_ms", f"raw aiosmtplib, 1,000 messages, {best_k} connections",
               ms(raw[best_k]), "ms"),
        Figure("B2.raw_best_connections", "best number of reused connections", float(best_k)),
        Figure("B2.escalation_request_ms", "the escalation request itself (1,000 recipients)",
               ms(median(requests)), "ms"),
        Figure("B2.commit_to_all_recorded_ms", "commit → every outcome recorded",
               ms(median(recorded)) if recorded else None, "ms"),
    ]  # fmt: skip
    outcome.notes += [
        f"Handoff: median of {runs} escalations after one warm-up (times: "
        + ", ".join(f"{ms(s):.0f} ms" for s in spans)
        + f"); {RECIPIENTS / span:,.0f} emails/s.",
        "Raw aiosmtplib, the same 1,000 messages: "
        + ", ".join(f"{k} conn {ms(v):.0f} ms ({RECIPIENTS / v:,.0f}/s)" for k, v in raw.items())
        + ".",
        f"Last handoff run, escalation to settled: {meter.describe(RECIPIENTS, 'email')}.",
        f"Best raw run: {raw_meter[best_k].describe(RECIPIENTS, 'email')} (harness = the raw "
        "aiosmtplib sender).",
        "Stalls (the sink accepting nothing for over 20 ms) per handoff run: "
        + ", ".join(f"{n} totalling {ms(total):.0f} ms" for n, total in stalls)
        + "; raw sending has none to speak of.",
        "Commit = the escalation's COMMIT returning in the server (logged by bench.server); "
        "accepted = the sink's 250 reply to DATA, on the same monotonic clock.",
    ]
    return outcome
