"""SPEC §10-11 through the real server (uvicorn on 127.0.0.1): the stream's order and replay, a
frozen stream, a removed member, a policy that leaves engineers out, claims that stop the mail."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from tests.e2e.conftest import make_settings, prepared
from tests.e2e.people import Api, eventually, recipients, token
from tests.e2e.servers import open_stream
from tests.mail.conftest import SinkServer

from handoff_app.container import Services
from handoff_app.http import create_app
from handoff_app.settings import Settings

ERIN = ("acme", "erin")
EVE = ("acme", "eve")
ADAM = ("acme", "adam")
OLGA = ("acme", "olga")


async def test_a_claim_right_after_the_escalation_never_overtakes_it(
    remote: Api, base_url: str, settings: Settings
) -> None:
    async with open_stream(base_url, token(settings, EVE)) as eve:
        start = int(eve.ready.id or "0")
        _, handoff_id = await remote.escalate(ERIN)
        claim = await remote.call("POST", f"/handoffs/{handoff_id}/claim", ADAM)
        assert claim.status_code == 200
        seen = await eve.events_until("escalation.claimed")
    assert [(e.event, int(e.id or 0)) for e in seen] == [
        ("escalation.created", start + 1),
        ("escalation.claimed", start + 2),
    ]
    created, claimed = seen

    async with open_stream(base_url, token(settings, EVE), last_event_id=created.id) as again:
        assert again.ready.id == created.id
        replayed = await again.next()
        assert (replayed.event, replayed.id, replayed.json()) == (
            "escalation.claimed",
            claimed.id,
            claimed.json(),
        )
    async with open_stream(base_url, token(settings, EVE), last_event_id=claimed.id) as caught_up:
        with pytest.raises(AssertionError, match="no event"):
            await caught_up.next(timeout=0.5)  # nothing twice


async def test_a_last_event_id_from_another_store_gets_a_reset(
    remote: Api, base_url: str, settings: Settings
) -> None:
    async with open_stream(base_url, token(settings, EVE), last_event_id="999999") as eve:
        reset = await eve.next()
        assert reset.event == "stream.reset"
        assert (
            eve.ready.id == reset.id
        )  # the stream stands at the account's position: no id goes back
        _, handoff_id = await remote.escalate(ERIN)
        created = await eve.next()
    assert created.json()["handoff_id"] == handoff_id
    assert int(created.id or 0) == int(reset.id or 0) + 1


async def test_a_frozen_stream_gets_the_email_once_the_confirm_time_passes(
    remote: Api, base_url: str, settings: Settings, services: Services, maildir: Path
) -> None:
    """A sleeping laptop: the stream's socket stays open and nobody reads it."""
    await remote.call("PUT", "/escalation-policy", OLGA, json={"push_confirm_seconds": 1})
    host, port = base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        (
            "GET /api/v1/escalations/stream HTTP/1.1\r\n"
            f"Host: {host}\r\nAuthorization: Bearer {token(settings, EVE)}\r\n\r\n"
        ).encode()
    )
    await writer.drain()
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
    try:
        _, handoff_id = await remote.escalate(ERIN)
        deliveries = await remote.settled(ERIN, handoff_id)
        assert ("eve", "push", "sent") in {
            (d["recipient_id"], d["channel"], d["status"]) for d in deliveries
        }
        assert "eve@acme.test" not in recipients(maildir)

        await asyncio.sleep(1.1)
        await services.delivery.run_once()
        await services.delivery.run_once()
    finally:
        writer.close()

    assert "eve@acme.test" in recipients(maildir)
    got = await remote.call("GET", f"/handoffs/{handoff_id}/deliveries", ERIN)
    eve = {(d["channel"], d["status"]) for d in got.json() if d["recipient_id"] == "eve"}
    assert eve == {("push", "unconfirmed"), ("email", "sent")}


async def test_a_stream_that_marks_seen_gets_no_email(
    remote: Api, base_url: str, settings: Settings, services: Services, maildir: Path
) -> None:
    await remote.call("PUT", "/escalation-policy", OLGA, json={"push_confirm_seconds": 1})
    async with open_stream(base_url, token(settings, EVE)) as eve:
        _, handoff_id = await remote.escalate(ERIN)
        created = await eve.next()
        seen = await remote.call(
            "POST", "/escalations/seen", EVE, json={"last_event_id": created.id}
        )
        assert seen.status_code == 204
        await remote.settled(ERIN, handoff_id)
        await asyncio.sleep(1.1)
        await services.delivery.run_once()
    assert "eve@acme.test" not in recipients(maildir)
    got = await remote.call("GET", f"/handoffs/{handoff_id}/deliveries", ERIN)
    [push] = [d for d in got.json() if d["recipient_id"] == "eve"]
    assert (push["channel"], push["status"]) == ("push", "sent")
    assert push["seen_at"] is not None


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"last_event_id": "abc"}, 422, "last_event_id"),
        ({"last_event_id": "99999999"}, 422, "last_event_id"),  # ahead of the stream
        ({"last_event_id": 5}, 422, "body.last_event_id"),
        ({}, 422, "body.last_event_id"),
        ({"last_event_id": "5", "extra": 1}, 422, "body.extra"),
    ],
)
async def test_seen_refuses_what_the_stream_never_sent(
    api: Api, body: dict[str, object], status: int, field: str
) -> None:
    r = await api.call("POST", "/escalations/seen", EVE, json=body)
    assert (r.status_code, r.json()["field"]) == (status, field)


async def test_seen_is_for_seniors(api: Api) -> None:
    r = await api.call("POST", "/escalations/seen", ("acme", "vic"), json={"last_event_id": "1"})
    assert r.status_code == 403


async def test_a_removed_members_stream_is_closed_within_five_seconds(
    remote: Api, base_url: str, settings: Settings
) -> None:
    async with open_stream(base_url, token(settings, EVE)) as eve:
        removed = await remote.call("DELETE", "/members/eve", OLGA)
        assert removed.status_code == 204
        await asyncio.wait_for(eve.ended(), timeout=5)
        await remote.escalate(ERIN, summary="secret summary")
    async with httpx.AsyncClient(base_url=base_url) as client:
        again = await client.get(
            "/api/v1/escalations/stream",
            headers={"Authorization": f"Bearer {token(settings, EVE)}", "Last-Event-ID": "0"},
        )
    assert again.status_code == 401  # and so no replay


async def test_a_demoted_members_stream_is_closed_too(
    remote: Api, base_url: str, settings: Settings
) -> None:
    async with open_stream(base_url, token(settings, EVE)) as eve:
        demoted = await remote.call(
            "PUT",
            "/members/eve",
            OLGA,
            json={"email": "eve@acme.test", "name": "Eve", "role": "viewer"},
        )
        assert demoted.status_code == 200
        await asyncio.wait_for(eve.ended(), timeout=5)


async def test_engineers_outside_the_policy_see_the_queue_change_but_not_the_escalation(
    remote: Api, base_url: str, settings: Settings
) -> None:
    await remote.call("PUT", "/escalation-policy", OLGA, json={"roles": ["owner", "admin"]})
    async with open_stream(base_url, token(settings, EVE)) as eve:
        start = eve.ready.id
        _, handoff_id = await remote.escalate(ERIN)
        await remote.call("POST", f"/handoffs/{handoff_id}/claim", ADAM)
        live = await eve.next()
    assert live.event == "escalation.claimed"
    async with open_stream(base_url, token(settings, EVE), last_event_id=start) as again:
        replayed = await again.next()
    assert (replayed.event, replayed.id, replayed.json()) == (live.event, live.id, live.json())


async def test_a_claim_while_smtp_is_down_stops_every_email(tmp_path: Path) -> None:
    """The relay is down when the escalation is sent; someone claims; the relay comes back and
    the worker runs: nobody, the claimer included, is asked to take what was taken."""
    relay = SinkServer()  # not started yet: its port refuses connections
    settings = make_settings(
        tmp_path, smtp_url=relay.url, retry_base_seconds=0.05, retry_cap_seconds=0.05
    )
    services = await prepared(settings)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(settings, services)),
            base_url="http://handoff.test",
        ) as client:
            api = Api(client, settings)
            _, handoff_id = await api.escalate(ERIN)

            async def tried() -> bool:
                got = await api.call("GET", f"/handoffs/{handoff_id}/deliveries", ERIN)
                return all(d["attempts"] >= 1 for d in got.json())

            await eventually(tried)
            claim = await api.call("POST", f"/handoffs/{handoff_id}/claim", ADAM)
            assert claim.status_code == 200
            relay.start()
            await asyncio.sleep(0.1)  # every retry is due again
            await services.delivery.run_once()
            got = await api.call("GET", f"/handoffs/{handoff_id}/deliveries", ERIN)
        assert relay.sink.recipients() == []
        assert {d["status"] for d in got.json()} == {"cancelled"}
    finally:
        relay.stop()
        await services.close()
