"""SPEC §14 over HTTP: webhook endpoints (admins and owners; the secret shown once; private
targets refused without the setting), escalations posted to a real receiver, tiered policies
and claims by tier."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from standardwebhooks.webhooks import Webhook
from tests.e2e.conftest import make_settings, prepared
from tests.e2e.people import Api, eventually
from tests.support.receiver import Receiver, receiving

from handoff_app.http import create_app

OLGA = ("acme", "olga")  # owner
ADAM = ("acme", "adam")  # admin
ERIN = ("acme", "erin")  # engineer
EVE = ("acme", "eve")  # engineer
VIC = ("acme", "vic")  # viewer
GUS = ("globex", "gus")  # owner of another account


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with receiving() as running:
        yield running


async def test_an_endpoint_is_created_with_its_secret_once_then_read_changed_and_removed(
    api: Api, receiver: Receiver
) -> None:
    body = {"url": receiver.url("ops"), "events": ["escalation.created"]}
    created = await api.call("PUT", "/webhooks/ops", OLGA, json=body)
    assert created.status_code == 201, created.text
    shown = created.json()
    assert shown["secret"].startswith("whsec_")
    assert (shown["id"], shown["url"], shown["events"], shown["format"]) == (
        "ops",
        receiver.url("ops"),
        ["escalation.created"],
        "standard",
    )

    changed = await api.call(
        "PUT",
        "/webhooks/ops",
        ADAM,
        json={**body, "events": ["escalation.claimed", "escalation.created"], "format": "slack"},
    )
    assert changed.status_code == 200
    assert "secret" not in changed.json()
    assert changed.json()["format"] == "slack"
    read = await api.call("GET", "/webhooks/ops", OLGA)
    assert read.status_code == 200 and "secret" not in read.json()
    assert read.json()["events"] == ["escalation.claimed", "escalation.created"]
    listed = await api.call("GET", "/webhooks", ADAM)
    assert [w["id"] for w in listed.json()] == ["ops"]
    assert (await api.call("GET", "/webhooks", GUS)).json() == []
    assert (await api.call("GET", "/webhooks/ops", GUS)).status_code == 404

    assert (await api.call("DELETE", "/webhooks/ops", OLGA)).status_code == 204
    assert (await api.call("GET", "/webhooks/ops", OLGA)).status_code == 404
    assert (await api.call("DELETE", "/webhooks/ops", OLGA)).status_code == 404


@pytest.mark.parametrize("who", [ERIN, VIC])
async def test_only_admins_and_owners_manage_webhooks(
    api: Api, receiver: Receiver, who: tuple[str, str]
) -> None:
    body = {"url": receiver.url("x"), "events": ["escalation.created"]}
    assert (await api.call("PUT", "/webhooks/x", who, json=body)).status_code == 403
    assert (await api.call("PUT", "/webhooks/x", OLGA, json=body)).status_code == 201
    assert (await api.call("GET", "/webhooks", who)).status_code == 403
    assert (await api.call("GET", "/webhooks/x", who)).status_code == 403
    assert (await api.call("DELETE", "/webhooks/x", who)).status_code == 403


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "ftp://hooks.example/x", "events": ["escalation.created"]}, "url"),
        ({"url": "https://u:p@hooks.example/x", "events": ["escalation.created"]}, "url"),
        ({"url": "https://hooks.example/x", "events": ["escalation.exploded"]}, "body.events.0"),
        ({"url": "https://hooks.example/x", "events": []}, "body.events"),
        (
            {"url": "https://hooks.example/x", "events": ["escalation.created"], "format": "x"},
            "body.format",
        ),
        (
            {"url": "https://hooks.example/x", "events": ["escalation.created"], "tls": 1},
            "body.tls",
        ),
        ({"events": ["escalation.created"]}, "body.url"),
    ],
    ids=["scheme", "credentials", "event", "no-events", "format", "unknown", "no-url"],
)
async def test_bad_endpoints_are_422_naming_the_field(
    api: Api, body: dict[str, object], field: str
) -> None:
    r = await api.call("PUT", "/webhooks/x", OLGA, json=body)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field


async def test_a_private_target_is_refused_without_the_setting(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, "memory", webhook_allow_private=False)
    services = await prepared(settings)
    try:
        transport = httpx.ASGITransport(app=create_app(settings, services))
        async with httpx.AsyncClient(transport=transport, base_url="http://handoff.test") as c:
            api = Api(c, settings)
            for url in ("http://127.0.0.1:8080/x", "http://localhost/x", "http://10.0.0.7/x"):
                r = await api.call(
                    "PUT", "/webhooks/x", OLGA, json={"url": url, "events": ["escalation.created"]}
                )
                assert (r.status_code, r.json()["field"]) == (422, "url"), r.text
                assert "private" in r.json()["detail"]
            assert (await api.call("GET", "/webhooks", OLGA)).json() == []
    finally:
        await services.close()


async def test_an_escalation_reaches_the_receiver_signed(api: Api, receiver: Receiver) -> None:
    created = await api.call(
        "PUT",
        "/webhooks/ops",
        OLGA,
        json={"url": receiver.url("ops"), "events": ["escalation.created"]},
    )
    secret = created.json()["secret"]
    _, handoff_id = await api.escalate(ERIN, summary="Printer on fire")

    async def arrived() -> bool:
        return bool(receiver.got("ops"))

    await eventually(arrived)
    [got] = receiver.got("ops")
    payload = Webhook(secret).verify(got.body, got.headers)
    assert payload["type"] == "escalation.created"
    assert payload["data"]["handoff_id"] == handoff_id
    assert payload["data"]["problem_summary"] == "Printer on fire"
    deliveries = await api.settled(OLGA, handoff_id)
    [hook] = [d for d in deliveries if d["channel"] == "webhook"]
    assert (hook["status"], hook["recipient_id"], hook["id"]) == (
        "sent",
        "ops",
        got.headers["webhook-id"],
    )


async def test_a_tiered_policy_is_set_shown_and_copied_into_escalations(api: Api) -> None:
    tiers = [
        {"roles": ["engineer"], "after_seconds": 0},
        {"roles": ["owner", "admin"], "after_seconds": 600},
    ]
    r = await api.call("PUT", "/escalation-policy", OLGA, json={"tiers": tiers})
    assert r.status_code == 200, r.text
    assert r.json()["roles"] == ["owner", "admin", "engineer"]
    assert r.json()["tiers"] == [
        {"roles": ["engineer"], "after_seconds": 0},
        {"roles": ["owner", "admin"], "after_seconds": 600},
    ]
    _, handoff_id = await api.escalate(ERIN)
    deliveries = await api.settled(OLGA, handoff_id)
    assert {d["recipient_id"] for d in deliveries} == {"eve"}  # the first tier only, for now
    handoff = (await api.call("GET", f"/handoffs/{handoff_id}", OLGA)).json()
    assert handoff["tiers_reached"] == 1
    assert handoff["policy"]["tiers"] == r.json()["tiers"]

    assert (await api.call("POST", f"/handoffs/{handoff_id}/claim", EVE)).status_code == 200
    stats = (await api.call("GET", "/analytics/escalations", OLGA)).json()
    assert stats["claims_by_tier"] == {"1": 1}


@pytest.mark.parametrize(
    ("tiers", "field"),
    [
        ([{"roles": ["engineer"], "after_seconds": 60}], "tiers[0]"),
        (
            [
                {"roles": ["engineer"], "after_seconds": 0},
                {"roles": ["admin"], "after_seconds": 0},
            ],
            "tiers[1]",
        ),
        ([{"roles": [], "after_seconds": 0}], "body.tiers.0.roles"),
        ([{"roles": ["viewer"], "after_seconds": 0}], "tiers[0]"),
        ([{"roles": ["admin"], "after_seconds": n * 10} for n in range(6)], "body.tiers"),
        ([], "body.tiers"),
    ],
    ids=["first-not-at-0", "not-ascending", "no-roles", "viewer", "six", "empty"],
)
async def test_bad_tiers_are_422_naming_the_field(
    api: Api, tiers: list[dict[str, object]], field: str
) -> None:
    r = await api.call("PUT", "/escalation-policy", OLGA, json={"tiers": tiers})
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field
