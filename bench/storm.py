"""One storm of escalations against a server, counted notice by notice (B6's mechanics).

Clients send their prepared escalations back to back, all clients at once; then the harness waits
for the notices planned (emails at the sink, pushes read by bench.streams), lets the server settle,
and counts every notice per (recipient, escalation) against the plan: lost, duplicated,
unexpected, or sent by the other channel. All times are on the monotonic clock that every process
of this machine shares.
"""

from __future__ import annotations

import asyncio
import base64
import email
import json
import re
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from email.policy import compat32
from pathlib import Path

from attrs import define, field, frozen

from bench.cpu import CpuMeter
from bench.stack import Child, Context
from bench.stats import ms, percentile
from bench.wire import HttpConnection

NOTICE_SECONDS = 120.0  # at most this long for a storm's last notice after its last answer
SETTLE_SECONDS = 60.0
LINK = re.compile(r"/claim/([A-Za-z0-9_-]+)\.[A-Za-z0-9_-]+")  # the claim token's payload part
PEER_LINK = re.compile(r"/handoffs/(\d+)/claim\b")  # the seed-style reference's claim link

Expect = Callable[[int, str], tuple[set[str], set[str]]]


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
    pending_left: int = 0  # deliveries the server still had pending when the storm was counted
    commit_to_notice: list[float] = field(factory=list)
    commit_to_push: list[float] = field(factory=list)
    cpu: str = ""

    @property
    def requests_per_s(self) -> float:
        return self.ok / (self.answered - self.start)

    @property
    def span(self) -> float | None:
        """First request → last notice, seconds (see `lost` for whether everyone was told)."""
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
            f"by the other channel {self.other_channel}, unplaced {self.unplaced}"
            + (f", {self.pending_left} deliveries still pending" if self.pending_left else "")
            + f". {self.cpu}."
        )


def escalation_of(data: bytes) -> str | None:
    """The handoff id in a message's claim link (its text part decoded), or None."""
    message = email.message_from_bytes(data, policy=compat32)
    for part in message.walk():
        if part.get_content_maintype() != "text":
            continue
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes):
            text = payload.decode("utf-8", "replace")
            found = LINK.search(text)
            if found:
                return _handoff_in(found.group(1))
            found = PEER_LINK.search(text)
            if found:
                return found.group(1)
    return None


def _handoff_in(token_payload: str) -> str | None:
    """The handoff id a claim token names: its payload is base64url JSON [account, member,
    handoff, expiry] (read, not verified: the sink only counts)."""
    try:
        raw = base64.urlsafe_b64decode(token_payload + "=" * (-len(token_payload) % 4))
        _, _, handoff_id, _ = json.loads(raw)
    except (ValueError, TypeError):
        return None
    return str(handoff_id)


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


async def fire(
    port: int,
    requests: list[list[bytes]],
    storm: Storm,
    id_key: str,
    started: Callable[[], None] | None = None,
) -> list[list[str]]:
    """Every client sends its requests one after another, all clients at once; handoff ids.
    `started` is called as the clock starts, before the first request is written."""
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
        if started is not None:
            started()
        ids = await asyncio.gather(*(client(c, r) for c, r in zip(conns, requests, strict=True)))
        storm.answered = loop.time()
    finally:
        for conn in conns:
            await conn.close()
    return list(ids)


@frozen
class Target:
    """The system a storm is aimed at: where it listens, how its answer names the escalation,
    which processes to meter, and (for handoff) when each escalation committed and a wait until
    it has nothing left to send (returning how many deliveries were still pending)."""

    name: str
    port: int
    id_key: str
    parties: dict[str, int]
    commits: Callable[[], dict[str, float]] = dict
    settle: Callable[[], Awaitable[int]] | None = None
    notice_seconds: float = NOTICE_SECONDS  # the wait for the last notice after the last answer


@frozen
class Listeners:
    """Streams held open through a storm (bench.streams) and the recipient behind each one."""

    child: Child
    members: Sequence[str]

    async def collect(self, count: int, seconds: float) -> list[tuple[str, str, float]]:
        """The pushes read since the last call, at least `count` of them unless time ran out:
        (handoff id, recipient, time read)."""
        got = await self.child.ask(f"collect {count} {seconds}", seconds + 10)
        return [(h, self.members[int(i)], float(t)) for h, i, t in got["events"]]


async def run_storm(
    ctx: Context,
    label: str,
    target: Target,
    requests: list[list[bytes]],
    expect: Expect,
    listeners: Listeners | None = None,
    keep_mail: bool = False,
) -> tuple[Storm, Path | None]:
    """One storm: every client's `requests` at `target`, then its notices counted against
    `expect(client, handoff id)` (who should get an email, who a push). The storm, and the sink's
    dump of the messages it accepted (JSON lines, bench.sink; about 13 MB for 8,000 emails),
    which stays in the workdir when asked to or when the count found anything amiss."""
    storm = Storm(label)
    await ctx.databases.vacuum()  # as autovacuum would have since the last storm
    await ctx.sink.reset(keep=True)
    pushes: list[tuple[str, str, float]] = []
    wait = target.notice_seconds
    with CpuMeter(target.parties) as meter:
        ids = await fire(target.port, requests, storm, target.id_key)
        planned = {h: expect(client, h) for client, hs in enumerate(ids) for h in hs}
        emails = sum(len(mail) for mail, _ in planned.values())
        if listeners is None:
            await ctx.sink.wait_for(emails, wait)
        else:
            planned_pushes = sum(len(push) for _, push in planned.values())
            _, pushes = await asyncio.gather(
                ctx.sink.wait_for(emails, wait), listeners.collect(planned_pushes, wait)
            )
    storm.cpu = meter.describe(storm.ok, "escalation")
    if target.settle is not None:
        storm.pending_left = await target.settle()
    if listeners is not None:  # what came after the planned count too (a late duplicate)
        pushes += await listeners.collect(0, 0)
    dump = ctx.workdir / f"b6-{label}.mail.jsonl"
    await ctx.sink.ask(f"dump {dump}", timeout=60.0)
    await ctx.sink.reset()
    tally(
        storm,
        {h: mail for h, (mail, _) in planned.items()},
        {h: push for h, (_, push) in planned.items()},
        read_mail(dump),
        pushes,
        target.commits(),
    )
    if keep_mail or storm.lost or storm.duplicated or storm.unexpected or storm.unplaced:
        return storm, dump
    dump.unlink()
    return storm, None


def settler(dsn: str, timeout: float = SETTLE_SECONDS) -> Callable[[], Awaitable[int]]:
    """A wait until the server has no delivery pending (every outcome of a storm recorded), at
    most `timeout` seconds; it returns how many were still pending then (0 when settled)."""

    async def settled() -> int:
        import asyncpg

        conn = await asyncpg.connect(dsn)
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while True:
                left = int(
                    await conn.fetchval("SELECT count(*) FROM deliveries WHERE status = 'pending'")
                )
                if left == 0 or loop.time() >= deadline:
                    return left
                await asyncio.sleep(0.05)
        finally:
            await conn.close()

    return settled
