"""Accounts, members, tokens and sessions for the benchmarks, made the way a host product would.

Members are mirrored in through the library (the host's own sync); sessions are started over HTTP
by the clients that will escalate them, which also warms the server up.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence

from attrs import frozen

from bench.stack import SECRET, BenchError
from bench.wire import HttpConnection
from handoff_app.http import mint_token
from handoff_app.settings import Settings
from handoff_core.model import Member
from handoff_sql import SqlDatabase

TOKEN_TTL = 3600.0
SUMMARY = "VPN won't connect after Win update"
CONTEXT = {
    "messages": [
        {"role": "user", "content": "VPN drops at the auth handshake since the update"},
        {"role": "assistant", "content": "Checked the client logs; the certificate looks fine."},
    ],
    "confidence_tier": "discovery",
}
NOTES = "Stuck on the auth handshake; logs attached in the session"


@frozen
class Team:
    """One account: the engineer who escalates and the seniors who hear about it."""

    account_id: str
    escalator: str
    seniors: tuple[str, ...]


def team(account_id: str, seniors: int) -> Team:
    """`seniors` recipients plus one escalating engineer (every one a senior role)."""
    return Team(
        account_id=account_id,
        escalator="escalator",
        seniors=tuple(f"senior-{i:05d}" for i in range(seniors)),
    )


async def mirror(database_url: str, teams: Sequence[Team]) -> None:
    """Write every member in one unit of work per account, as a host's bulk sync would."""
    db = SqlDatabase(database_url)
    await db.start()
    try:
        for t in teams:
            async with db() as uow:
                for i, member_id in enumerate((t.escalator, *t.seniors)):
                    role = "owner" if i == 1 else "admin" if i == 2 else "engineer"
                    await uow.members.save(
                        Member.register(
                            account_id=t.account_id,
                            id=member_id,
                            email=f"{member_id}@{t.account_id}.bench.test",
                            name=f"Bench {member_id}",
                            role=role,
                        )
                    )
                await uow.commit()
    finally:
        await db.close()


def token(account_id: str, member_id: str) -> str:
    return mint_token(Settings(jwt_secret=SECRET), account_id, member_id, TOKEN_TTL)


async def start_sessions(conn: HttpConnection, t: Team, count: int) -> list[str]:
    """Start `count` sessions owned by the team's escalator; their ids."""
    raw = conn.encode(
        "POST",
        "/api/v1/ai-sessions",
        token=token(t.account_id, t.escalator),
        body={"problem_summary": SUMMARY, "context": CONTEXT},
    )
    ids: list[str] = []
    for _ in range(count):
        status, body = await conn.send(raw)
        if status != 201:
            raise BenchError(f"POST /ai-sessions answered {status}: {body[:300]!r}")
        ids.append(json.loads(body)["id"])
    return ids


def escalate_request(conn: HttpConnection, t: Team, session_id: str) -> bytes:
    return conn.encode(
        "POST",
        f"/api/v1/ai-sessions/{session_id}/handoff",
        token=token(t.account_id, t.escalator),
        body={"intent": "escalate", "engineer_notes": NOTES},
    )


async def escalate(conn: HttpConnection, t: Team, session_id: str) -> str:
    """Escalate one session over HTTP; the handoff id."""
    status, body = await conn.send(escalate_request(conn, t, session_id))
    if status != 201:
        raise BenchError(f"escalation answered {status}: {body[:300]!r}")
    handoff_id: str = json.loads(body)["id"]
    return handoff_id


async def one_session_escalated(base_port: int, t: Team) -> tuple[str, float, float]:
    """Start a session and escalate it; (handoff id, monotonic time sent, time answered)."""
    conn = HttpConnection("127.0.0.1", base_port)
    try:
        (session_id,) = await start_sessions(conn, t, 1)
        loop = asyncio.get_running_loop()
        raw = escalate_request(conn, t, session_id)
        sent = loop.time()
        status, body = await conn.send(raw)
        answered = loop.time()
        if status != 201:
            raise BenchError(f"escalation answered {status}: {body[:300]!r}")
        return json.loads(body)["id"], sent, answered
    finally:
        await conn.close()


async def settled(dsn: str, handoff_id: str, timeout: float) -> float | None:
    """Wait until no delivery of the handoff is pending (every outcome recorded); the monotonic
    time it was first seen so, or None if the time ran out."""
    import asyncpg

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    conn = await asyncpg.connect(dsn)
    try:
        while loop.time() < deadline:
            left = await conn.fetchval(
                "SELECT count(*) FROM deliveries WHERE handoff_id = $1 AND status = 'pending'",
                handoff_id,
            )
            if left == 0:
                return loop.time()
            await asyncio.sleep(0.02)
        return None
    finally:
        await conn.close()
