"""The real server under uvicorn on 127.0.0.1 (the API plus its in-process worker), and the
calls the outage tests make to it."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from tests.worker.harness import ACCOUNT, ESCALATOR, eventually

from handoff_app.http import mint_token
from handoff_app.serve import server_app
from handoff_app.settings import Settings

SECRET = "worker-tests-" + "0123456789abcdef" * 3
BOUND = 5.0  # seconds: far below the SMTP timeout of 30 s a waiting request would spend


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """`server_app(settings)` under uvicorn on 127.0.0.1 in this loop, with a client for the
    escalator; the server (and its worker) is shut down gracefully at exit."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        server_app(settings), log_config=None, lifespan="on", timeout_graceful_shutdown=5
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await eventually(lambda: server.started or task.done(), timeout=15, what="uvicorn up")
        assert server.started
        base = f"http://127.0.0.1:{sock.getsockname()[1]}"
        token = mint_token(settings, ACCOUNT, ESCALATOR)
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=10) as client:
            yield client
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=20)
        sock.close()


def settings_for(database: str, smtp_url: str, folder: Path) -> Settings:
    """Retries come round quickly and are never used up during a test."""
    return Settings(
        database_url=database,
        smtp_url=smtp_url,
        maildir=str(folder / "mail"),
        jwt_secret=SECRET,
        worker_poll_seconds=0.05,
        retry_base_seconds=0.1,
        retry_cap_seconds=0.3,
        retry_attempts=100,
    )


async def escalate(client: httpx.AsyncClient) -> str:
    """Start a session and escalate it; the escalation must answer within BOUND seconds."""
    started = await client.post("/api/v1/ai-sessions", json={"problem_summary": "VPN down"})
    assert started.status_code == 201, started.text
    answer = await asyncio.wait_for(
        client.post(
            f"/api/v1/ai-sessions/{started.json()['id']}/handoff",
            json={"intent": "escalate", "engineer_notes": "stuck on the handshake"},
        ),
        timeout=BOUND,
    )
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


async def deliveries(client: httpx.AsyncClient, handoff_id: str) -> list[dict[str, Any]]:
    listed = await client.get(f"/api/v1/handoffs/{handoff_id}/deliveries")
    assert listed.status_code == 200, listed.text
    found: list[dict[str, Any]] = listed.json()
    return found
