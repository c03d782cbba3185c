"""Two `handoff serve` processes on one PostgreSQL: a stream on one hears what the other does.

Real processes, real PostgreSQL (LISTEN/NOTIFY push, presence in the database), real HTTP.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.support.cli import HANDOFF, add_member, environment, handoff
from tests.support.databases import fresh_database
from tests.support.net import free_port

from handoff_app.http import mint_token
from handoff_app.settings import Settings

pytestmark = pytest.mark.postgres

SECRET = "two-servers-share-this-secret-of-32-bytes"
WAIT = 20.0


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with fresh_database("handoff_scaleout") as url:
        yield url


@pytest.fixture
def env(pg_url: str, tmp_path: Path) -> dict[str, str]:
    """The settings both servers share, over a migrated database with two accounts' members."""
    settings = {
        "HANDOFF_DATABASE_URL": pg_url,
        "HANDOFF_JWT_SECRET": SECRET,
        "HANDOFF_MAILDIR": str(tmp_path / "mail"),
        "HANDOFF_WORKER_POLL_SECONDS": "0.2",
    }
    done = handoff("db", "upgrade", env=settings, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    members = [
        ("acme", "eve", "eve@acme.test", "Eve", "engineer"),
        ("acme", "sam", "sam@acme.test", "Sam", "engineer"),
        ("acme", "ada", "ada@acme.test", "Ada", "admin"),
        ("other", "zed", "zed@o.test", "Zed", "owner"),
    ]
    for account, member, email, name, role in members:
        done = add_member(
            account, member, email=email, name=name, role=role, env=settings, cwd=tmp_path
        )
        assert done.returncode == 0, done.stderr
    return settings


@pytest.fixture
def servers(env: dict[str, str], tmp_path: Path) -> Iterator[list[str]]:
    procs: list[subprocess.Popen[str]] = []
    urls = []
    try:
        for _ in range(2):
            port = free_port()
            procs.append(
                subprocess.Popen(
                    [*HANDOFF, "serve", "--port", str(port)],
                    env=environment(env),
                    cwd=tmp_path,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
            urls.append(f"http://127.0.0.1:{port}")
        for url in urls:
            _wait_ready(url)
        yield urls
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


def _wait_ready(url: str) -> None:
    import time

    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} did not become ready")


def _auth(account: str, member: str) -> dict[str, str]:
    settings = Settings(jwt_secret=SECRET)
    return {"Authorization": f"Bearer {mint_token(settings, account, member, 300)}"}


@asynccontextmanager
async def _stream(url: str, account: str, member: str) -> AsyncIterator[asyncio.Queue[Any]]:
    events: asyncio.Queue[Any] = asyncio.Queue()
    opened = asyncio.Event()

    async def read() -> None:
        async with (
            httpx.AsyncClient(timeout=None) as client,
            client.stream(
                "GET", f"{url}/api/v1/escalations/stream", headers=_auth(account, member)
            ) as response,
        ):
            assert response.status_code == 200
            opened.set()
            event: dict[str, str] = {}
            async for line in response.aiter_lines():
                if line == "":
                    if "event" in event:
                        await events.put(event)
                    event = {}
                elif not line.startswith(":"):
                    name, _, value = line.partition(":")
                    event[name] = value.lstrip(" ")

    task = asyncio.create_task(read())
    try:
        await asyncio.wait_for(opened.wait(), WAIT)
        ready = await asyncio.wait_for(events.get(), WAIT)
        assert ready["event"] == "stream.ready", ready
        yield events
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_stream_on_one_server_hears_an_escalation_raised_on_the_other(
    servers: list[str],
) -> None:
    here, there = servers
    async with (
        _stream(here, "acme", "sam") as sam,
        _stream(here, "other", "zed") as zed,
        httpx.AsyncClient(base_url=there, timeout=10) as http,
    ):
        session = (
            await http.post(
                "/api/v1/ai-sessions",
                headers=_auth("acme", "eve"),
                json={"problem_summary": "Printer queue stuck"},
            )
        ).json()
        created = await http.post(
            f"/api/v1/ai-sessions/{session['id']}/handoff",
            headers=_auth("acme", "eve"),
            json={"intent": "escalate", "engineer_notes": "spooler"},
        )
        assert created.status_code == 201
        handoff = created.json()

        event = await asyncio.wait_for(sam.get(), WAIT)
        assert event["event"] == "escalation.created"
        assert json.loads(event["data"])["handoff_id"] == handoff["id"]
        assert json.loads(event["data"])["problem_summary"] == "Printer queue stuck"

        # Sam was online on the other process, so Sam got a push and no email; Ada got email.
        deliveries = (
            await http.get(
                f"/api/v1/handoffs/{handoff['id']}/deliveries", headers=_auth("acme", "eve")
            )
        ).json()
        channels = {(d["recipient_id"], d["channel"]) for d in deliveries}
        assert ("sam", "push") in channels and ("sam", "email") not in channels
        assert ("ada", "email") in channels

        claimed = await http.post(
            f"/api/v1/handoffs/{handoff['id']}/claim", headers=_auth("acme", "ada")
        )
        assert claimed.status_code == 200
        event = await asyncio.wait_for(sam.get(), WAIT)
        assert event["event"] == "escalation.claimed"
        assert json.loads(event["data"])["actor_id"] == "ada"

        assert zed.empty()
