"""Push across processes and hosts through PostgreSQL LISTEN/NOTIFY.

Every process listens on one channel; a publish is a NOTIFY, and each process hands what it hears
to its own streams. The publisher hears its own NOTIFY too, so there is one path for every event.
NOTIFY is sent after commit and is best effort: a stream that missed something while a connection
was down catches up from the timeline with Last-Event-ID.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from attrs import evolve

from handoff_core.ports import PushEvent
from handoff_push.inprocess import InProcessHub, Subscription

log = logging.getLogger("handoff.push")

CHANNEL = "handoff_push"
PAYLOAD_LIMIT = 7900  # PostgreSQL refuses NOTIFY payloads of 8000 bytes or more
TRIMMABLE = ("engineer_notes",)


def asyncpg_dsn(url: str) -> str:
    """The SQLAlchemy URL without its driver suffix and query options, for asyncpg.connect."""
    parts = urlsplit(url)
    scheme = parts.scheme.split("+", 1)[0]
    if scheme == "postgres":
        scheme = "postgresql"
    return urlunsplit((scheme, parts.netloc, parts.path, "", ""))


def encode_all(event: PushEvent) -> list[str]:
    """One payload, or several when the audience is too long for one notification: the audience
    is split in halves until every part fits."""
    try:
        return [encode(event)]
    except ValueError:
        audience = sorted(event.audience or ())
        if len(audience) < 2:
            raise
    half = len(audience) // 2
    return [
        payload
        for part in (audience[:half], audience[half:])
        for payload in encode_all(evolve(event, audience=frozenset(part)))
    ]


def encode(event: PushEvent) -> str:
    body: dict[str, Any] = {
        "account_id": event.account_id,
        "type": event.type,
        "id": event.id,
        "audience": sorted(event.audience) if event.audience is not None else None,
        "data": dict(event.data),
    }
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    for name in TRIMMABLE:
        if len(text.encode("utf-8")) < PAYLOAD_LIMIT:
            break
        body["data"].pop(name, None)
        text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    if len(text.encode("utf-8")) >= PAYLOAD_LIMIT:
        raise ValueError("push event too large for NOTIFY even without its notes")
    return text


def decode(payload: str) -> PushEvent:
    body = json.loads(payload)
    audience = body.get("audience")
    return PushEvent(
        account_id=body["account_id"],
        type=body["type"],
        data=body.get("data") or {},
        id=body.get("id"),
        audience=frozenset(audience) if audience is not None else None,
    )


class PgNotifyHub:
    """A LiveHub whose events reach the streams of every process on the same database."""

    def __init__(self, url: str, *, reconnect_seconds: float = 1.0) -> None:
        self._dsn = asyncpg_dsn(url)
        self._local = InProcessHub()
        self._reconnect_seconds = reconnect_seconds
        self._listener: Any = None
        self._sender: Any = None
        self._send_lock = asyncio.Lock()
        self._watch: asyncio.Task[None] | None = None
        self._closed = False

    async def start(self) -> None:
        await self._listen()
        self._watch = asyncio.get_running_loop().create_task(self._keep_listening())

    async def _listen(self) -> None:
        import asyncpg

        conn = await asyncpg.connect(self._dsn)
        await conn.add_listener(CHANNEL, self._heard)
        self._listener = conn

    def _heard(self, connection: object, pid: int, channel: str, payload: str) -> None:
        try:
            event = decode(payload)
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed push notification", extra={"channel": channel})
            return
        self._local.deliver_local(event)

    async def _keep_listening(self) -> None:
        while not self._closed:
            await asyncio.sleep(self._reconnect_seconds)
            conn = self._listener
            if conn is not None and not conn.is_closed():
                continue
            try:
                await self._listen()
                log.info("push listener reconnected")
            except Exception as exc:
                log.warning("push listener still down", extra={"error": repr(exc)})

    async def publish(self, event: PushEvent) -> None:
        import asyncpg

        payloads = encode_all(event)
        async with self._send_lock:
            for payload in payloads:
                if self._sender is None or self._sender.is_closed():
                    self._sender = await asyncpg.connect(self._dsn)
                try:
                    await self._sender.execute("SELECT pg_notify($1, $2)", CHANNEL, payload)
                except (asyncpg.PostgresConnectionError, OSError):
                    self._sender = await asyncpg.connect(self._dsn)
                    await self._sender.execute("SELECT pg_notify($1, $2)", CHANNEL, payload)

    @asynccontextmanager
    async def subscribe(self, account_id: str, member_id: str) -> AsyncIterator[Subscription]:
        async with self._local.subscribe(account_id, member_id) as sub:
            yield sub

    async def close(self) -> None:
        self._closed = True
        if self._watch is not None:
            self._watch.cancel()
        for conn in (self._listener, self._sender):
            if conn is not None and not conn.is_closed():
                await conn.close()
        await self._local.close()
