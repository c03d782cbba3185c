"""B5: the escalation policy's plan for accounts of 100 to 100,000 members, in process.

An account here looks like a real one: mostly engineers, an owner and admins, a tenth viewers, a
fiftieth inactive, a tenth online. Each size is planned repeatedly for a time budget and the
median run counts. The limit: under 1 s at 100,000 members, and time per member flat across sizes
(largest ÷ smallest ns/member; 1.5x is taken as flat). Times are the thread's CPU time.
"""

from __future__ import annotations

import gc
import time
from datetime import UTC, datetime

from bench.report import Figure, Outcome, check
from bench.stack import Context
from bench.stats import median
from handoff_core.model import EscalationPolicy, Handoff, Member, Role, Session
from handoff_core.policy import IdFactory, new_id, plan

SIZES = (100, 1_000, 10_000, 100_000)
LIMIT_SECONDS = 1.0
FLAT = 1.5


def account(size: int) -> tuple[Handoff, list[Member], frozenset[str]]:
    now = datetime.now(UTC)
    members: list[Member] = []
    for i in range(size):
        role = Role.OWNER if i == 0 else Role.ADMIN if i < 5 else Role.ENGINEER
        if i % 10 == 9:
            role = Role.VIEWER
        members.append(
            Member(
                id=f"m{i:06d}",
                account_id="b5",
                email=f"m{i:06d}@b5.bench.test",
                name=f"Member {i}",
                role=role,
                active=i % 50 != 49,
            )
        )
    escalator = members[1]
    session = Session.start(id="s1", owner=escalator, problem_summary="B5", context={}, now=now)
    handoff = session.escalate(
        escalator, handoff_id="h1", notes="", policy=EscalationPolicy(), now=now
    )
    online = frozenset(m.id for m in members[::10])
    return handoff, members, online


def time_plan(size: int, budget: float, make_id: IdFactory = new_id) -> tuple[float, int]:
    """Median CPU seconds of one plan for `size` members, and how many deliveries it made.

    CPU time of this thread, not wall time: the plan is a pure function, and on a machine shared
    with other work the wall clock would measure the neighbours too.
    """
    handoff, members, online = account(size)
    policy = handoff.policy or EscalationPolicy()
    now = datetime.now(UTC)
    runs: list[float] = []
    made = 0
    spent = 0.0
    while (spent < budget or len(runs) < 5) and len(runs) < 1000:
        start = time.thread_time()
        planned = plan(handoff, members, online, policy, now, make_id)
        took = time.thread_time() - start
        made = len(planned)
        del planned
        runs.append(took)
        spent += took
    return median(runs), made


async def run(ctx: Context) -> Outcome:
    quick = ctx.quick
    outcome = Outcome("B5", "policy plan, 100 to 100,000 members")
    budget = 0.1 if quick else 0.6
    per_member: dict[int, float] = {}
    seconds: dict[int, float] = {}
    gc.collect()
    for size in SIZES:
        took, made = time_plan(size, budget)
        seconds[size] = took
        per_member[size] = took / size * 1e9
        outcome.notes.append(
            f"{size:,} members: {took * 1000:.2f} ms per plan, {per_member[size]:.0f} ns/member, "
            f"{made:,} deliveries planned"
        )
    largest, smallest = SIZES[-1], SIZES[0]
    flatness = per_member[largest] / per_member[smallest]
    outcome.figures += [
        Figure(
            "B5.ratio_to_limit_100k",
            f"plan at {largest:,} members ÷ {LIMIT_SECONDS:g} s",
            seconds[largest] / LIMIT_SECONDS,
            "x",
            "< 1x",
            check(seconds[largest], seconds[largest] < LIMIT_SECONDS),
        ),
        Figure(
            "B5.flatness",
            "ns/member at largest ÷ at smallest",
            flatness,
            "x",
            f"≤ {FLAT:g}x",
            check(flatness, flatness <= FLAT),
        ),
    ]
    for size in SIZES:
        outcome.figures.append(
            Figure(f"B5.ns_per_member_{size}", f"ns/member at {size:,}", per_member[size], "ns")
        )
    outcome.figures.append(
        Figure("B5.ms_at_100k", f"one plan at {largest:,} members", seconds[largest] * 1000, "ms")
    )
    outcome.notes.append(
        "Pure function, in the harness's own process, as the server calls it: ids from "
        "handoff_core.policy.new_id, and the garbage collector on (the plan pauses it while it "
        "makes its deliveries; see handoff_core.policy.collector_paused)."
    )
    return outcome
