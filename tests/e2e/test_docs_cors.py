"""SPEC §13: the docs work offline, operation ids read well, and CORS for a separate front end."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from tests.e2e.conftest import make_settings, prepared
from tests.e2e.people import API, bearer
from tests.e2e.servers import serving

from handoff_app.http import create_app

FRONT = "https://desk.example.com"


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_the_docs_name_no_other_host_and_every_asset_they_name_is_served(
    client: httpx.AsyncClient, page: str
) -> None:
    r = await client.get(page)
    assert r.status_code == 200
    hosts = set(re.findall(r"(?:https?:)?//([\w.-]+)", r.text))
    assert hosts == set(), hosts
    assets = re.findall(r'(?:src|href)="([^"]+)"', r.text)
    assets += re.findall(r"url: '([^']+)'", r.text)  # Swagger UI's openapi.json
    assert any(a.endswith(".js") for a in assets), assets
    for asset in assets:
        got = await client.get(asset)
        assert got.status_code == 200, asset
        assert len(got.content) > 100, asset


async def test_operation_ids_are_short_camel_case_and_the_stream_names_its_events(
    client: httpx.AsyncClient,
) -> None:
    doc = (await client.get("/openapi.json")).json()
    ids = [op["operationId"] for ops in doc["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[a-z][A-Za-z]+", i) for i in ids), ids
    assert doc["paths"][f"{API}/handoffs/{{handoff_id}}/claim"]["post"]["operationId"] == (
        "claimHandoff"
    )
    ok = doc["paths"][f"{API}/escalations/stream"]["get"]["responses"]["200"]
    events = {e["event"] for e in ok["x-sse-events"]}
    assert events >= {
        "stream.ready",
        "stream.reset",
        "escalation.created",
        "escalation.claimed",
        "escalation.withdrawn",
        "escalation.reminded",
    }
    assert "escalation.claimed" in ok["description"]
    assert "handoff_id" in doc["components"]["schemas"]["StreamEventData"]["properties"]


@pytest.fixture
async def cors_app(tmp_path: Path) -> AsyncIterator[FastAPI]:
    settings = make_settings(tmp_path, cors_origins=(FRONT,))
    services = await prepared(settings)
    try:
        yield create_app(settings, services)
    finally:
        await services.close()


async def test_an_allowed_origin_gets_preflight_and_answers_and_another_gets_no_allow_header(
    cors_app: FastAPI,
) -> None:
    transport = httpx.ASGITransport(app=cors_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://handoff.test") as c:
        ask = {
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        }
        pre = await c.options(f"{API}/handoffs/h1/claim", headers={"Origin": FRONT, **ask})
        assert pre.status_code == 200
        assert pre.headers["access-control-allow-origin"] == FRONT
        assert "POST" in pre.headers["access-control-allow-methods"]
        assert "authorization" in pre.headers["access-control-allow-headers"].lower()

        other = await c.options(
            f"{API}/handoffs/h1/claim", headers={"Origin": "https://evil.test", **ask}
        )
        assert "access-control-allow-origin" not in other.headers

        settings = cors_app.state.handoff.settings
        who = bearer(settings, "acme", "olga")
        ok = await c.get(f"{API}/members", headers={"Origin": FRONT, **who})
        assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == FRONT
        no = await c.get(f"{API}/members", headers={"Origin": "https://evil.test", **who})
        assert "access-control-allow-origin" not in no.headers


async def test_the_stream_answers_an_allowed_origin_with_the_allow_header(
    cors_app: FastAPI,
) -> None:
    settings = cors_app.state.handoff.settings
    async with serving(cors_app) as base, httpx.AsyncClient(base_url=base, timeout=10) as c:
        for origin, allowed in ((FRONT, True), ("https://evil.test", False)):
            headers = {"Origin": origin, "Accept": "text/event-stream"}
            params = {"access_token": bearer(settings, "acme", "olga")["Authorization"][7:]}
            url = f"{API}/escalations/stream"
            async with c.stream("GET", url, headers=headers, params=params) as r:
                assert r.status_code == 200
                assert ("access-control-allow-origin" in r.headers) is allowed


async def test_without_the_setting_no_origin_is_allowed(client: httpx.AsyncClient) -> None:
    r = await client.get("/healthz", headers={"Origin": FRONT})
    assert "access-control-allow-origin" not in r.headers
