"""The request never waits for email: with SMTP hanging, an escalation still answers at once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from tests.e2e.conftest import make_settings, prepared
from tests.e2e.people import Api, eventually

from handoff_app.http import create_app

SAM = ("solo", "sam")


async def test_an_escalation_answers_while_smtp_hangs_and_its_mail_waits(tmp_path: Path) -> None:
    greeted = asyncio.Event()
    release = asyncio.Event()

    async def silent_smtp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        greeted.set()  # a connection, and not a word of greeting until released
        await release.wait()
        writer.close()

    smtp = await asyncio.start_server(silent_smtp, "127.0.0.1", 0)
    port = smtp.sockets[0].getsockname()[1]
    settings = make_settings(tmp_path, "memory", smtp_url=f"smtp://127.0.0.1:{port}?timeout=60")
    services = await prepared(settings)
    transport = httpx.ASGITransport(app=create_app(settings, services))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            api = Api(client, settings)
            session_id = await api.session(SAM)
            answer = await asyncio.wait_for(
                api.call(
                    "POST",
                    f"/ai-sessions/{session_id}/handoff",
                    SAM,
                    json={"intent": "escalate", "engineer_notes": "help"},
                ),
                timeout=10,
            )
            assert answer.status_code == 201
            handoff_id = answer.json()["id"]
            await asyncio.wait_for(greeted.wait(), timeout=10)
            waiting = await api.call("GET", f"/handoffs/{handoff_id}/deliveries", SAM)
            assert [(d["recipient_id"], d["status"]) for d in waiting.json()] == [
                ("tia", "pending")
            ]
            release.set()

            async def deferred() -> bool:
                r = await api.call("GET", f"/handoffs/{handoff_id}/deliveries", SAM)
                (d,) = r.json()
                return bool(d["attempts"] == 1 and d["last_error"])

            await eventually(deferred)
            (d,) = (await api.call("GET", f"/handoffs/{handoff_id}/deliveries", SAM)).json()
            assert d["status"] == "pending"  # to be retried by the worker
    finally:
        release.set()
        await services.close()
        smtp.close()
        await smtp.wait_closed()
