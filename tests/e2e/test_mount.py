"""The API inside a host application, and on its own with its own lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from fastapi import FastAPI
from tests.e2e.conftest import make_settings, prepared
from tests.e2e.people import API, Api, bearer, recipients, seed
from tests.e2e.servers import serving

from handoff_app.http import create_app, handoff_lifespan
from handoff_app.http.lifecycle import slot_of
from handoff_app.settings import Settings


def _host(api: FastAPI, *, compose: bool) -> FastAPI:
    @asynccontextmanager
    async def lifespan(host: FastAPI) -> AsyncIterator[None]:
        async with handoff_lifespan(api) as services:
            await seed(services)
            yield

    host = FastAPI(lifespan=lifespan if compose else None)

    @host.get("/host-page")
    async def page() -> dict[str, str]:
        return {"host": "yes"}

    host.mount("/handoff", api)
    return host


async def test_a_host_mounts_the_api_under_a_prefix(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, "memory")
    api = create_app(settings)
    host = _host(api, compose=True)
    async with (
        serving(host) as base,
        httpx.AsyncClient(base_url=base) as outside,
        httpx.AsyncClient(base_url=f"{base}/handoff") as client,
    ):
        assert (await outside.get("/host-page")).json() == {"host": "yes"}
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        assert (await client.get("/readyz")).status_code == 200
        calls = Api(client, settings)
        _, handoff_id = await calls.escalate(("solo", "sam"))
        deliveries = await calls.settled(("solo", "sam"), handoff_id)
        assert [d["recipient_id"] for d in deliveries] == ["tia"]
        missing = await client.get(f"{API}/nothing", headers=calls.auth("solo", "sam"))
        assert (missing.status_code, missing.json()["error"]) == (404, "not_found")
        schema = await client.get("/openapi.json")
        assert f"{API}/ai-sessions/{{session_id}}/handoff" in schema.json()["paths"]
        docs = await client.get("/docs")
        assert docs.status_code == 200 and "/handoff/openapi.json" in docs.text
    assert recipients(settings.maildir) == ["tia@solo.test"]
    assert not slot_of(api).built  # the host's lifespan closed what the API built


async def test_a_mounted_api_builds_its_services_on_first_use(tmp_path: Path) -> None:
    """Starlette never runs a mounted app's lifespan; the first request opens the services."""
    settings = make_settings(tmp_path, "sqlite")
    await (await prepared(settings)).close()  # a database with the teams in it
    api = create_app(settings)
    host = _host(api, compose=False)
    transport = httpx.ASGITransport(app=host)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://host") as client:
            r = await client.get(f"/handoff{API}/members", headers=bearer(settings, "acme", "olga"))
            assert r.status_code == 200
            assert "erin" in {m["id"] for m in r.json()}
            assert slot_of(api).built
    finally:
        await slot_of(api).close()
    assert not slot_of(api).built


async def test_the_api_alone_opens_and_closes_its_services_with_its_lifespan(
    tmp_path: Path,
) -> None:
    settings: Settings = make_settings(tmp_path, "sqlite")
    await (await prepared(settings)).close()
    api = create_app(settings)
    async with serving(api) as base, httpx.AsyncClient(base_url=base) as client:
        assert slot_of(api).built
        r = await client.get(f"{API}/members", headers=bearer(settings, "globex", "gus"))
        assert {m["id"] for m in r.json()} == {"gus", "gwen", "gail"}
    assert not slot_of(api).built


async def test_services_that_cannot_open_make_the_api_unready_not_broken(tmp_path: Path) -> None:
    """A lazily built API whose services cannot be built answers 503 in the usual shape."""
    settings = make_settings(tmp_path, "memory", mail_from="not-an-address")
    api = create_app(settings)
    transport = httpx.ASGITransport(app=api)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        ready = await client.get("/readyz")
        assert (ready.status_code, ready.json()) == (503, {"status": "unavailable"})
        call = await client.get(f"{API}/members", headers=bearer(settings, "acme", "olga"))
        assert (call.status_code, call.json()["error"]) == (503, "storage_unavailable")
        assert "not-an-address" not in call.text
        assert (await client.get("/healthz")).status_code == 200
    assert not slot_of(api).built
