"""B6: a storm of escalations, from the first request to the last senior told (SPEC §9, issue 14).

Eight clients, one account each (the escalating engineer and 20 seniors), escalate 400 sessions
at once through the real `handoff serve` on PostgreSQL; the seniors are told by email at one
aiosmtpd sink. Measured per storm: answers/s and their p99; first request → last notice accepted
(or read from a stream), notices/s and escalations/s with everyone told; commit → notice p99.

Side by side in the same run, on the same sink and the same PostgreSQL:
- the seed-style reference (bench/peer.py: `../shared/peer/` in a venv of its own), the same
  storm against it: 400 escalations by 8 clients, 20 recipients each;
- raw aiosmtplib sending the very messages the handoff storm sent, on 1, 2, 4 and 8 reused
  connections opened before the clock starts (the best counts): the limit of the mail path. It is
  measured alone, with no requests running; the ratio is the handoff storm's first request → last
  email accepted (requests running) ÷ that;
- a mixed storm: a quarter of the seniors (5 per account) hold open streams (bench.streams), so
  they are told by push and the rest by email; commit → push read, p99, during the storm.

Every notice is counted per recipient and escalation (emails at the sink by envelope recipient and
the claim link's handoff id; pushes per stream): lost, duplicated and unexpected are reported, not
asserted. Rounds alternate handoff and reference so that both see the machine in the same state.
"""

from __future__ import annotations

import asyncio
import email
import json
import re
from collections import Counter
from collections.abc import Callable, Sequence
from email.policy import compat32
from pathlib import Path

from attrs import define, field

from bench.b2_fanout import load, raw_send
from bench.cpu import CpuMeter
from bench.peer import Peer, peer_dir, venv_python
from bench.report import Figure, Outcome, check
from bench.seed import Team, escalate_request, mirror, start_sessions, team, token
from bench.stack import BenchError, Child, Context, Databases, Server, running
from bench.stats import median, ms, percentile
from bench.wire import HttpConnection

CLIENTS = 8
SENIORS = 20
ONLINE = SENIORS // 4  # seniors per account holding a stream in the mixed storm
WARM = 2  # escalations per client before the first storm (server and reference alike)
CONNECTIONS = (1, 2, 4, 8)
NOTICE_SECONDS = 120.0  # at most this long for a storm's last notice after its last answer
SETTLE_SECONDS = 60.0
TOLD_TARGET = 3.0
RAW_TARGET = 1.5
ANSWER_P99_MS = 100.0
PUSH_P99_MS = 250.0
LINK = re.compile(r"/handoffs/([A-Za-z0-9_.~%-]+)")
NOTES = "Stuck on the auth handshake; logs attached in the session"


@define
class Storm:
    """What one storm did, on the monotonic clock every process of this machine shares."""

    label: str
    sent: int = 0  # escalation requests
    ok: int = 0  # answered 201
    latencies: list[float] = field(factory=list)
    start: float = 0.0  # the first request written
    answered: float = 0.0  # the last answer read
    last_notice: float | None = None
    emails: int = 0  # messages accepted by the sink (one per envelope recipient counted below)
    pushes: int = 0
    emails_by_last_answer: int = 0
    lost: int = 0  # (senior, escalation) pairs told by no channel
    duplicated: int = 0  # notices beyond the first for a pair
    unexpected: int = 0  # notices to someone who should not get one
    other_channel: int = 0  # pairs told, but not by the planned channel
    unplaced: int = 0  # emails whose escalation could not be read from the message
    commit_to_notice: list[float] = field(factory=list)
    commit_to_push: list[float] = field(factory=list)
    cpu: str = ""

    @property
    def requests_per_s(self) -> float:
        return self.ok / (self.answered - self.start)

    @property
    def span(self) -> float | None:
        """First request → last notice, seconds."""
        return None if self.last_notice is None else self.last_notice - self.start

    def told_per_s(self) -> float | None:
        span = self.span
        return None if span is None else self.ok / span

    def notices_per_s(self) -> float | None:
        span = self.span
        return None if span is None else (self.emails + self.pushes) / span

    def describe(self) -> str:
        span = self.span
        told = f"{span:.2f} s" if span is not None else "not all within the wait"
        return (
            f"{self.label}: {self.ok}/{self.sent} answered 201 in {self.answered - self.start:.2f} "
            f"s ({self.requests_per_s:.0f}/s, p99 {ms(percentile(self.latencies, 99)):.0f} ms); "
            f"first request → last notice {told}; {self.emails} emails "
            f"({self.emails_by_last_answer} by the last answer) and {self.pushes} pushes; "
            f"lost {self.lost}, duplicated {self.duplicated}, unexpected {self.unexpected}, "
            f"by the other channel {self.other_channel}, unplaced {self.unplaced}. {self.cpu}."
        )


def escalation_of(data: bytes) -> str | None:
    """The handoff id in a message's claim link (its text part decoded), or None."""
    message = email.message_from_bytes(data, policy=compat32)
    for part in message.walk():
        if part.get_content_maintype() != "text":
            continue
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes):
            found = LINK.search(payload.decode("utf-8", "replace"))
            if found:
                return found.group(1)
    return None


def read_mail(path: Path) -> list[tuple[list[str], str | None, float]]:
    """Each kept message of a sink dump: (envelope recipients, handoff id, time accepted)."""
    found = []
    for line in path.read_text().splitlines():
        row = json.loads(line)
        rcpts = [r.lower() for r in row["to"]]
        found.append((rcpts, escalation_of(row["data"].encode("latin-1")), float(row["t"])))
    return found


def tally(
    storm: Storm,
    expected_email: dict[str, set[str]],
    expected_push: dict[str, set[str]],
    mail: Sequence[tuple[list[str], str | None, float]],
    pushes: Sequence[tuple[str, str, float]],
    commits: dict[str, float],
) -> None:
    """Count notices per (recipient, escalation) against what was planned; fill `storm`."""
    got_email: Counter[tuple[str, str]] = Counter()
    got_push: Counter[tuple[str, str]] = Counter()
    last = 0.0
    for rcpts, handoff_id, at in mail:
        storm.emails += 1
        last = max(last, at)
        storm.emails_by_last_answer += at <= storm.answered
        if handoff_id is None:
            storm.unplaced += 1
            continue
        for rcpt in rcpts:
            got_email[rcpt, handoff_id] += 1
        if handoff_id in commits:
            storm.commit_to_notice.append(at - commits[handoff_id])
    for handoff_id, member, at in pushes:
        storm.pushes += 1
        last = max(last, at)
        got_push[member, handoff_id] += 1
        if handoff_id in commits:
            storm.commit_to_notice.append(at - commits[handoff_id])
            storm.commit_to_push.append(at - commits[handoff_id])
    planned = {(who, h) for h, people in expected_email.items() for who in people}
    planned_push = {(who, h) for h, people in expected_push.items() for who in people}
    everyone = planned | planned_push
    for pair in everyone:
        total = got_email[pair] + got_push[pair]
        if total == 0:
            storm.lost += 1
        storm.duplicated += max(0, total - 1)
        if pair in planned and got_email[pair] == 0 and got_push[pair]:
            storm.other_channel += 1
        if pair in planned_push and got_push[pair] == 0 and got_email[pair]:
            storm.other_channel += 1
    storm.unexpected = sum(n for pair, n in (got_email + got_push).items() if pair not in everyone)
    storm.last_notice = last or None


async def _fire(
    port: int, requests: list[list[bytes]], storm: Storm, id_key: str
) -> list[list[str]]:
    """Every client sends its requests one after another, all clients at once; handoff ids."""
    conns = [HttpConnection("127.0.0.1", port) for _ in requests]
    for conn in conns:
        await conn.open()
    loop = asyncio.get_running_loop()

    async def client(conn: HttpConnection, mine: list[bytes]) -> list[str]:
        ids = []
        for raw in mine:
            began = loop.time()
            status, body = await conn.send(raw)
            storm.latencies.append(loop.time() - began)
            if status == 201:
                storm.ok += 1
                ids.append(str(json.loads(body)[id_key]))
        return ids

    storm.sent = sum(len(r) for r in requests)
    try:
        storm.start = loop.time()
        ids = await asyncio.gather(*(client(c, r) for c, r in zip(conns, requests, strict=True)))
        storm.answered = loop.time()
    finally:
        for conn in conns:
            await conn.close()
    return list(ids)


async def _storm(
    ctx: Context,
    storm: Storm,
    port: int,
    requests: list[list[bytes]],
    id_key: str,
    parties: dict[str, int],
    expect: Callable[[int, str], tuple[set[str], set[str]]],
    streams: Child | None = None,
    members: Sequence[str] = (),
    commits: Callable[[], dict[str, float]] = dict,
) -> Path:
    """One storm at `port`; fills `storm` and returns the sink's dump of what it accepted.

    `expect(client, handoff id)` gives who should get an email and who a push.
    """
    await ctx.sink.reset(keep=True)
    with CpuMeter(parties) as meter:
        ids = await _fire(port, requests, storm, id_key)
        expected_email: dict[str, set[str]] = {}
        expected_push: dict[str, set[str]] = {}
        for client, handoff_ids in enumerate(ids):
            for handoff_id in handoff_ids:
                expected_email[handoff_id], expected_push[handoff_id] = expect(client, handoff_id)
        emails = sum(len(v) for v in expected_email.values())
        pushes = sum(len(v) for v in expected_push.values())
        waits = [ctx.sink.wait_for(emails, NOTICE_SECONDS)]
        if streams is not None:
            waits.append(streams.ask(f"collect {pushes} {NOTICE_SECONDS}", NOTICE_SECONDS + 10))
        done = await asyncio.gather(*waits)
    storm.cpu = meter.describe(storm.ok, "escalation")
    dump = ctx.workdir / f"b6-{storm.label}.mail.jsonl"
    await ctx.sink.ask(f"dump {dump}", timeout=60.0)
    await ctx.sink.reset()
    mail = read_mail(dump)
    read: list[tuple[str, str, float]] = []
    if streams is not None:
        read = [(h, members[int(i)], float(t)) for h, i, t in done[1]["events"]]
    tally(storm, expected_email, expected_push, mail, read, commits())
    return dump


async def _settled(dsn: str, timeout: float) -> None:
    """Wait until the server has no delivery pending (every outcome of the storm recorded)."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if await conn.fetchval("SELECT count(*) FROM deliveries WHERE status = 'pending'") == 0:
                return
            await asyncio.sleep(0.05)
        raise BenchError(f"deliveries still pending {timeout:g} s after the storm")
    finally:
        await conn.close()


@define
class Reference:
    """The seed-style reference, seeded: per client, its session ids, escalator and recipients."""

    peer: Peer
    sessions: list[list[int]]
    escalators: list[int]
    recipients: list[set[str]]

    def expect(self, client: int, _: str) -> tuple[set[str], set[str]]:
        """Who should be told of an escalation by `client`: its 20 recipients, by email."""
        return self.recipients[client], set()

    def requests(self, conn: HttpConnection, client: int, take: slice) -> list[bytes]:
        body = {"intent": "escalate", "engineer_notes": NOTES}
        headers = {"X-User-Id": str(self.escalators[client])}
        return [
            conn.encode("POST", f"/api/v1/ai-sessions/{sid}/handoff", body=body, headers=headers)
            for sid in self.sessions[client][take]
        ]


async def _reference(ctx: Context, sessions: int) -> Reference:
    folder = peer_dir()
    python = await venv_python(folder, ctx.workdir / "peer-venv.log")
    name = await ctx.databases.empty("b6_peer")
    peer = Peer(python, folder, database_url=Databases.url(name), smtp_port=ctx.sink.port,
                workdir=ctx.workdir)  # fmt: skip
    accounts = await peer.seed(CLIENTS, SENIORS + 1, sessions)
    if len(accounts) != CLIENTS:
        raise BenchError(f"the reference seeded {len(accounts)} accounts, not {CLIENTS}")
    recipients = []
    for a in accounts:
        first = int(a["escalator_id"])
        # Its seed numbers an account's members from the escalator on; the next 20 are eligible.
        recipients.append(
            {f"m{first + k}@acct{a['account_id']}.example" for k in range(1, SENIORS + 1)}
        )
    return Reference(
        peer=peer,
        sessions=[list(range(a["first_session_id"], a["last_session_id"] + 1)) for a in accounts],
        escalators=[int(a["escalator_id"]) for a in accounts],
        recipients=recipients,
    )


def _address(t: Team, member_id: str) -> str:
    return f"{member_id}@{t.account_id}.bench.test".lower()


async def run(ctx: Context) -> Outcome:
    outcome = Outcome("B6", "storm: 400 escalations by 8 clients, every senior told")
    per_client = 10 if ctx.quick else 50
    rounds = 1 if ctx.quick else 2
    name = await ctx.databases.fresh("b6")
    dsn = Databases.dsn(name)
    teams = [team(f"b6-account-{i}", SENIORS) for i in range(CLIENTS)]
    await mirror(Databases.url(name), teams)
    server = ctx.server(name, "b6")
    online = [t.seniors[:ONLINE] for t in teams]

    reference: Reference | None = None
    reference_error = ""
    try:
        reference = await _reference(ctx, WARM + rounds * per_client)
    except BenchError as exc:  # the handoff figures stand without it; the note says why
        reference_error = str(exc)

    handoff_storms: list[Storm] = []
    mixed_storms: list[Storm] = []
    peer_storms: list[Storm] = []
    kept: Path | None = None
    async with running(server):
        conns = [HttpConnection("127.0.0.1", server.port) for _ in range(CLIENTS)]
        try:
            need = WARM + rounds * per_client * 2
            ids = await asyncio.gather(
                *(start_sessions(conns[i], teams[i], need) for i in range(CLIENTS))
            )
            requests = [
                [escalate_request(conns[i], teams[i], sid) for sid in ids[i]]
                for i in range(CLIENTS)
            ]
        finally:
            for conn in conns:
                await conn.close()

        def part(k: int) -> list[list[bytes]]:  # the k-th storm's requests of every client
            start = WARM + k * per_client
            return [r[start : start + per_client] for r in requests]

        def by_email(client: int, _: str) -> tuple[set[str], set[str]]:
            return {_address(teams[client], s) for s in teams[client].seniors}, set()

        # Warm-up: a few escalations each, on both, every notice out before the clock starts.
        warm = Storm("warm-up")
        await _storm(ctx, warm, server.port, [r[:WARM] for r in requests], "id",
                     {}, by_email)  # fmt: skip
        await _settled(dsn, SETTLE_SECONDS)
        if reference is not None:
            try:
                await reference.peer.start()
                ref = reference
                probe = HttpConnection("127.0.0.1", ref.peer.port)
                peer_warm = [ref.requests(probe, i, slice(0, WARM)) for i in range(CLIENTS)]
                await _storm(ctx, Storm("reference warm-up"), ref.peer.port, peer_warm,
                             "handoff_id", {}, ref.expect)  # fmt: skip
            except BenchError as exc:
                reference_error = str(exc)
                await reference.peer.stop()
                reference = None

        try:
            for k in range(rounds):
                storm = Storm(f"handoff-{k + 1}")
                dump = await _storm(ctx, storm, server.port, part(k), "id",
                                    {"server": server.pid, "sink": ctx.sink.pid}, by_email,
                                    commits=server.commits)  # fmt: skip
                kept = kept or dump
                handoff_storms.append(storm)
                await _settled(dsn, SETTLE_SECONDS)
                if reference is not None:
                    ref = reference
                    probe = HttpConnection("127.0.0.1", ref.peer.port)
                    take = slice(WARM + k * per_client, WARM + (k + 1) * per_client)
                    peer_requests = [ref.requests(probe, i, take) for i in range(CLIENTS)]
                    storm = Storm(f"reference-{k + 1}")
                    await _storm(ctx, storm, ref.peer.port, peer_requests, "handoff_id",
                                 {"reference": ref.peer.pid, "sink": ctx.sink.pid},
                                 ref.expect)  # fmt: skip
                    peer_storms.append(storm)
        finally:
            if reference is not None:
                await reference.peer.stop()

        streams, members = await _open_streams(ctx, server, teams, online)
        parties = {"server": server.pid, "sink": ctx.sink.pid, "streams": streams.pid}
        try:

            def mixed(client: int, _: str) -> tuple[set[str], set[str]]:
                t = teams[client]
                offline = {_address(t, s) for s in t.seniors if s not in online[client]}
                return offline, {_address(t, s) for s in online[client]}

            for k in range(rounds):
                storm = Storm(f"mixed-{k + 1}")
                await _storm(ctx, storm, server.port, part(rounds + k), "id", parties, mixed,
                             streams=streams, members=members, commits=server.commits)  # fmt: skip
                mixed_storms.append(storm)
                await _settled(dsn, SETTLE_SECONDS)
        finally:
            await streams.stop()

    assert kept is not None
    tries = 1 if ctx.quick else 2
    raw = await _raw(ctx, kept, tries)
    _figures(outcome, handoff_storms, mixed_storms, peer_storms, raw, tries, reference_error,
             per_client)  # fmt: skip
    return outcome


async def _open_streams(
    ctx: Context, server: Server, teams: list[Team], online: list[tuple[str, ...]]
) -> tuple[Child, list[str]]:
    """A stream for each online senior (bench.streams); the child, and each stream's senior (as
    an address, the way the sink counts recipients)."""
    tokens = ctx.workdir / "b6_tokens.json"
    members: list[str] = []
    minted: list[str] = []
    for t, seniors in zip(teams, online, strict=True):
        for senior in seniors:
            members.append(_address(t, senior))
            minted.append(token(t.account_id, senior))
    tokens.write_text(json.dumps(minted))
    client = Child("bench.streams", "--port", str(server.port), "--tokens", str(tokens),
                   name="b6-streams", workdir=ctx.workdir)  # fmt: skip
    opened = await client.start(ready_timeout=60.0)
    if opened["opened"] != len(minted):
        await client.stop()
        raise BenchError(f"opened {opened['opened']} of {len(minted)} streams: {opened}")
    return client, members


async def _raw(ctx: Context, kept: Path, tries: int) -> dict[int, float]:
    """Raw aiosmtplib sending the first handoff storm's messages: best seconds per pool size."""
    messages = load(kept)
    best: dict[int, float] = {}
    for connections in CONNECTIONS:
        for _ in range(tries):
            took = await raw_send(messages, connections, ctx.sink)
            best[connections] = min(took, best.get(connections, float("inf")))
    return best


def _median(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return median(known) if known and len(known) == len(values) else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def _figures(
    outcome: Outcome,
    handoff: list[Storm],
    mixed: list[Storm],
    peer: list[Storm],
    raw: dict[int, float],
    tries: int,
    reference_error: str,
    per_client: int,
) -> None:
    best_k = min(raw, key=lambda k: raw[k])
    told = _median([s.told_per_s() for s in handoff])
    peer_told = _median([s.told_per_s() for s in peer]) if peer else None
    told_ratio = _ratio(told, peer_told)
    span = _median([s.span for s in handoff])
    raw_ratio = _ratio(span, raw[best_k])
    answers = [x for s in handoff for x in s.latencies]
    answer_p99 = ms(percentile(answers, 99))
    pushes = [x for s in mixed for x in s.commit_to_push]
    push_p99 = ms(percentile(pushes, 99)) if pushes else None
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
               "first request → last email ÷ raw aiosmtplib alone, best pool", raw_ratio, "x",
               f"≤ {RAW_TARGET:g}x", check(raw_ratio, raw_ratio is not None
                                            and raw_ratio <= RAW_TARGET)),
        Figure("B6.answer_p99_ms", "escalation answer p99 in the storm", answer_p99, "ms",
               f"≤ {ANSWER_P99_MS:g} ms", check(answer_p99, answer_p99 <= ANSWER_P99_MS)),
        Figure("B6.push_p99_ms", "commit → push read p99, mixed storm", push_p99, "ms",
               f"≤ {PUSH_P99_MS:g} ms", check(push_p99, push_p99 is not None
                                              and push_p99 <= PUSH_P99_MS)),
        Figure("B6.lost_or_duplicated", "notices lost + duplicated or unexpected, all storms",
               float(lost + dup), "", "0", check(float(lost + dup), lost + dup == 0)),
        Figure("B6.requests_per_s", "escalation answers/s, 8 clients",
               _median([s.requests_per_s for s in handoff]), "req/s"),
        Figure("B6.first_request_to_last_email_ms", "first request → last email accepted",
               ms_or_none(span), "ms"),
        Figure("B6.told_per_s", "escalations/s with every senior told", told, "/s"),
        Figure("B6.notices_per_s", "notices/s (emails accepted)",
               _median([s.notices_per_s() for s in handoff]), "/s"),
        Figure("B6.commit_to_notice_p99_ms", "commit → email accepted p99",
               ms(percentile(notices, 99)) if notices else None, "ms"),
        Figure("B6.raw_best_ms", f"raw aiosmtplib alone, same messages, {best_k} connections",
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
        f"{SENIORS * escalations:,} messages, best of {tries} per pool: "
        + ", ".join(
            f"{k} conn {ms(v):.0f} ms ({SENIORS * escalations / v:,.0f}/s)" for k, v in raw.items()
        )
        + ".",
        "Handoff: one `handoff serve` process (uvicorn, delivery worker in-process) as shipped. "
        "Reference: `../shared/peer/seedstyle_app.py` as its README runs it (uvicorn defaults, "
        "SQLAlchemy pool 5, a new SMTP connection per email inside the request), in its own "
        "venv, on its own database of the same PostgreSQL; its sessions carry its seed's context.",
        f"Mixed storm: {ONLINE} of {SENIORS} seniors per account hold a stream (bench.streams), "
        "told by push; the others by email. Commit = the escalation's COMMIT returning in the "
        "server (bench.server); accepted = the sink's reply to DATA; read = the stream client "
        "reading the event's chunk; all on the same monotonic clock.",
        "Counted per (recipient, escalation): emails by envelope recipient and the claim link's "
        "handoff id, pushes per stream. Lost = a senior never told of an escalation; duplicated "
        "= more than one notice for a pair; unexpected = a notice to someone not planned; other "
        "channel = an email where a push was planned or the reverse (counted, not a loss).",
    ]
    if reference_error:
        outcome.notes.append(f"Seed-style reference not measured: {reference_error}")
