"""B4: 50 claimers race for each escalation over HTTP, round after round.

Every round escalates a fresh session, then 50 seniors, each on a keep-alive connection of their
own, send their claim at once. Exactly one may win (200); every other must be told 409
`already_claimed` naming that winner. Latency is each claim request's, as its claimer saw it.
"""

from __future__ import annotations

import asyncio
import json

from bench.cpu import CpuMeter
from bench.report import Figure, Outcome, check
from bench.seed import escalate, mirror, start_sessions, team, token
from bench.stack import Context, Databases, running
from bench.stats import median, ms, percentile
from bench.wire import HttpConnection

CLAIMERS = 50
P99_BUDGET_MS = 100.0
WARM_ROUNDS = 2


async def run(ctx: Context) -> Outcome:
    outcome = Outcome("B4", "claim contention, 50 claimers")
    rounds = 10 if ctx.quick else 100
    window = 30.0 if ctx.quick else 120.0
    name = await ctx.databases.fresh("b4")
    t = team("b4-account", CLAIMERS)
    await mirror(Databases.url(name), [t])
    server = ctx.server(name, "b4")
    latencies: list[float] = []
    exactly_one = 0
    played = 0
    most_winners = 0
    wrong_answers = 0
    loop = asyncio.get_running_loop()
    async with running(server):
        lead = HttpConnection("127.0.0.1", server.port)
        claimers = [HttpConnection("127.0.0.1", server.port) for _ in range(CLAIMERS)]
        tokens = [token(t.account_id, s) for s in t.seniors]
        try:
            sessions = await start_sessions(lead, t, rounds + WARM_ROUNDS)
            deadline = loop.time() + window
            meter = CpuMeter({"server": server.pid, "sink": ctx.sink.pid}).__enter__()
            for r, session_id in enumerate(sessions):
                if loop.time() >= deadline:
                    break
                handoff_id = await escalate(lead, t, session_id)
                path = f"/api/v1/handoffs/{handoff_id}/claim"
                raws = [c.encode("POST", path, token=tokens[i]) for i, c in enumerate(claimers)]

                async def claim(i: int, raws: list[bytes] = raws) -> tuple[int, bytes, float]:
                    start = loop.time()
                    status, body = await claimers[i].send(raws[i])
                    return status, body, loop.time() - start

                results = await asyncio.gather(*(claim(i) for i in range(CLAIMERS)))
                if r < WARM_ROUNDS:
                    continue
                played += 1
                winners = [t.seniors[i] for i, (s, _, _) in enumerate(results) if s == 200]
                most_winners = max(most_winners, len(winners))
                if len(winners) == 1:
                    exactly_one += 1
                for status, body, took in results:
                    latencies.append(took)
                    if status == 200:
                        continue
                    answer = json.loads(body) if body else {}
                    if not (
                        status == 409
                        and answer.get("error") == "already_claimed"
                        and winners
                        and answer.get("claimed_by") == winners[0]
                    ):
                        wrong_answers += 1
            meter.__exit__()
        finally:
            for conn in (lead, *claimers):
                await conn.close()
    share = exactly_one / played if played else float("nan")
    p50, p99 = ms(median(latencies)), ms(percentile(latencies, 99))
    outcome.figures += [
        Figure("B4.rounds_with_one_winner", "rounds with exactly one winner ÷ rounds", share,
               "x", "= 1x", check(share, exactly_one == played)),
        Figure("B4.p99_ms", "claim p99 over HTTP, 50 at once", p99, "ms",
               f"< {P99_BUDGET_MS:g} ms", check(p99, p99 < P99_BUDGET_MS)),
        Figure("B4.wrong_answers", "losers not told 409 already_claimed by the winner",
               float(wrong_answers), "", "0", check(float(wrong_answers), wrong_answers == 0)),
        Figure("B4.p50_ms", "claim p50 over HTTP", p50, "ms"),
        Figure("B4.most_winners", "most winners in one round", float(most_winners)),
        Figure("B4.rounds", "rounds played", float(played)),
    ]  # fmt: skip
    outcome.notes.append(
        f"{played} rounds (after {WARM_ROUNDS} warm-up rounds; bounded at {rounds} and "
        f"{window:g} s), {len(latencies):,} claims; each escalation also sends its 50 emails to "
        "the sink in the background while the claims race."
    )
    outcome.notes.append(meter.describe(len(latencies) + played, "request") + ".")
    return outcome
