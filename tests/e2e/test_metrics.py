"""`/metrics` (SPEC §13) against a real server on each store: the figures are what the test did."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.e2e.conftest import make_settings, prepared
from tests.e2e.people import Api, address
from tests.e2e.servers import open_stream, serving
from tests.support.cli import add_member, handoff
from tests.support.databases import fresh_database
from tests.support.process import serving_process

from handoff_app.http import create_app, mint_token
from handoff_app.settings import Settings
from handoff_sql import upgrade

ERIN = ("acme", "erin")
ADAM = ("acme", "adam")
EVE = ("acme", "eve")
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    """Every sample of a Prometheus text page, by name and labels."""
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, frozenset(s.labels.items()))] = s.value
    return found


def value(found: Samples, name: str, **labels: str) -> float:
    return found[(name, frozenset(labels.items()))]


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def site(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[str, Api]]:
    """A real server over the seeded teams on one store: (base URL, API client)."""
    async with _store_url(request.param, tmp_path) as url:
        settings = make_settings(tmp_path, "memory", database_url=url)
        services = await prepared(settings)
        try:
            async with (
                serving(create_app(settings, services)) as base,
                httpx.AsyncClient(base_url=base) as client,
            ):
                yield base, Api(client, settings)
        finally:
            await services.close()


@asynccontextmanager
async def _store_url(store: str, tmp_path: Path) -> AsyncIterator[str]:
    if store == "memory":
        yield "memory://"
    elif store == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'db' / 'h.db'}"
    else:
        async with fresh_database("handoff_metrics") as pg:
            await upgrade(pg)
            yield pg


async def scrape(api: Api) -> Samples:
    r = await api.client.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    return samples(r.text)


async def test_the_figures_are_what_the_test_did(site: tuple[str, Api]) -> None:
    base, api = site
    before = await scrape(api)
    assert value(before, "handoff_escalations_total") == 0
    assert value(before, "handoff_streams_open") == 0
    async with open_stream(base, mint_token(api.settings, *EVE)):
        _, first = await api.escalate(ERIN, summary="one")
        _, second = await api.escalate(ERIN, summary="two")
        delivered = await api.settled(ERIN, first) + await api.settled(ERIN, second)
        claimed = await api.call("POST", f"/handoffs/{first}/claim", ADAM)
        assert claimed.status_code == 200, claimed.text
        during = await scrape(api)
    assert value(during, "handoff_escalations_total") == 2
    by_kind = Counter((d["channel"], d["status"]) for d in delivered)
    assert by_kind[("push", "sent")] == 2  # eve, online, twice
    assert by_kind[("email", "sent")] == 4  # olga and adam, twice
    for (channel, status), count in by_kind.items():
        assert value(during, "handoff_deliveries_total", channel=channel, status=status) == count
    reported = {
        (dict(labels)["channel"], dict(labels)["status"]): v
        for (name, labels), v in during.items()
        if name == "handoff_deliveries_total"
    }
    assert reported == by_kind
    assert value(during, "handoff_outbox_pending") == 0
    assert value(during, "handoff_outbox_oldest_pending_seconds") == 0
    assert value(during, "handoff_time_to_claim_seconds_count") == 1
    assert value(during, "handoff_time_to_claim_seconds_bucket", le="+Inf") == 1
    assert value(during, "handoff_time_to_claim_seconds_bucket", le="86400.0") == 1
    assert 0 <= value(during, "handoff_time_to_claim_seconds_sum") < 60
    assert value(during, "handoff_streams_open") == 1
    claim_route = "/api/v1/handoffs/{handoff_id}/claim"
    assert (
        value(
            during,
            "handoff_http_request_duration_seconds_count",
            route=claim_route,
            method="POST",
            status="200",
        )
        == 1
    )
    routes = {dict(labels).get("route") for (name, labels) in during if "http_request" in name}
    assert not any(first in str(route) or second in str(route) for route in routes)


async def test_the_oldest_pending_notice_is_reported_by_age(
    tmp_path: Path,
) -> None:
    """An SMTP server that is down keeps the escalation's emails pending in the outbox."""
    settings = make_settings(
        tmp_path, "sqlite", smtp_url="smtp://127.0.0.1:9?timeout=1", retry_base_seconds=3600
    )
    services = await prepared(settings)
    try:
        async with (
            serving(create_app(settings, services)) as base,
            httpx.AsyncClient(base_url=base) as client,
        ):
            api = Api(client, settings)
            _, handoff_id = await api.escalate(ERIN)
            await asyncio.sleep(1.5)
            found = await scrape(api)
            listed = (await api.call("GET", f"/handoffs/{handoff_id}/deliveries", ERIN)).json()
    finally:
        await services.close()
    pending = [d for d in listed if d["status"] == "pending"]
    assert pending, listed
    assert value(found, "handoff_outbox_pending") == len(pending)
    assert value(found, "handoff_outbox_oldest_pending_seconds") >= 1


async def test_metrics_off_means_404(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, "memory", metrics=False)
    async with serving(create_app(settings)) as base, httpx.AsyncClient(base_url=base) as client:
        r = await client.get("/metrics")
        healthy = await client.get("/healthz")
    assert (r.status_code, healthy.status_code) == (404, 200)


@pytest.mark.postgres
async def test_every_process_of_serve_workers_answers_the_same_store_figures(
    tmp_path: Path,
) -> None:
    async with fresh_database("handoff_metrics_workers") as url:
        env = {
            "HANDOFF_DATABASE_URL": url,
            "HANDOFF_JWT_SECRET": "metrics-secret-of-at-least-32-bytes!!",
            "HANDOFF_MAILDIR": str(tmp_path / "mail"),
        }
        assert handoff("db", "upgrade", cwd=tmp_path, env=env).returncode == 0
        for member, role in (("erin", "engineer"), ("adam", "admin")):
            add_member("acme", member, email=address("acme", member), name=member,
                       role=role, cwd=tmp_path, env=env)  # fmt: skip
        settings = Settings(jwt_secret=env["HANDOFF_JWT_SECRET"])
        with serving_process(env, tmp_path, "--workers", "2") as served:
            async with httpx.AsyncClient(base_url=served.url) as client:
                api = Api(client, settings)
                for _ in range(2):
                    _, handoff_id = await api.escalate(ERIN)
                    await api.settled(ERIN, handoff_id)
                pages = [await scrape(api) for _ in range(8)]
        # Request durations and the worker's heartbeat are each process's own; the rest is the
        # store's, read at scrape time, and must be the same from every process.
        own = ("http_request", "worker_last_pass")
        store = [
            {k: v for k, v in page.items() if not any(o in k[0] for o in own)} for page in pages
        ]
        assert all(page == store[0] for page in store)
        assert value(store[0], "handoff_escalations_total") == 2
        assert value(store[0], "handoff_deliveries_total", channel="email", status="sent") == 2


@pytest.mark.parametrize("worker", [True, False])
def test_the_worker_heartbeat_is_reported_only_where_a_worker_runs(
    tmp_path: Path, worker: bool
) -> None:
    env = {
        "HANDOFF_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'h.db'}",
        "HANDOFF_JWT_SECRET": "metrics-secret-of-at-least-32-bytes!!",
        "HANDOFF_MAILDIR": str(tmp_path / "mail"),
        "HANDOFF_WORKER_POLL_SECONDS": "0.1",
    }
    flags = [] if worker else ["--no-worker"]
    with serving_process(env, tmp_path, *flags) as served:
        deadline = time.monotonic() + 10
        while True:
            page = samples(httpx.get(f"{served.url}/metrics").text)
            beats = [v for (name, _), v in page.items() if name.startswith("handoff_worker_")]
            if beats or not worker or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    if worker:
        assert beats and abs(time.time() - beats[0]) < 30, page
    else:
        assert beats == [], page
