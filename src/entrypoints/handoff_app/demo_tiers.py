"""The demo's SPEC §14 part: a two-tier policy and a webhook receiver that prints what it got.

The receiver is a tiny HTTP server on 127.0.0.1 (the demo allows private webhook targets); it
checks each signature with the `standardwebhooks` library, as a real receiver would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import mailbox
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

TIER_SECONDS = 2
WAIT_SECONDS = 15.0
Say = Callable[[str], None]


class Receiver:
    """Keeps what it is posted and prints it; answers 204."""

    def __init__(self, say: Say) -> None:
        self.say = say
        self.secret = ""
        self.got: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(WAIT_SECONDS):
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                headers = {
                    k.strip().lower(): v.strip()
                    for k, _, v in (line.partition(":") for line in lines[1:] if line)
                }
                body = await reader.readexactly(int(headers.get("content-length", "0")))
            try:
                payload = Webhook(self.secret).verify(body, headers)
                checked = "signature verified"
            except WebhookVerificationError:
                payload, checked = json.loads(body), "BAD SIGNATURE"
            data = payload.get("data", {})
            tier = f" (tier {data['tier']})" if "tier" in data else ""
            self.say(
                f"   receiver got {payload.get('type')}{tier} for {data.get('handoff_id')} "
                f"({checked}; webhook-id {headers.get('webhook-id')})"
            )
            await self.got.put(payload)
            writer.write(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
            await writer.drain()
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()

    async def wait_for(self, event_type: str) -> dict[str, Any]:
        """The next payload of this type (others are skipped); TimeoutError after a while."""
        async with asyncio.timeout(WAIT_SECONDS):
            while True:
                payload = await self.got.get()
                if payload.get("type") == event_type:
                    return payload

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[str]:
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            yield f"http://127.0.0.1:{port}/handoff-hook"
        finally:
            server.close()
            await server.wait_closed()


def _mail_to(maildir: Path, address: str, summary: str) -> bool:
    if not maildir.exists():
        return False
    return any(
        address in str(m["To"]) and summary in str(m["Subject"])
        for m in mailbox.Maildir(str(maildir), create=False)
    )


async def tiers_and_webhooks(
    http: httpx.AsyncClient,
    auth: Callable[[str], dict[str, str]],
    maildir: Path,
    say: Say,
    check: Callable[[httpx.Response, int], Any],
) -> None:
    """Register a webhook, set a two-tier policy, escalate, watch the second tier come, claim."""
    receiver = Receiver(say)
    async with receiver.serving() as url:
        say("\n10. The owner registers a webhook (PUT /api/v1/webhooks/desk) for the team's desk")
        hook = check(
            await http.put(
                "/api/v1/webhooks/desk",
                headers=auth("olivia"),
                json={"url": url, "events": ["escalation.created", "escalation.claimed"]},
            ),
            201,
        )
        receiver.secret = hook["secret"]
        say(f"   {hook['url']}; signing secret shown once: {hook['secret'][:12]}...")

        tiers = [
            {"roles": ["engineer"], "after_seconds": 0},
            {"roles": ["admin", "owner"], "after_seconds": TIER_SECONDS},
        ]
        say(f"\n11. A two-tier policy: engineers at once, admins and owners after {TIER_SECONDS} s")
        check(
            await http.put(
                "/api/v1/escalation-policy", headers=auth("olivia"), json={"tiers": tiers}
            ),
            200,
        )
        summary = "Mailbox full for the whole sales team"
        session = check(
            await http.post(
                "/api/v1/ai-sessions", headers=auth("raj"), json={"problem_summary": summary}
            ),
            201,
        )
        handoff = check(
            await http.post(
                f"/api/v1/ai-sessions/{session['id']}/handoff",
                headers=auth("raj"),
                json={"intent": "escalate", "engineer_notes": "Quota raised, still bouncing"},
            ),
            201,
        )
        say(f"   Raj escalates {handoff['id']}: the engineers are told first")
        await receiver.wait_for("escalation.created")

        for _ in range(int(WAIT_SECONDS * 20)):
            if _mail_to(maildir, "ada@", summary) and _mail_to(maildir, "olivia@", summary):
                break
            await asyncio.sleep(0.05)
        else:
            raise TimeoutError("the second tier was not told")
        timeline = check(
            await http.get(f"/api/v1/ai-sessions/{session['id']}/timeline", headers=auth("raj")),
            200,
        )
        for event in timeline:
            if event["type"] == "escalation.tier_reached":
                data = event["data"]
                say(
                    f"   nobody claimed it in {TIER_SECONDS} s: tier {data['tier']} "
                    f"({', '.join(data['roles'])}) told, {data['recipients']} by email"
                )
        say("   Ada claims it")
        check(await http.post(f"/api/v1/handoffs/{handoff['id']}/claim", headers=auth("ada")), 200)
        await receiver.wait_for("escalation.claimed")
        stats = check(await http.get("/api/v1/analytics/escalations", headers=auth("ada")), 200)
        say(f"   claims by tier: {json.dumps(stats['claims_by_tier'])}")
