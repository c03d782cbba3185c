"""Push across processes and hosts through PostgreSQL LISTEN/NOTIFY.

Every process listens on one channel; a publish is a NOTIFY, and each process hands what it hears
to its own relay (`InProcessHub`). The publisher hears its own NOTIFY too, so there is one path
for every event. NOTIFY is sent after commit, queued and batched, and is best effort: the relay
fills any gap it sees from the stream log, and the app asks it to catch up every few seconds, so a
lost notification delays an event, never loses it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from handoff_core.ports import PushHub
from handoff_core.stream import StreamEvent, StreamEventType
from handoff_push.inprocess import InProcessHub, StreamSource, Subscription

log = logging.getLogger("handoff.push")

CHANNEL = "handoff_push"
PAYLOAD_LIMIT = 7900  # PostgreSQL refuses NOTIFY payloads of 8000 bytes or more
NOTIFY_BATCH = 500  # notifications sent in one statement at the most
# Every queued notification in one statement, in queue order (one transaction: delivered
# together, in this order, when it ends).
_NOTIFY_ALL = (
    "SELECT pg_notify($1, p) FROM unnest($2::text[]) WITH ORDINALITY AS t(p, n) ORDER BY n"
)
CLOSE_FLUSH_SECONDS = 5.0  # how long close() waits for queued notifications to go out


def asyncpg_dsn(url: str) -> str:
    """The SQLAlchemy URL without its driver suffix and query options, for asyncpg.connect."""
    parts = urlsplit(url)
    scheme = parts.scheme.split("+", 1)[0]
    if scheme == "postgres":
        scheme = "postgresql"
    return urlunsplit((scheme, parts.netloc, parts.path, "", ""))


def encode(event: StreamEvent) -> str:
    """The whole event when it fits in a notification; otherwise only its account and seq, and
    every process reads the event itself from the stream log."""
    body: dict[str, Any] = {
        "account_id": event.account_id,
        "seq": event.seq,
        "type": event.type.value,
        "handoff_id": event.handoff_id,
        "audience": sorted(event.audience) if event.audience is not None else None,
        "data": dict(event.data),
    }
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    if len(text.encode("utf-8")) < PAYLOAD_LIMIT:
        return text
    return json.dumps({"account_id": event.account_id, "seq": event.seq}, separators=(",", ":"))


def decode(payload: str) -> tuple[str, int, StreamEvent | None]:
    """(account_id, seq, the event or None when only its position was sent)."""
    body = json.loads(payload)
    account_id, seq = str(body["account_id"]), int(body["seq"])
    if "data" not in body:
        return account_id, seq, None
    audience = body.get("audience")
    event = StreamEvent(
        account_id=account_id,
        seq=seq,
        type=StreamEventType(body["type"]),
        handoff_id=str(body["handoff_id"]),
        data=body["data"],
        audience=frozenset(audience) if audience is not None else None,
    )
    return account_id, seq, event


class PgNotifyHub(PushHub):
    """A LiveHub whose events reach the streams of every process on the same database."""

    def __init__(
        self, url: str, source: StreamSource | None = None, *, reconnect_seconds: float = 1.0
    ) -> None:
        self._dsn = asyncpg_dsn(url)
        self._local = InProcessHub(source)
        self._tasks: set[asyncio.Task[None]] = set()
        self._reconnect_seconds = reconnect_seconds
        self._listener: Any = None
        self._sender: Any = None
        self._queued: list[str] = []
        self._sending: asyncio.Task[None] | None = None
        self._watch: asyncio.Task[None] | None = None
        self._closed = False

    async def start(self) -> None:
        """Connect the listener and start watching it: a dropped listener is reconnected every
        `reconnect_seconds` until it is back (and the relay fills the gap from the log).

        Raises:
            OSError, asyncpg.PostgresError: the first connection failed (bad URL, server down).
        """
        await self._listen()
        self._watch = asyncio.get_running_loop().create_task(self._keep_listening())

    async def _listen(self) -> None:
        import asyncpg

        conn = await asyncpg.connect(self._dsn)
        await conn.add_listener(CHANNEL, self._heard)
        self._listener = conn

    def _heard(self, connection: object, pid: int, channel: str, payload: str) -> None:
        try:
            account_id, seq, event = decode(payload)
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed push notification", extra={"channel": channel})
            return
        task = asyncio.get_running_loop().create_task(
            self._local.heard(account_id, [event] if event is not None else [], seq)
        )
        self._tasks.add(task)
        task.add_done_callback(self._settled)

    def _settled(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("could not relay a stream event", extra={"error": repr(task.exception())})

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

    async def publish(self, events: Sequence[StreamEvent]) -> None:
        """Queue a NOTIFY of committed events for every process (this one too) and return: the
        request that committed them does not wait on the database for it.

        The queue goes out in order on one connection kept for sending, as many notifications a
        statement as are waiting (up to NOTIFY_BATCH): under a storm of escalations, one round
        trip carries the events of many requests, where each request used to wait its turn for
        a round trip of its own (issue 14). A batch that cannot be sent, after one reconnect, is
        logged and dropped: notifications are best effort, and every process fills the gap from
        the stream log (see the module)."""
        if not events:
            return
        self._queued.extend(encode(e) for e in events)
        if self._sending is None or self._sending.done():
            self._sending = asyncio.get_running_loop().create_task(self._send_queued())

    async def _send_queued(self) -> None:
        while self._queued:
            batch = self._queued[:NOTIFY_BATCH]
            del self._queued[:NOTIFY_BATCH]
            try:
                await self._notify(batch)
            except Exception as exc:
                log.warning(
                    "could not send %d push notifications; the streams catch up from the log",
                    len(batch),
                    extra={"error": repr(exc)},
                )

    async def _notify(self, payloads: list[str]) -> None:
        import asyncpg

        if self._sender is None or self._sender.is_closed():
            self._sender = await asyncpg.connect(self._dsn)
        try:
            await self._sender.execute(_NOTIFY_ALL, CHANNEL, payloads)
        except (asyncpg.PostgresConnectionError, OSError):
            self._sender = await asyncpg.connect(self._dsn)
            await self._sender.execute(_NOTIFY_ALL, CHANNEL, payloads)

    @asynccontextmanager
    async def subscribe(self, account_id: str, member_id: str) -> AsyncIterator[Subscription]:
        """A subscription to the account's events from now on that the member may see, from any
        process (`InProcessHub.subscribe`); it ends with the `async with` block."""
        async with self._local.subscribe(account_id, member_id) as sub:
            yield sub

    async def catch_up(self, account_id: str) -> None:
        """Read what the log holds past this process's cursor: a notification may be lost."""
        await self._local.catch_up(account_id)

    def on_event(self, watcher: Callable[[], None]) -> None:
        """Call `watcher` whenever a notification is heard (from any process)."""
        self._local.on_event(watcher)

    def listeners(self) -> list[tuple[str, str]]:
        """(account_id, member_id) of every open stream of this process, once each."""
        return self._local.listeners()

    def accounts(self) -> list[str]:
        """The accounts with at least one open stream in this process."""
        return self._local.accounts()

    def close_member(self, account_id: str, member_id: str) -> int:
        """End every stream of this member in this process; how many."""
        return self._local.close_member(account_id, member_id)

    def subscribers(self, account_id: str) -> int:
        """How many streams of the account are open in this process."""
        return self._local.subscribers(account_id)

    async def close(self) -> None:
        """Send what is queued (for up to CLOSE_FLUSH_SECONDS), then stop listening and close
        both connections and every stream of this process."""
        self._closed = True
        if self._watch is not None:
            self._watch.cancel()
        if self._sending is not None and not self._sending.done():
            try:
                await asyncio.wait_for(self._sending, CLOSE_FLUSH_SECONDS)
            except TimeoutError:
                log.warning("push notifications still queued at close were dropped")
        for conn in (self._listener, self._sender):
            if conn is not None and not conn.is_closed():
                await conn.close()
        await self._local.close()
