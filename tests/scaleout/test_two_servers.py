"""Two `handoff serve` processes on one PostgreSQL: a stream on one hears what the other does.

Real processes, real PostgreSQL (LISTEN/NOTIFY push, presence in the database), real HTTP.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from tests.scaleout.conftest import auth

pytestmark = pytest.mark.postgres

WAIT = 20.0


@asynccontextmanager
async def _stream(url: str, account: str, member: str) -> AsyncIterator[asyncio.Queue[Any]]:
    events: asyncio.Queue[Any] = asyncio.Queue()
    opened = asyncio.Event()

    async def read() -> None:
        async with (
            httpx.AsyncClient(timeout=None) as client,
            client.stream(
                "GET", f"{url}/api/v1/escalations/stream", headers=auth(account, member)
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
                headers=auth("acme", "eve"),
                json={"problem_summary": "Printer queue stuck"},
            )
        ).json()
        created = await http.post(
            f"/api/v1/ai-sessions/{session['id']}/handoff",
            headers=auth("acme", "eve"),
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
                f"/api/v1/handoffs/{handoff['id']}/deliveries", headers=auth("acme", "eve")
            )
        ).json()
        channels = {(d["recipient_id"], d["channel"]) for d in deliveries}
        assert ("sam", "push") in channels and ("sam", "email") not in channels
        assert ("ada", "email") in channels

        claimed = await http.post(
            f"/api/v1/handoffs/{handoff['id']}/claim", headers=auth("acme", "ada")
        )
        assert claimed.status_code == 200
        event = await asyncio.wait_for(sam.get(), WAIT)
        assert event["event"] == "escalation.claimed"
        assert json.loads(event["data"])["actor_id"] == "ada"

        assert zed.empty()
