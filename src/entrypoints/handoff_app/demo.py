"""`handoff demo`: the whole product in one run, on SQLite and Maildir, in a fresh folder.

It serves the real HTTP API with uvicorn on 127.0.0.1, connects one senior's live stream, escalates
a session, shows the push that arrived and the emails in the Maildir, claims it (and shows a second
claimer losing), then prints the timeline and the analytics. Last, it leaves a second escalation
open and prints a sign-in link to the inbox page and one email's claim link; with `--keep` (or
`--dir`) the folder stays, with the settings to serve it again so those links open.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import mailbox
import os
import re
import secrets
import shlex
import socket
import sys
import tempfile
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from handoff_app.container import build_services
from handoff_app.demo_tiers import tiers_and_webhooks
from handoff_app.http import mint_token
from handoff_app.http.pages import login_link
from handoff_app.serve import server_app
from handoff_app.settings import Settings
from handoff_core.services.signin import SignInService

ACCOUNT = "acme-it"
TEAM = [  # id, name, role
    ("olivia", "Olivia Owner", "owner"),
    ("ada", "Ada Admin", "admin"),
    ("eve", "Eve Engineer", "engineer"),
    ("sam", "Sam Senior", "engineer"),
    ("raj", "Raj Engineer", "engineer"),
    ("vic", "Vic Viewer", "viewer"),
]
WAIT_SECONDS = 15.0


class DemoFailed(RuntimeError):
    pass


def _say(text: str = "") -> None:
    print(text, flush=True)


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextlib.asynccontextmanager
async def _serving(settings: Settings, sock: socket.socket) -> AsyncIterator[None]:
    config = uvicorn.Config(server_app(settings), log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(int(WAIT_SECONDS * 100)):
            if server.started or task.done():
                break
            await asyncio.sleep(0.01)
        if not server.started:
            raise DemoFailed("the server did not start")
        yield
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=WAIT_SECONDS)


async def _read_stream(
    client: httpx.AsyncClient, token: str, events: asyncio.Queue[Any], connected: asyncio.Event
) -> None:
    headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
    async with client.stream("GET", "/api/v1/escalations/stream", headers=headers) as response:
        if response.status_code != 200:
            raise DemoFailed(f"the stream answered {response.status_code}")
        connected.set()
        event: dict[str, str] = {}
        async for line in response.aiter_lines():
            if line == "":
                if "event" in event:
                    await events.put(dict(event))
                event = {}
            elif not line.startswith(":") and ":" in line:
                name, _, value = line.partition(":")
                event[name] = value.lstrip(" ")


def _check(response: httpx.Response, status: int) -> Any:
    if response.status_code != status:
        raise DemoFailed(
            f"{response.request.method} {response.request.url.path} answered "
            f"{response.status_code}: {response.text}"
        )
    return response.json() if response.content else None


def _mail_in(maildir: Path) -> list[mailbox.MaildirMessage]:
    return list(mailbox.Maildir(str(maildir), create=False)) if maildir.exists() else []


async def _wait_for_mail(maildir: Path, count: int) -> list[mailbox.MaildirMessage]:
    for _ in range(int(WAIT_SECONDS * 20)):
        messages = _mail_in(maildir)
        if len(messages) >= count:
            return messages
        await asyncio.sleep(0.05)
    raise DemoFailed(f"expected {count} emails in {maildir}")


async def _wait_for_email_to(maildir: Path, to: str, subject: str) -> mailbox.MaildirMessage:
    for _ in range(int(WAIT_SECONDS * 20)):
        for message in _mail_in(maildir):
            if to in str(message["To"]) and subject in str(message["Subject"]):
                return message
        await asyncio.sleep(0.05)
    raise DemoFailed(f"no email to {to} about {subject!r} in {maildir}")


def _claim_link_in(message: mailbox.MaildirMessage, base: str) -> str:
    for part in message.walk():
        if part.get_content_type() == "text/plain":
            payload = part.get_payload(decode=True)
            text = payload.decode("utf-8") if isinstance(payload, bytes) else ""
            found = re.search(re.escape(base) + r"/claim/\S+", text)
            if found:
                return found.group(0)
    raise DemoFailed("the email carries no claim link")


def _write_env(folder: Path, settings: Settings, port: int) -> Path:
    """The settings the demo ran with, to serve its folder again (the file is private)."""
    values = {
        "HANDOFF_DATABASE_URL": settings.database_url,
        "HANDOFF_MAILDIR": settings.maildir,
        "HANDOFF_MAIL_FROM": settings.mail_from,
        "HANDOFF_JWT_SECRET": settings.jwt_secret or "",
        "HANDOFF_PUBLIC_URL": settings.public_url,
    }
    path = folder / "handoff.env"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as env:
        env.writelines(f"{k}={shlex.quote(v)}\n" for k, v in values.items())
    return path


async def _demo(folder: Path, kept: bool = False) -> None:
    sock = _free_socket()
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{folder / 'handoff.db'}",
        maildir=str(folder / "mail"),
        mail_from="handoff-demo@localhost",
        jwt_secret=secrets.token_hex(32),
        public_url=base,
        heartbeat_seconds=5.0,
        worker_poll_seconds=0.2,
        webhook_allow_private=True,  # the demo's webhook receiver listens on 127.0.0.1
    )
    _say(f"handoff demo in {folder}")
    _say(f"  database {folder / 'handoff.db'}, mail {folder / 'mail'}, API {base}")
    _say()

    services = await build_services(settings)  # the host product mirrors its first user in
    try:
        await services.members.upsert(
            ACCOUNT, "olivia", email="olivia@acme-it.test", name="Olivia Owner", role="owner"
        )
    finally:
        await services.close()

    def auth(member: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {mint_token(settings, ACCOUNT, member, 600)}"}

    async with _serving(settings, sock), httpx.AsyncClient(base_url=base, timeout=10) as http:
        _say("1. The owner mirrors the team in (PUT /api/v1/members/{id})")
        for member_id, name, role in TEAM[1:]:
            body = {
                "email": f"{member_id}@acme-it.test",
                "name": name,
                "role": role,
                "active": True,
            }
            _check(
                await http.put(f"/api/v1/members/{member_id}", json=body, headers=auth("olivia")),
                200,
            )
        for m in _check(await http.get("/api/v1/members", headers=auth("eve")), 200):
            _say(f"   {m['id']:<7} {m['role']:<9} {m['email']}")

        _say("\n2. Sam opens the live stream (GET /api/v1/escalations/stream): Sam is online")
        events: asyncio.Queue[Any] = asyncio.Queue()
        connected = asyncio.Event()
        sam_token = mint_token(settings, ACCOUNT, "sam", 600)
        reader = asyncio.get_running_loop().create_task(
            _read_stream(http, sam_token, events, connected)
        )
        await asyncio.wait_for(connected.wait(), WAIT_SECONDS)
        ready = await asyncio.wait_for(events.get(), WAIT_SECONDS)
        _say(f"   first event: {ready['event']} id={ready.get('id')} (where the stream stands)")

        _say("\n3. Eve works a session, then escalates it")
        session = _check(
            await http.post(
                "/api/v1/ai-sessions",
                headers=auth("eve"),
                json={
                    "problem_summary": "VPN won't connect after Win update",
                    "context": {
                        "messages": [{"role": "user", "content": "VPN drops at auth"}],
                        "confidence_tier": "discovery",
                    },
                },
            ),
            201,
        )
        handoff = _check(
            await http.post(
                f"/api/v1/ai-sessions/{session['id']}/handoff",
                headers=auth("eve"),
                json={"intent": "escalate", "engineer_notes": "Stuck on the auth handshake"},
            ),
            201,
        )
        _say(f"   handoff {handoff['id']} is {handoff['status']}; session is now escalated")

        pushed = await asyncio.wait_for(events.get(), WAIT_SECONDS)
        data = json.loads(pushed["data"])
        _say(
            f"\n4. Sam's stream got: event={pushed['event']} id={pushed.get('id')} "
            f"summary={data['problem_summary']!r}"
        )
        seen = {"last_event_id": pushed.get("id", "0")}
        _check(await http.post("/api/v1/escalations/seen", json=seen, headers=auth("sam")), 204)
        _say("   Sam's app marks it seen (POST /api/v1/escalations/seen), so no email follows")

        messages = await _wait_for_mail(folder / "mail", 3)
        _say(f"\n5. The offline seniors got email ({folder / 'mail'}):")
        for message in sorted(messages, key=lambda m: str(m["To"])):
            _say(f"   to {message['To']}: {message['Subject']}")
        _say("   (nothing for Eve, who escalated, or Vic, a viewer; Sam got the push instead)")

        _say("\n6. Sam claims it; Ada is a moment too late")
        claimed = _check(
            await http.post(f"/api/v1/handoffs/{handoff['id']}/claim", headers=auth("sam")), 200
        )
        _say(f"   claimed_by={claimed['claimed_by']} at {claimed['claimed_at']}")
        late = await http.post(f"/api/v1/handoffs/{handoff['id']}/claim", headers=auth("ada"))
        _say(f"   Ada: {late.status_code} {late.json()}")

        _say("\n7. The timeline (GET /api/v1/ai-sessions/{id}/timeline)")
        for event in _check(
            await http.get(f"/api/v1/ai-sessions/{session['id']}/timeline", headers=auth("eve")),
            200,
        ):
            data = event["data"]
            who = event.get("actor_id") or f"{data.get('recipient_id')} by {data.get('channel')}"
            _say(f"   {event['at'][11:19]} {event['type']:<21} {who}")

        _say("\n8. Analytics (GET /api/v1/analytics/escalations)")
        stats = _check(await http.get("/api/v1/analytics/escalations", headers=auth("ada")), 200)
        _say("   " + json.dumps(stats))
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
            await reader

        _say("\n9. Raj escalates another session and leaves it open, for you to see in a browser")
        second = _check(
            await http.post(
                "/api/v1/ai-sessions",
                headers=auth("raj"),
                json={
                    "problem_summary": "Printer queue stuck on the 3rd floor",
                    "context": {
                        "messages": [
                            {"role": "user", "content": "Jobs sit in the queue forever"},
                            {"role": "assistant", "content": "Restarted the spooler: no change"},
                        ]
                    },
                },
            ),
            201,
        )
        _check(
            await http.post(
                f"/api/v1/ai-sessions/{second['id']}/handoff",
                headers=auth("raj"),
                json={"intent": "escalate", "engineer_notes": "Driver or spooler? Need eyes."},
            ),
            201,
        )
        claim_url = _claim_link_in(
            await _wait_for_email_to(folder / "mail", "ada@", "Printer"), base
        )
        page = await http.get(claim_url.removeprefix(base))
        _say(f"   Ada's email links to her own claim page: GET it answers {page.status_code}")
        _say("   (opening it claims nothing; its Claim button does)")
        await tiers_and_webhooks(http, auth, folder / "mail", _say, _check)

    services = await build_services(settings)
    try:
        code = await SignInService(services.uow, services.clock).issue(
            ACCOUNT, "ada", timedelta(hours=1)
        )
    finally:
        await services.close()
    _say("\n12. In a browser")
    _say(f"   the inbox, signed in as Ada (one-time link): {login_link(base, code)}")
    _say(f"   the claim link of Ada's email:                {claim_url}")
    port = base.rsplit(":", 1)[1]
    if kept:
        env = _write_env(folder, settings, int(port))
        _say(f"   The folder {folder} is kept. Serve it again to open these links:")
        _say(f"     set -a; . {shlex.quote(str(env))}; set +a; handoff serve --port {port}")
    else:
        _say(f"   The folder {folder} is deleted when the demo ends, and these links with it;")
        _say("   run `handoff demo --keep` to keep it and serve it again.")
    _say("\nDemo finished: everything above went through the real HTTP API, SQLite and Maildir.")


def folder_problem(folder: str) -> str | None:
    """Why `folder` (`demo --dir`) cannot hold a kept demo, or None: it is printed and put in a
    database URL, and must be new or empty. Checked before anything is written."""
    if folder == "":
        return "--dir: must not be empty (leave it out for a temporary folder)"
    try:
        folder.encode("utf-8")
    except UnicodeEncodeError:
        return "--dir: must be valid UTF-8 (its path is printed and put in the database URL)"
    path = Path(folder)
    if path.exists() and not path.is_dir():
        return f"--dir: {folder} is not a folder"
    if path.is_dir() and any(path.iterdir()):
        return f"demo folder {folder} is not empty; give a new or empty one"
    return None


def _made(folder: str) -> Path:
    """The folder, made if need be (with the folders above it)."""
    path = Path(folder).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


async def run_demo(folder: str | None = None, keep: bool = False) -> int:
    """Run the demo in `folder` (kept) or a temporary one (deleted at the end unless `keep`)."""
    if folder is not None or keep:
        if folder is None:
            path = Path(tempfile.mkdtemp(prefix="handoff-demo-"))
        elif problem := folder_problem(folder):
            print(f"handoff: {problem}", file=sys.stderr)
            return 2
        else:
            path = _made(folder)
        try:
            await _demo(path, kept=True)
        except (DemoFailed, TimeoutError) as exc:
            print(f"handoff: demo failed: {exc or 'timed out'}", file=sys.stderr)
            return 1
        return 0
    with tempfile.TemporaryDirectory(prefix="handoff-demo-") as tmp:
        try:
            await _demo(Path(tmp))
        except (DemoFailed, TimeoutError) as exc:
            print(f"handoff: demo failed: {exc or 'timed out'}", file=sys.stderr)
            return 1
    return 0
