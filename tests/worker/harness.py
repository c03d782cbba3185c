"""What the worker fault tests run against: a counting SMTP sink that can be slow, real `handoff
worker` processes, an outbox seeded through the library, and a read-only view of the outbox rows.
(The server that never answers is tests.support.smtp.SilentServer.)"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import signal
import subprocess
import threading
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from email.parser import BytesHeaderParser
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from attrs import frozen
from tests.support.cli import HANDOFF, environment
from tests.support.smtp import SmtpServer

from handoff_app.container import SystemClock, build_services
from handoff_app.settings import Settings
from handoff_core import HandoffService, MemberService
from handoff_sql import SqlDatabase
from handoff_sql.statements import BEGIN_MODE
from handoff_sql.tables import deliveries, sessions

ACCOUNT = "acme"
ESCALATOR = "esc"


async def eventually(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool],
    *,
    timeout: float,
    what: str,
    every: float = 0.02,
) -> None:
    """Wait, bounded, until `check` holds; fail naming what never happened."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"within {timeout:g} s: {what}")
        await asyncio.sleep(every)


# --- SMTP ------------------------------------------------------------------------------------


class CountingSink:
    """An aiosmtpd handler that keeps the Message-ID and envelope sender of every message it
    accepts, `delay` seconds after the DATA arrived (a slow server keeps a worker mid-batch)."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self._lock = threading.Lock()
        self._accepted: list[tuple[str, str]] = []
        self._headers = BytesHeaderParser(policy=default_policy)
        self._actions: dict[int, Callable[[], None]] = {}

    def at(self, count: int, action: Callable[[], None]) -> None:
        """Run `action` when the `count`th message has been kept, before it is acknowledged:
        the sender is then certainly in the middle of its batch."""
        self._actions[count] = action

    async def handle_DATA(self, server: object, session: object, envelope: Any) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        message_id = str(self._headers.parsebytes(envelope.original_content)["Message-ID"])
        with self._lock:
            self._accepted.append((str(envelope.mail_from), message_id))
            action = self._actions.pop(len(self._accepted), None)
        if action is not None:
            action()
        return "250 2.0.0 Message accepted"

    def count(self) -> int:
        with self._lock:
            return len(self._accepted)

    def message_ids(self) -> Counter[str]:
        with self._lock:
            return Counter(mid for _, mid in self._accepted)

    def by_sender(self) -> Counter[str]:
        with self._lock:
            return Counter(sender for sender, _ in self._accepted)


class SinkServer(SmtpServer[CountingSink]):
    """A CountingSink on 127.0.0.1, startable on a chosen port."""

    def __init__(self, port: int | None = None, delay: float = 0.0) -> None:
        super().__init__(CountingSink(delay), port)


# --- worker processes ------------------------------------------------------------------------


class WorkerProcess:
    """`python -m handoff_app.cli worker` with the given HANDOFF_* settings; output to a file."""

    def __init__(self, folder: Path, env: Mapping[str, str], name: str) -> None:
        self.log = folder / f"{name}.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [*HANDOFF, "worker"],
                env=environment(env),
                cwd=folder,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    async def started(self, timeout: float = 15.0) -> None:
        def ready() -> bool:
            if "running; SIGTERM stops it" in self.output():
                return True
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited before it ran:\n{self.output()}")
            return False

        await eventually(ready, timeout=timeout, what=f"worker {self.pid} started")

    def signal(self, signum: int) -> None:
        if self.process.poll() is None:
            os.kill(self.pid, signum)

    async def exit_code(self, timeout: float = 15.0) -> int:
        await eventually(
            lambda: self.process.poll() is not None,
            timeout=timeout,
            what=f"worker {self.pid} exited",
        )
        code = self.process.returncode
        assert code is not None
        return code

    def reap(self) -> None:
        """Teardown: SIGKILL it if it still runs (by its own pid) and collect it."""
        if self.process.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
        self.process.wait(timeout=10)


@contextlib.asynccontextmanager
async def worker_in_process(env: Mapping[str, str]) -> AsyncIterator[None]:
    """What `handoff worker` runs, in this process and loop: settings from the same HANDOFF_*
    variables, the services of the composition root, and the worker loop until the block ends."""
    services = await build_services(Settings.from_env(env))
    stop = asyncio.Event()
    task = asyncio.create_task(
        services.delivery.run(stop, poll_seconds=services.settings.worker_poll_seconds)
    )
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=15)
        await services.close()


def worker_env(database_url: str, smtp_url: str, **extra: str) -> dict[str, str]:
    """Settings for a worker that polls often and retries soon, so a test stays short."""
    return {
        "HANDOFF_DATABASE_URL": database_url,
        "HANDOFF_SMTP_URL": smtp_url,
        "HANDOFF_WORKER_POLL_SECONDS": "0.05",
        "HANDOFF_RETRY_BASE_SECONDS": "0.1",
        "HANDOFF_RETRY_CAP_SECONDS": "0.5",
        "HANDOFF_RETRY_ATTEMPTS": "50",
        **extra,
    }


# --- the outbox ------------------------------------------------------------------------------


async def add_team(url: str, seniors: int) -> None:
    """An account with one escalating engineer and `seniors` other engineers, none online."""
    db = SqlDatabase(url)
    try:
        members = MemberService(db, SystemClock())
        await members.upsert(ACCOUNT, ESCALATOR, email="esc@acme.test", name="Esc", role="engineer")
        for n in range(seniors):
            await members.upsert(
                ACCOUNT, f"s{n:04d}", email=f"s{n:04d}@acme.test", name=f"S {n}", role="engineer"
            )
    finally:
        await db.close()


async def escalate(url: str, escalations: int = 1) -> list[str]:
    """Escalate that many fresh sessions through the library, without dispatching: the outbox
    gets one due delivery per senior per escalation. Returns the handoff ids."""
    db = SqlDatabase(url)
    try:
        service = HandoffService(db, SystemClock())
        ids = []
        for n in range(escalations):
            session = await service.start_session(ACCOUNT, ESCALATOR, f"VPN down #{n}")
            ids.append((await service.escalate(ACCOUNT, ESCALATOR, session.id, "help")).id)
        return ids
    finally:
        await db.close()


async def seed_outbox(url: str, *, seniors: int, escalations: int = 1) -> list[str]:
    await add_team(url, seniors)
    return await escalate(url, escalations)


@frozen
class OutboxRow:
    id: str
    status: str
    leased_by: str | None
    leased_until: Any
    attempts: int
    last_error: str | None

    @property
    def message_id(self) -> str:
        return f"<{self.id}@handoff>"


class Store:
    """Reads the database the way an operator would look at it, without taking SQLite's write
    lock away from the workers under test."""

    def __init__(self, url: str) -> None:
        self.db = SqlDatabase(url)

    async def _select(self, query: sa.Select[Any]) -> list[Any]:
        async with self.db.engine.connect() as conn:
            reader = await conn.execution_options(**{BEGIN_MODE: "DEFERRED"})
            return list((await reader.execute(query)).mappings())

    async def outbox(self) -> list[OutboxRow]:
        rows = await self._select(sa.select(deliveries).order_by(deliveries.c.id))
        return [
            OutboxRow(
                id=r["id"],
                status=str(r["status"]),
                leased_by=r["leased_by"],
                leased_until=r["leased_until"],
                attempts=r["attempts"],
                last_error=r["last_error"],
            )
            for r in rows
        ]

    async def statuses(self) -> Counter[str]:
        return Counter(row.status for row in await self.outbox())

    async def all_sent(self, total: int) -> bool:
        return (await self.statuses()) == Counter({"sent": total})

    async def count(self, table: sa.Table, **where: str) -> int:
        query = sa.select(sa.func.count().label("n")).select_from(table)
        for column, value in where.items():
            query = query.where(table.c[column] == value)
        return int((await self._select(query))[0]["n"])

    async def session_row(self, session_id: str) -> dict[str, Any]:
        found = await self._select(sa.select(sessions).where(sessions.c.id == session_id))
        return dict(found[0])

    async def close(self) -> None:
        await self.db.close()


__all__ = [
    "ACCOUNT",
    "ESCALATOR",
    "CountingSink",
    "OutboxRow",
    "SinkServer",
    "Store",
    "WorkerProcess",
    "add_team",
    "escalate",
    "eventually",
    "seed_outbox",
    "worker_env",
    "worker_in_process",
]
