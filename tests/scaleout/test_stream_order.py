"""SPEC §10 across processes: two `serve` processes on PostgreSQL, 8 writers raising 500
escalations with claims and withdrawals mixed in, and a listener that drops and reconnects with
`Last-Event-ID` every few hundred milliseconds, alternating servers. It must get every event once,
ids strictly increasing, each escalation's `created` before its `claimed`/`withdrawn`, and the
same `data` a listener that never dropped got live. Bounded: 500 escalations, 180 s at most."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import httpx
import pytest
from tests.e2e.people import eventually
from tests.scaleout.conftest import auth

pytestmark = pytest.mark.postgres

ESCALATIONS = 500
WRITERS = 8
DEADLINE = 180.0

Event = tuple[int, str, dict[str, Any]]  # (id, event, data)


async def _read(
    url: str, member: str, last: str | None, into: list[Event], resets: list[str]
) -> str | None:
    """Read one connection until it is cancelled; returns the last id read."""
    headers = auth("acme", member)
    if last is not None:
        headers["Last-Event-ID"] = last
    async with (
        httpx.AsyncClient(timeout=httpx.Timeout(10, read=None)) as client,
        client.stream("GET", f"{url}/api/v1/escalations/stream", headers=headers) as response,
    ):
        assert response.status_code == 200
        event: dict[str, str] = {}
        async for line in response.aiter_lines():
            if line == "":
                if "event" in event:
                    if event["event"] == "stream.reset":
                        resets.append(event.get("id", ""))
                    elif event["event"] != "stream.ready":
                        into.append((int(event["id"]), event["event"], json.loads(event["data"])))
                    last = event.get("id", last)
                event = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(":")
                event[name] = value.lstrip(" ")
    return last


class Listener:
    """Connects, reads for 200-500 ms, drops, and reconnects from the last id it saw."""

    def __init__(self, urls: list[str], member: str) -> None:
        self.urls = urls
        self.member = member
        self.events: list[Event] = []
        self.resets: list[str] = []
        self.last: str | None = None
        self.connections = 0

    async def once(self, seconds: float) -> None:
        url = self.urls[self.connections % len(self.urls)]
        self.connections += 1
        got: list[Event] = []
        task = asyncio.create_task(_read(url, self.member, self.last, got, self.resets))
        await asyncio.sleep(seconds)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        self.events.extend(got)
        if got:
            self.last = str(got[-1][0])

    async def run(self, stop: asyncio.Event) -> None:
        if self.last is None:  # start from the position the first connection reports
            self.last = "0"
        while not stop.is_set():
            await self.once(random.uniform(0.2, 0.5))


async def _writer(url: str, jobs: asyncio.Queue[int], outcomes: dict[str, str]) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        while True:
            try:
                n = jobs.get_nowait()
            except asyncio.QueueEmpty:
                return
            session = await http.post(
                "/api/v1/ai-sessions",
                headers=auth("acme", "eve"),
                json={"problem_summary": f"s{n}"},
            )
            assert session.status_code == 201, session.text
            handoff = await http.post(
                f"/api/v1/ai-sessions/{session.json()['id']}/handoff",
                headers=auth("acme", "eve"),
                json={"intent": "escalate", "engineer_notes": f"n{n}"},
            )
            assert handoff.status_code == 201, handoff.text
            handoff_id = handoff.json()["id"]
            outcomes[handoff_id] = "open"
            if n % 3 == 0:
                r = await http.post(
                    f"/api/v1/handoffs/{handoff_id}/claim", headers=auth("acme", "ada")
                )
                assert r.status_code == 200, r.text
                outcomes[handoff_id] = "claimed"
            elif n % 3 == 1:
                r = await http.post(
                    f"/api/v1/handoffs/{handoff_id}/withdraw", headers=auth("acme", "eve")
                )
                assert r.status_code == 200, r.text
                outcomes[handoff_id] = "withdrawn"


async def test_a_reconnecting_listener_gets_every_event_once_in_commit_order(
    servers: list[str],
) -> None:
    steady_events: list[Event] = []
    steady_resets: list[str] = []
    steady = asyncio.create_task(_read(servers[1], "ada", "0", steady_events, steady_resets))
    sam = Listener(servers, "sam")
    stop = asyncio.Event()
    flapping = asyncio.create_task(sam.run(stop))

    jobs: asyncio.Queue[int] = asyncio.Queue()
    for n in range(ESCALATIONS):
        jobs.put_nowait(n)
    outcomes: dict[str, str] = {}
    async with asyncio.timeout(DEADLINE):
        await asyncio.gather(*(_writer(servers[i % 2], jobs, outcomes) for i in range(WRITERS)))
        expected = ESCALATIONS + sum(1 for o in outcomes.values() if o != "open")

        async def sam_has_all() -> bool:
            return len({e[0] for e in sam.events}) >= expected

        async def ada_has_all() -> bool:
            return len(steady_events) >= expected

        await eventually(sam_has_all, timeout=60)
        stop.set()
        await flapping
        await sam.once(1.0)  # one more connection: nothing more, nothing again
        await eventually(ada_has_all, timeout=30)
    steady.cancel()
    await asyncio.gather(steady, return_exceptions=True)

    assert sam.connections > 5
    assert sam.resets == [] and steady_resets == []
    ids = [e[0] for e in sam.events]
    assert ids == sorted(set(ids)), "an event came twice or out of order"
    assert len(ids) == expected
    assert ids == [e[0] for e in steady_events]
    for (i, kind, data), (j, steady_kind, steady_data) in zip(
        sam.events, steady_events, strict=True
    ):
        assert (i, kind, data) == (j, steady_kind, steady_data)  # replayed data equal to live
    first: dict[str, str] = {}
    for _, kind, data in sam.events:
        first.setdefault(data["handoff_id"], kind)
    assert set(first.values()) == {"escalation.created"}
    closing = {
        data["handoff_id"]: kind for _, kind, data in sam.events if kind != "escalation.created"
    }
    assert closing == {h: f"escalation.{o}" for h, o in outcomes.items() if o != "open"}
