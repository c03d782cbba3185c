"""The live stream against a real uvicorn: pushes to those online, email to the rest, replay."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from tests.e2e.people import API, Api, eventually, recipients, token
from tests.e2e.servers import open_stream

from handoff_app.container import Services
from handoff_app.settings import Settings

ERIN = ("acme", "erin")
EVE = ("acme", "eve")
ADAM = ("acme", "adam")


async def test_an_online_senior_gets_the_push_and_no_email(
    remote: Api, base_url: str, settings: Settings, maildir: Path
) -> None:
    async with open_stream(base_url, token(settings, EVE)) as eve:
        session_id, handoff_id = await remote.escalate(ERIN, summary="VPN down", notes="help")
        event = await eve.next()
        deliveries = await remote.settled(ERIN, handoff_id)
    assert event.event == "escalation.created"
    assert event.id is not None and event.id.isdigit()
    data = event.json()
    assert {k: data[k] for k in ("handoff_id", "session_id", "problem_summary", "actor_id")} == {
        "handoff_id": handoff_id,
        "session_id": session_id,
        "problem_summary": "VPN down",
        "actor_id": "erin",
    }
    assert data["at"]
    by_recipient = {(d["recipient_id"], d["channel"]): d["status"] for d in deliveries}
    assert by_recipient == {
        ("eve", "push"): "sent",
        ("olga", "email"): "sent",
        ("adam", "email"): "sent",
    }
    assert recipients(maildir) == ["adam@acme.test", "olga@acme.test"]


async def test_claims_and_withdrawals_reach_the_stream(
    remote: Api, base_url: str, settings: Settings
) -> None:
    async with open_stream(base_url, token(settings, EVE)) as eve:
        _, first = await remote.escalate(ERIN, summary="one")
        await remote.call("POST", f"/handoffs/{first}/claim", ADAM)
        _, second = await remote.escalate(ERIN, summary="two")
        await remote.call("POST", f"/handoffs/{second}/withdraw", ERIN)
        seen = await eve.events_until("escalation.withdrawn")
    got = sorted((e.event, e.json()["handoff_id"], e.json()["actor_id"]) for e in seen)
    assert got == sorted(
        [
            ("escalation.created", first, "erin"),
            ("escalation.claimed", first, "adam"),
            ("escalation.created", second, "erin"),
            ("escalation.withdrawn", second, "erin"),
        ]
    )


async def test_last_event_id_replays_what_was_missed(
    remote: Api, base_url: str, settings: Settings, services: Services, maildir: Path
) -> None:
    async with open_stream(base_url, token(settings, EVE)) as eve:
        _, seen_id = await remote.escalate(ERIN, summary="seen live")
        last = await eve.next()
    assert last.event == "escalation.created" and last.id is not None

    async def eve_offline() -> bool:
        return not await services.presence.online("acme", ["eve"])

    await eventually(eve_offline)
    await remote.call("POST", f"/handoffs/{seen_id}/claim", ADAM)
    _, missed = await remote.escalate(ERIN, summary="missed")
    await remote.call("POST", f"/handoffs/{missed}/withdraw", ERIN)
    _, own = await remote.escalate(EVE, summary="eve's own")
    deliveries = await remote.settled(ERIN, missed)
    assert ("eve", "email") in {(d["recipient_id"], d["channel"]) for d in deliveries}

    async with open_stream(base_url, token(settings, EVE), last_event_id=last.id) as eve:
        replayed = await eve.events_until("escalation.withdrawn")
    assert [(e.event, e.json()["handoff_id"]) for e in replayed] == [
        ("escalation.claimed", seen_id),
        ("escalation.created", missed),
        ("escalation.withdrawn", missed),
    ]
    ids = [int(e.id or 0) for e in replayed]
    assert ids == sorted(ids) and ids[0] > int(last.id)
    assert own not in {e.json()["handoff_id"] for e in replayed}
    assert "eve@acme.test" in recipients(maildir)


async def test_a_second_accounts_stream_never_carries_the_first(
    remote: Api, base_url: str, settings: Settings
) -> None:
    async with open_stream(base_url, token(settings, ("globex", "gus"))) as gus:
        _, acme = await remote.escalate(ERIN)
        await remote.call("POST", f"/handoffs/{acme}/claim", ADAM)
        await remote.settled(ERIN, acme)
        _, globex = await remote.escalate(("globex", "gwen"), summary="Globex down")
        first = await gus.next()
    assert (first.event, first.json()["handoff_id"]) == ("escalation.created", globex)


async def test_heartbeat_comments_keep_the_stream_alive(base_url: str, settings: Settings) -> None:
    async with open_stream(base_url, token(settings, EVE)) as eve:
        beat = await eve.next(comments=True)
    assert beat.comment == "heartbeat"


async def test_a_client_that_has_the_headers_is_already_online(
    base_url: str, settings: Settings, services: Services
) -> None:
    headers = {"Authorization": f"Bearer {token(settings, EVE)}"}
    async with (
        httpx.AsyncClient(base_url=base_url) as client,
        client.stream("GET", f"{API}/escalations/stream", headers=headers) as r,
    ):
        assert r.status_code == 200
        assert await services.presence.online("acme", ["eve", "adam"]) == {"eve"}


async def test_closing_the_stream_makes_the_member_offline_again(
    remote: Api, base_url: str, settings: Settings, services: Services, maildir: Path
) -> None:
    async with open_stream(base_url, token(settings, EVE)):
        assert await services.presence.online("acme", ["eve"]) == {"eve"}

    async def eve_offline() -> bool:
        return not await services.presence.online("acme", ["eve"])

    await eventually(eve_offline)
    _, handoff_id = await remote.escalate(ERIN)
    await remote.settled(ERIN, handoff_id)
    assert "eve@acme.test" in recipients(maildir)


@pytest.mark.parametrize(
    ("who", "status"),
    [(("acme", "vic"), 403), (("acme", "dora"), 401), (None, 401)],
    ids=["viewer", "removed", "no-token"],
)
async def test_the_stream_refuses_viewers_and_strangers(
    base_url: str, settings: Settings, who: tuple[str, str] | None, status: int
) -> None:
    headers = {} if who is None else {"Authorization": f"Bearer {token(settings, who)}"}
    async with httpx.AsyncClient(base_url=base_url) as client:
        r = await client.get(f"{API}/escalations/stream", headers=headers)
    assert r.status_code == status
    assert r.headers["content-type"].startswith("application/json")


@pytest.mark.parametrize("last_id", ["abc", "-1", str(2**63)])
async def test_a_last_event_id_the_stream_never_sent_is_422(
    base_url: str, settings: Settings, last_id: str
) -> None:
    headers = {"Authorization": f"Bearer {token(settings, EVE)}", "Last-Event-ID": last_id}
    async with httpx.AsyncClient(base_url=base_url) as client:
        r = await client.get(f"{API}/escalations/stream", headers=headers)
    assert (r.status_code, r.json()["field"]) == (422, "Last-Event-ID")


async def test_a_query_token_opens_the_stream_and_never_reaches_the_access_log(
    remote: Api, base_url: str, settings: Settings, access_log: list[str]
) -> None:
    secret_token = token(settings, EVE)
    async with open_stream(base_url, secret_token, query_token=True) as eve:
        _, handoff_id = await remote.escalate(ERIN)
        event = await eve.next()
    assert event.json()["handoff_id"] == handoff_id
    stream_lines = [line for line in access_log if "/escalations/stream" in line]
    assert stream_lines, access_log
    assert all("stream?[redacted]" in line for line in stream_lines)  # no query logged
    assert not any(secret_token in line for line in access_log)
    assert not any(secret_token.split(".")[2] in line for line in access_log)
