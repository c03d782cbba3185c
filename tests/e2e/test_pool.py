"""On PostgreSQL a request holds one pooled connection at a time, so a small pool never makes an
escalation wait on itself: with a pool of one, presence is still asked and answered, and an online
senior is reached by push (a second connection taken inside the unit of work would time out, and
everyone would be emailed instead)."""

from __future__ import annotations

from pathlib import Path

import httpx
from tests.e2e.conftest import make_settings
from tests.e2e.people import Api, seed
from tests.support.databases import fresh_database

from handoff_app.container import build_services
from handoff_app.http import create_app
from handoff_sql import upgrade

ERIN = ("acme", "erin")
POOL_OF_ONE = "?pool_size=1&max_overflow=0&pool_timeout=3"


async def test_with_a_pool_of_one_an_online_senior_is_still_reached_by_push(
    tmp_path: Path,
) -> None:
    async with fresh_database("handoff_e2e_pool") as url:
        await upgrade(url)
        settings = make_settings(tmp_path, database_url=url + POOL_OF_ONE, push="pg")
        services = await build_services(settings)
        try:
            await seed(services)
            await services.presence.enter("acme", "eve", ttl_seconds=60)
            transport = httpx.ASGITransport(app=create_app(settings, services))
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                api = Api(client, settings)
                _, handoff_id = await api.escalate(ERIN)
                r = await api.call("GET", f"/handoffs/{handoff_id}/deliveries", ERIN)
        finally:
            await services.close()
    assert r.status_code == 200, r.text
    channels = {d["recipient_id"]: d["channel"] for d in r.json() if d["kind"] == "escalation"}
    assert channels["eve"] == "push"
    assert channels["adam"] == "email"
    assert "erin" not in channels
