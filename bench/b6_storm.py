"""B6: a storm of escalations, from the first request to the last senior told (SPEC §9, issue 14).

Eight clients, one account each (the escalating engineer and 20 seniors), escalate 400 sessions
at once through the real `handoff serve` on PostgreSQL; the seniors are told by email at one
aiosmtpd sink. Measured per storm: answers/s and their p99; first request → last notice accepted
(or read from a stream), notices/s and escalations/s with everyone told; commit → notice p99.

Side by side in the same run, on the same sink and the same PostgreSQL:
- the seed-style reference (bench/peer.py: `../shared/peer/` in a venv of its own), the same
  storm against it: 400 escalations by 8 clients, 20 recipients each;
- raw aiosmtplib sending the very messages the first handoff storm sent, on reused connections
  opened before the clock starts: the limit of the mail path. First alone, on 1, 2, 4, 8 and 16
  connections (and on, doubling, while more is faster); then, as the issue asks, *while the
  requests are running*: the pool sizes nearest the best alone, each in a process of its own
  (bench.rawsend) started with the same storm of requests, sent to a handoff server in the same
  layout that sends nothing (no worker; its own database). The target ratio is the handoff
  storm's first request → last email ÷ raw's first request → last email, best pool, both with
  the requests running; the ratio to raw alone is reported beside it;
- a mixed storm: a quarter of the seniors (5 per account) hold open streams (bench.streams), so
  they are told by push and the rest by email; commit → push read, p99, during the storm.

Every notice is counted per recipient and escalation (emails at the sink by envelope recipient and
the claim link's handoff id; pushes per stream): lost, duplicated and unexpected are reported, not
asserted. Rounds alternate handoff and reference so that both see the machine in the same state.
`python -m bench b6` runs B6 alone (`--quick`: 80 escalations a storm, one round).
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from attrs import define, field

from bench.b2_fanout import load, raw_send
from bench.peer import Reference, seeded
from bench.report import Figure, Outcome, check
from bench.seed import Team, escalate_request, mirror, start_sessions, team, token
from bench.stack import BenchError, Child, Context, Databases, Server, running
from bench.stats import median, ms, percentile
from bench.storm import NOTICE_SECONDS, Listeners, Storm, Target, fire, run_storm, settler
from bench.wire import HttpConnection

CLIENTS = 8
# The PostgreSQL layout the README gives for storms: `serve --no-worker` sends nothing itself and
# one `handoff worker` beside it sends SPLIT batches at once on SMTP_POOL connections (a second
# core for the mail path). BENCH_B6_SPLIT=0 measures one `serve` process as shipped.
SPLIT = int(os.environ.get("BENCH_B6_SPLIT", "4"))
SMTP_POOL = int(os.environ.get("BENCH_B6_POOL", "8"))
WORKER_NICE = int(os.environ.get("BENCH_B6_WORKER_NICE", "5"))  # `nice -n 5 handoff worker`
# `handoff serve --workers N`: N server processes under uvicorn's supervisor (1: one process).
SERVE_WORKERS = int(os.environ.get("BENCH_B6_SERVE_WORKERS", "1"))
SENIORS = 20
ONLINE = SENIORS // 4  # seniors per account holding a stream in the mixed storm
WARM = 2  # escalations per client before the first storm (server and reference alike)
CONNECTIONS = (1, 2, 4, 8, 16)
MAX_CONNECTIONS = 64
PEER_NOTICE_SECONDS = 5.0  # the reference answers after sending: what is not in by then is lost
TOLD_TARGET = 3.0
RAW_TARGET = 1.5
RAW_NEAR = 1.25  # pool sizes within this of raw's best alone are measured with requests running
ANSWER_P99_MS = 100.0
PUSH_P99_MS = 250.0
# What the reference may fail with (it is someone else's app): noted, and B6 goes on without it.
REFERENCE_FAILED = (BenchError, OSError, asyncio.IncompleteReadError, ValueError)


def _address(t: Team, member_id: str) -> str:
    return f"{member_id}@{t.account_id}.bench.test".lower()


@define
class Handoff:
    """The handoff side: the server, its teams, and every client's escalations, prepared."""

    server: Server
    teams: list[Team]
    requests: list[list[bytes]]
    per_client: int
    online: list[set[str]]  # per client: the seniors holding a stream in the mixed storm
    settle: Callable[[], Awaitable[int]]

    def parties(self, ctx: Context) -> dict[str, int]:
        """The processes whose CPU a storm reports: the server (with `--workers N`, its supervisor
        and every child: CpuMeter counts a process with its descendants), its worker (if split),
        the sink."""
        worker = self.server.worker_pid
        return {"server": self.server.pid, **({"worker": worker} if worker else {}),
                "sink": ctx.sink.pid}  # fmt: skip

    def target(self, parties: dict[str, int]) -> Target:
        return Target("handoff", self.server.port, "id", parties, self.server.commits, self.settle)

    def part(self, k: int) -> list[list[bytes]]:
        """The k-th storm's escalations of every client (after the warm-up ones)."""
        start = WARM + k * self.per_client
        return [r[start : start + self.per_client] for r in self.requests]

    def by_email(self, client: int, _: str) -> tuple[set[str], set[str]]:
        t = self.teams[client]
        return {_address(t, s) for s in t.seniors}, set()

    def mixed(self, client: int, _: str) -> tuple[set[str], set[str]]:
        t = self.teams[client]
        everyone = {_address(t, s) for s in t.seniors}
        pushed = {_address(t, s) for s in self.online[client]}
        return everyone - pushed, pushed


async def _handoff(
    server: Server, database: str, teams: list[Team], per_client: int, storms: int
) -> Handoff:
    """Start the sessions of every storm over HTTP (as the clients' owners) and prepare the
    escalation requests, tokens and all, so that the clock times only the escalations."""
    conns = [HttpConnection("127.0.0.1", server.port) for _ in teams]
    try:
        need = WARM + storms * per_client
        ids = await asyncio.gather(
            *(start_sessions(c, t, need) for c, t in zip(conns, teams, strict=True))
        )
        requests = [
            [escalate_request(c, t, sid) for sid in mine]
            for c, t, mine in zip(conns, teams, ids, strict=True)
        ]
    finally:
        for conn in conns:
            await conn.close()
    return Handoff(
        server=server, teams=teams, requests=requests, per_client=per_client,
        online=[set(t.seniors[:ONLINE]) for t in teams], settle=settler(Databases.dsn(database)),
    )  # fmt: skip


async def _start_reference(ctx: Context, sessions: int) -> tuple[Reference | None, str]:
    """The reference seeded, started and warmed up; or None and why not (the handoff figures
    stand without it)."""
    try:
        reference = await seeded(ctx, CLIENTS, SENIORS, sessions)
    except REFERENCE_FAILED as exc:
        return None, f"{type(exc).__name__}: {exc}"[:300]
    try:
        await reference.peer.start()
        await run_storm(ctx, "reference-warm-up", _aim(reference, {}),
                        reference.part(slice(0, WARM)), reference.expect)  # fmt: skip
    except REFERENCE_FAILED as exc:
        await reference.peer.stop()
        return None, f"{type(exc).__name__}: {exc}"[:300]
    return reference, ""


def _aim(reference: Reference, parties: dict[str, int]) -> Target:
    port = reference.peer.port
    return Target("reference", port, "handoff_id", parties, notice_seconds=PEER_NOTICE_SECONDS)


@define
class Storms:
    """Every measured storm of a run, by system."""

    handoff: list[Storm] = field(factory=list)
    reference: list[Storm] = field(factory=list)
    mixed: list[Storm] = field(factory=list)
    mail: Path | None = None  # the first handoff storm's messages, for raw aiosmtplib to send
    reference_error: str = ""
    mixed_error: str = ""


async def _by_email(ctx: Context, handoff: Handoff, rounds: int, storms: Storms) -> None:
    """The email storms, handoff and reference in turn, so that both see the machine alike."""
    sessions = WARM + rounds * handoff.per_client
    reference, storms.reference_error = await _start_reference(ctx, sessions)
    try:
        for k in range(rounds):
            parties = handoff.parties(ctx)
            storm, mail = await run_storm(ctx, f"handoff-{k + 1}", handoff.target(parties),
                                          handoff.part(k), handoff.by_email,
                                          keep_mail=k == 0)  # fmt: skip
            storms.handoff.append(storm)
            storms.mail = storms.mail or mail
            if reference is None:
                continue
            parties = {"reference": reference.peer.pid, "sink": ctx.sink.pid}
            take = slice(WARM + k * handoff.per_client, WARM + (k + 1) * handoff.per_client)
            try:
                storm, _ = await run_storm(ctx, f"reference-{k + 1}", _aim(reference, parties),
                                           reference.part(take), reference.expect)  # fmt: skip
            except REFERENCE_FAILED as exc:
                storms.reference_error = f"round {k + 1}: {type(exc).__name__}: {exc}"[:300]
                await reference.peer.stop()
                reference = None
                continue
            storms.reference.append(storm)
    finally:
        if reference is not None:
            await reference.peer.stop()


async def _mixed(ctx: Context, handoff: Handoff, rounds: int, storms: Storms) -> None:
    """The mixed storms: a quarter of the seniors hold streams throughout."""
    try:
        listeners = await _open_streams(ctx, handoff)
    except BenchError as exc:  # the email storms' figures stand; the note says why
        storms.mixed_error = str(exc)[:300]
        return
    try:
        parties = {**handoff.parties(ctx), "streams": listeners.child.pid}
        for k in range(rounds):
            storm, _ = await run_storm(
                ctx, f"mixed-{k + 1}", handoff.target(parties), handoff.part(rounds + k),
                handoff.mixed, listeners,
            )  # fmt: skip
            storms.mixed.append(storm)
    finally:
        await listeners.child.stop()


async def run(ctx: Context) -> Outcome:
    outcome = Outcome("B6", "storm: 400 escalations by 8 clients, every senior told")
    per_client = 10 if ctx.quick else 50
    rounds = 1 if ctx.quick else 2
    tries = 1 if ctx.quick else 2
    name = await ctx.databases.fresh("b6")
    teams = [team(f"b6-account-{i}", SENIORS) for i in range(CLIENTS)]
    await mirror(Databases.url(name), teams)
    pool = {"HANDOFF_SMTP_URL": f"smtp://127.0.0.1:{ctx.sink.port}?pool={SMTP_POOL}"}
    server = ctx.server(
        name,
        "b6",
        split=SPLIT,
        env=pool if SMTP_POOL else None,
        workers=SERVE_WORKERS,
        worker_nice=WORKER_NICE,
    )
    storms = Storms()
    async with running(server):
        handoff = await _handoff(server, name, teams, per_client, 2 * rounds)
        await run_storm(ctx, "warm-up", handoff.target({}), [r[:WARM] for r in handoff.requests],
                        handoff.by_email)  # fmt: skip
        await _by_email(ctx, handoff, rounds, storms)
        await _mixed(ctx, handoff, rounds, storms)
    if storms.mail is None:
        raise BenchError("no handoff storm ran")
    raw = await _raw(ctx, storms.mail, tries)
    loaded = await _raw_with_requests(ctx, teams, storms.mail, _with_requests_pools(raw), tries,
                                      per_client)  # fmt: skip
    _figures(outcome, storms, raw, loaded, tries, per_client)
    return outcome


async def _open_streams(ctx: Context, handoff: Handoff) -> Listeners:
    """A stream for each online senior (bench.streams), each named by the address the sink would
    count its emails under."""
    tokens = ctx.workdir / "b6_tokens.json"
    members: list[str] = []
    minted: list[str] = []
    for t, online in zip(handoff.teams, handoff.online, strict=True):
        for senior in sorted(online):
            members.append(_address(t, senior))
            minted.append(token(t.account_id, senior))
    tokens.write_text(json.dumps(minted))
    client = Child("bench.streams", "--port", str(handoff.server.port), "--tokens", str(tokens),
                   name="b6-streams", workdir=ctx.workdir)  # fmt: skip
    opened = await client.start(ready_timeout=60.0)
    if opened["opened"] != len(minted):
        await client.stop()
        raise BenchError(f"opened {opened['opened']} of {len(minted)} streams: {opened}")
    return Listeners(client, members)


def _with_requests_pools(alone: dict[int, float]) -> list[int]:
    """The pool sizes worth measuring with requests running: those within RAW_NEAR of the best
    alone, at most three, fastest first."""
    best = min(alone.values())
    near = [k for k in sorted(alone, key=alone.__getitem__) if alone[k] <= RAW_NEAR * best]
    return near[:3]


async def _raw_with_requests(
    ctx: Context, teams: list[Team], kept: Path, pools: list[int], tries: int, per_client: int
) -> dict[int, float]:
    """Raw aiosmtplib (bench.rawsend, a process of its own) sending the first handoff storm's
    messages while the same storm of requests runs against a handoff server in the same layout
    that sends nothing (`serve --no-worker`, no worker: its notices stay in the outbox, on a
    database of its own). Seconds from the first request to the sink's last acceptance, the
    best of `tries` per pool size."""
    name = await ctx.databases.fresh("b6r")
    await mirror(Databases.url(name), teams)
    pool = {"HANDOFF_SMTP_URL": f"smtp://127.0.0.1:{ctx.sink.port}?pool={SMTP_POOL}"}
    server = ctx.server(name, "b6-requests", split=SPLIT or 1, sends=False,
                        env=pool if SMTP_POOL else None, workers=SERVE_WORKERS)  # fmt: skip
    runs = [k for k in pools for _ in range(tries)]
    best: dict[int, float] = {}
    async with running(server):
        requests = await _handoff(server, name, teams, per_client, len(runs))
        warm = Storm("raw-warm-up")
        await fire(server.port, [r[:WARM] for r in requests.requests], warm, "id")
        for i, connections in enumerate(runs):
            sender = Child("bench.rawsend", "--port", str(ctx.sink.port), "--messages", str(kept),
                           "--connections", str(connections), name=f"b6-rawsend-{i}",
                           workdir=ctx.workdir)  # fmt: skip
            await sender.start()
            try:
                await ctx.databases.vacuum()
                await ctx.sink.reset()
                storm = Storm(f"raw-with-requests-{connections}")
                go = functools.partial(sender.tell, "go")
                _, sent = await asyncio.gather(
                    fire(server.port, requests.part(i), storm, "id", started=go),
                    sender.answer(NOTICE_SECONDS),
                )
            finally:
                await sender.stop()
            stats = await ctx.sink.stats()
            if stats["count"] != sent["sent"] or storm.ok != storm.sent:
                raise BenchError(
                    f"raw with requests: the sink accepted {stats['count']} of {sent['sent']}, "
                    f"{storm.ok} of {storm.sent} requests answered 201"
                )
            took = float(stats["last"]) - min(storm.start, float(sent["start"]))
            best[connections] = min(took, best.get(connections, float("inf")))
    await ctx.sink.reset()
    return best


async def _raw(ctx: Context, kept: Path, tries: int) -> dict[int, float]:
    """Raw aiosmtplib sending the first handoff storm's messages: the best seconds per pool size.

    Every size of CONNECTIONS once, doubling on while the largest is the fastest (up to
    MAX_CONNECTIONS); then the two fastest again until each had `tries` (the machine is shared:
    one slow pass must not decide the limit)."""
    messages = load(kept)
    best: dict[int, float] = {}

    async def measure(connections: int) -> None:
        took = await raw_send(messages, connections, ctx.sink)
        best[connections] = min(took, best.get(connections, float("inf")))

    for connections in CONNECTIONS:
        await measure(connections)
    while min(best, key=best.__getitem__) == max(best) and max(best) < MAX_CONNECTIONS:
        await measure(2 * max(best))
    for connections in sorted(best, key=best.__getitem__)[:2]:
        for _ in range(tries - 1):
            await measure(connections)
    return best


def _layout() -> str:
    serve = "`handoff serve" + (f" --workers {SERVE_WORKERS}" if SERVE_WORKERS > 1 else "")
    processes = (
        f"{SERVE_WORKERS} server processes under uvicorn's supervisor"
        if SERVE_WORKERS > 1
        else "one process"
    )
    nice = f"nice -n {WORKER_NICE} " if WORKER_NICE else ""
    if not SPLIT:
        return f"Handoff: {serve}` ({processes}, uvicorn, delivery worker in-process)."
    return (
        f"Handoff: the storm layout the README gives for PostgreSQL: {serve} --no-worker` "
        f"({processes}, HANDOFF_DISPATCH_CONCURRENCY=0) and one "
        f"`{nice}handoff worker` beside it "
        f"(HANDOFF_WORKER_LANES={SPLIT}, an SMTP pool of {SMTP_POOL} connections)."
    )


def _median(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return median(known) if known and len(known) == len(values) else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def _connections(k: int) -> str:
    return f"{k} connection" + ("s" if k > 1 else "")


def _figures(
    outcome: Outcome,
    storms: Storms,
    raw: dict[int, float],
    loaded: dict[int, float],
    tries: int,
    per_client: int,
) -> None:
    handoff, mixed, peer = storms.handoff, storms.mixed, storms.reference
    best_k = min(raw, key=lambda k: raw[k])
    loaded_k = min(loaded, key=lambda k: loaded[k])
    told = _median([s.told_per_s() for s in handoff])
    peer_told = _median([s.told_per_s() for s in peer]) if peer else None
    told_ratio = _ratio(told, peer_told)
    span = _median([s.span for s in handoff])
    raw_ratio = _ratio(span, loaded[loaded_k])
    alone_ratio = _ratio(span, raw[best_k])
    answers = [x for s in handoff for x in s.latencies]
    answer_p99 = ms(percentile(answers, 99))
    pushes = [x for s in mixed for x in s.commit_to_push]
    push_p99 = ms(percentile(pushes, 99)) if pushes else None
    errors = sum(s.sent - s.ok for s in handoff + mixed)
    lost = sum(s.lost for s in handoff + mixed)
    dup = sum(s.duplicated + s.unexpected for s in handoff + mixed)
    notices = [x for s in handoff for x in s.commit_to_notice]
    mixed_notices = [x for s in mixed for x in s.commit_to_notice]
    peer_answers = [x for s in peer for x in s.latencies]

    def ms_or_none(seconds: float | None) -> float | None:
        return None if seconds is None else ms(seconds)

    outcome.figures += [
        Figure("B6.told_ratio_to_reference",
               "escalations/s with every senior told ÷ seed-style reference", told_ratio, "x",
               f"≥ {TOLD_TARGET:g}x", check(told_ratio, told_ratio is not None
                                             and told_ratio >= TOLD_TARGET)),
        Figure("B6.ratio_to_raw_smtp",
               "first request → last email ÷ raw aiosmtplib's, best pool, requests running",
               raw_ratio, "x", f"≤ {RAW_TARGET:g}x", check(raw_ratio, raw_ratio is not None
                                                          and raw_ratio <= RAW_TARGET)),
        Figure("B6.answer_p99_ms", "escalation answer p99 in the storm", answer_p99, "ms",
               f"≤ {ANSWER_P99_MS:g} ms", check(answer_p99, answer_p99 <= ANSWER_P99_MS)),
        Figure("B6.push_p99_ms", "commit → push read p99, mixed storm", push_p99, "ms",
               f"≤ {PUSH_P99_MS:g} ms", check(push_p99, push_p99 is not None
                                              and push_p99 <= PUSH_P99_MS)),
        Figure("B6.lost_or_duplicated", "notices lost + duplicated or unexpected, all storms",
               float(lost + dup), "", "0", check(float(lost + dup), lost + dup == 0)),
        Figure("B6.errors", "escalations not answered 201, all handoff storms", float(errors),
               "", "0", check(float(errors), errors == 0)),
        Figure("B6.requests_per_s", "escalation answers/s, 8 clients",
               _median([s.requests_per_s for s in handoff]), "req/s"),
        Figure("B6.first_request_to_last_email_ms", "first request → last email accepted",
               ms_or_none(span), "ms"),
        Figure("B6.told_per_s", "escalations/s with every senior told", told, "/s"),
        Figure("B6.notices_per_s", "notices/s (emails accepted)",
               _median([s.notices_per_s() for s in handoff]), "/s"),
        Figure("B6.emails_by_last_answer_share",
               "emails accepted by the storm's last answer ÷ emails planned",
               _median([s.emails_by_last_answer / max(s.emails, 1) for s in handoff]), "x"),
        Figure("B6.commit_to_notice_p99_ms", "commit → email accepted p99",
               ms(percentile(notices, 99)) if notices else None, "ms"),
        Figure("B6.raw_with_requests_ms",
               f"raw aiosmtplib, requests running: first request → last email, "
               f"{_connections(loaded_k)}", ms(loaded[loaded_k]), "ms"),
        Figure("B6.ratio_to_raw_smtp_alone",
               "first request → last email ÷ raw aiosmtplib alone (no requests), best pool",
               alone_ratio, "x"),
        Figure("B6.raw_best_ms", f"raw aiosmtplib alone, same messages, {_connections(best_k)}",
               ms(raw[best_k]), "ms"),
        Figure("B6.reference_requests_per_s", "seed-style reference: answers/s",
               _median([s.requests_per_s for s in peer]) if peer else None, "req/s"),
        Figure("B6.reference_answer_p99_ms", "seed-style reference: answer p99",
               ms(percentile(peer_answers, 99)) if peer_answers else None, "ms"),
        Figure("B6.reference_first_request_to_last_email_ms",
               "seed-style reference: first request → last email",
               ms_or_none(_median([s.span for s in peer])) if peer else None, "ms"),
        Figure("B6.reference_told_per_s", "seed-style reference: escalations/s, everyone told",
               peer_told, "/s"),
        Figure("B6.mixed_first_request_to_last_notice_ms",
               "mixed storm: first request → last notice (email or push)",
               ms_or_none(_median([s.span for s in mixed])), "ms"),
        Figure("B6.mixed_notices_per_s", "mixed storm: notices/s (emails and pushes)",
               _median([s.notices_per_s() for s in mixed]), "/s"),
        Figure("B6.mixed_commit_to_notice_p99_ms", "mixed storm: commit → notice p99",
               ms(percentile(mixed_notices, 99)) if mixed_notices else None, "ms"),
        Figure("B6.mixed_answer_p99_ms", "mixed storm: answer p99",
               ms(percentile([x for s in mixed for x in s.latencies], 99)), "ms"),
    ]  # fmt: skip
    escalations = CLIENTS * per_client
    outcome.notes += [
        f"Each storm: {escalations} escalations, {CLIENTS} keep-alive clients sending "
        f"{per_client} each back to back, all at once; {SENIORS} seniors per account; {WARM} "
        "warm-up escalations per client before the first storm on each system. Rounds alternate "
        "handoff and reference; the figures are medians over the rounds, p99s over all samples.",
        *[s.describe() for s in handoff + peer + mixed],
        "Raw aiosmtplib alone (no requests running), the first handoff storm's "
        f"{SENIORS * escalations:,} messages, best of up to {tries} per pool: "
        + ", ".join(
            f"{k} conn {ms(v):.0f} ms ({SENIORS * escalations / v:,.0f}/s)" for k, v in raw.items()
        )
        + ". Raw aiosmtplib with the requests running (the same storm of requests at a handoff "
        "server in the same layout that sends nothing; the sender a process of its own), first "
        f"request → last email, best of {tries} per pool: "
        + ", ".join(f"{k} conn {ms(v):.0f} ms" for k, v in loaded.items())
        + ".",
        _layout() + " Reference: `../shared/peer/seedstyle_app.py` as its README runs it "
        "(uvicorn defaults, SQLAlchemy pool 5, a new SMTP connection per email inside the "
        "request), in its own venv, on its own database of the same PostgreSQL; its sessions "
        "carry its seed's context.",
        f"Mixed storm: {ONLINE} of {SENIORS} seniors per account hold a stream (bench.streams), "
        "told by push; the others by email. Commit = the escalation's COMMIT returning in the "
        "server (bench.server); accepted = the sink's reply to DATA; read = the stream client "
        "reading the event's chunk; all on the same monotonic clock.",
        "Counted per (recipient, escalation): emails by envelope recipient and the claim link's "
        "handoff id, pushes per stream. Lost = a senior never told of an escalation; duplicated "
        "= more than one notice for a pair; unexpected = a notice to someone not planned; other "
        "channel = an email where a push was planned or the reverse (counted, not a loss).",
    ]
    if storms.mixed_error:
        outcome.notes.append(f"Mixed storm not measured: {storms.mixed_error}")
    if storms.reference_error:
        outcome.notes.append(f"Seed-style reference not measured: {storms.reference_error}")
