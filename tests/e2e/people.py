"""Who is in the accounts the e2e tests use, and how they call the API."""

from __future__ import annotations

import asyncio
import mailbox
from collections.abc import Awaitable, Callable
from email import message_from_bytes
from email.message import Message
from email.utils import parseaddr
from pathlib import Path
from typing import Any

import httpx

from handoff_app.container import Services
from handoff_app.http import mint_token
from handoff_app.settings import Settings

SECRET = "e2e-secret-" + "0123456789abcdef" * 4  # long enough for HS512 too
API = "/api/v1"

# account -> member id -> (role, active, deleted)
TEAMS: dict[str, dict[str, tuple[str, bool, bool]]] = {
    "acme": {
        "olga": ("owner", True, False),
        "adam": ("admin", True, False),
        "erin": ("engineer", True, False),
        "eve": ("engineer", True, False),
        "vic": ("viewer", True, False),
        "ivan": ("engineer", False, False),
        "dora": ("engineer", True, True),
    },
    "globex": {
        "gus": ("owner", True, False),
        "gwen": ("engineer", True, False),
        "gail": ("engineer", True, False),
    },
    # The seed's own scene: one escalator, one eligible teammate, a viewer and a removed admin.
    "solo": {
        "sam": ("engineer", True, False),
        "tia": ("engineer", True, False),
        "val": ("viewer", True, False),
        "del": ("admin", True, True),
    },
}


def address(account_id: str, member_id: str) -> str:
    return f"{member_id}@{account_id}.test"


async def seed(services: Services) -> None:
    for account_id, team in TEAMS.items():
        for member_id, (role, active, deleted) in team.items():
            await services.members.upsert(
                account_id,
                member_id,
                email=address(account_id, member_id),
                name=member_id.title(),
                role=role,
                active=active,
            )
            if deleted:
                await services.members.remove(account_id, member_id)


def token(settings: Settings, who: tuple[str, str]) -> str:
    """A token for `who` = (account, member)."""
    return mint_token(settings, *who)


def bearer(settings: Settings, account_id: str, member_id: str, ttl: float = 600) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(settings, account_id, member_id, ttl)}"}


class Api:
    """The calls most tests make, as a member of an account."""

    def __init__(self, client: httpx.AsyncClient, settings: Settings) -> None:
        self.client = client
        self.settings = settings

    def auth(self, account_id: str, member_id: str) -> dict[str, str]:
        return bearer(self.settings, account_id, member_id)

    async def call(
        self, method: str, path: str, who: tuple[str, str] | None, **kwargs: Any
    ) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}))
        if who is not None:
            headers.update(self.auth(*who))
        return await self.client.request(method, f"{API}{path}", headers=headers, **kwargs)

    async def session(self, who: tuple[str, str], summary: str = "VPN won't connect") -> str:
        r = await self.call("POST", "/ai-sessions", who, json={"problem_summary": summary})
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    async def escalate(
        self, who: tuple[str, str], summary: str = "VPN won't connect", notes: str = "stuck"
    ) -> tuple[str, str]:
        """(session id, handoff id) of a fresh escalated session."""
        session_id = await self.session(who, summary)
        r = await self.call(
            "POST",
            f"/ai-sessions/{session_id}/handoff",
            who,
            json={"intent": "escalate", "engineer_notes": notes},
        )
        assert r.status_code == 201, r.text
        return session_id, str(r.json()["id"])

    async def settled(self, who: tuple[str, str], handoff_id: str) -> list[dict[str, Any]]:
        """The handoff's deliveries once none is pending (bounded wait for background dispatch)."""
        found: list[dict[str, Any]] = []

        async def done() -> bool:
            nonlocal found
            r = await self.call("GET", f"/handoffs/{handoff_id}/deliveries", who)
            found = r.json()
            return bool(found) and all(d["status"] != "pending" for d in found)

        await eventually(done)
        return found


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    """Poll until `check` holds; fail after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"still not true after {timeout} s")
        await asyncio.sleep(0.02)


def mails(folder: str | Path) -> list[Message]:
    path = Path(folder)
    if not path.exists():
        return []
    box = mailbox.Maildir(path, factory=None, create=False)
    return [message_from_bytes(box.get_bytes(key)) for key in sorted(box.keys())]


def recipients(folder: str | Path) -> list[str]:
    """The address of every message in the Maildir, sorted."""
    return sorted(parseaddr(str(m["To"]))[1] for m in mails(folder))
