"""Every refusal is JSON of one shape, with the right status, and changes nothing."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from tests.e2e.conftest import make_settings, prepared
from tests.e2e.people import API, Api, bearer
from tests.e2e.servers import serving

from handoff_app.http import create_app
from handoff_app.settings import Settings

ERIN = ("acme", "erin")


def _is_error(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["error"] == code
    assert isinstance(body["detail"], str) and body["detail"]


async def test_unknown_routes_are_404_in_the_same_shape(api: Api) -> None:
    _is_error(await api.call("GET", "/nothing-here", ERIN), 404, "not_found")
    _is_error(await api.client.get("/nowhere"), 404, "not_found")


async def test_a_wrong_method_is_405_in_the_same_shape(api: Api) -> None:
    r = await api.call("DELETE", "/escalations", ERIN)
    _is_error(r, 405, "method_not_allowed")
    assert "GET" in r.headers["allow"]


async def test_a_declared_big_body_is_413(api: Api, settings: Settings) -> None:
    big = b'{"problem_summary": "' + b"x" * settings.body_limit_bytes + b'"}'
    r = await api.call(
        "POST", "/ai-sessions", ERIN, content=big, headers={"content-type": "application/json"}
    )
    _is_error(r, 413, "payload_too_large")


async def test_a_streamed_big_body_is_413(api: Api, settings: Settings) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"problem_summary": "'
        for _ in range(settings.body_limit_bytes // 1024 + 2):
            yield b"x" * 1024
        yield b'"}'

    r = await api.call(
        "POST", "/ai-sessions", ERIN, content=chunks(), headers={"content-type": "application/json"}
    )
    assert "content-length" not in r.request.headers
    _is_error(r, 413, "payload_too_large")


async def test_a_big_body_over_a_real_socket_is_413(app: FastAPI, settings: Settings) -> None:
    async with serving(app) as base, httpx.AsyncClient(base_url=base) as client:
        r = await client.put(
            f"{API}/escalation-policy",
            content=b" " * (settings.body_limit_bytes + 1),
            headers={**bearer(settings, "acme", "olga"), "content-type": "application/json"},
        )
    _is_error(r, 413, "payload_too_large")


@pytest.mark.parametrize(
    "raw",
    [b'{"problem_summary": ', b"{'single': 'quotes'}", b"[" * 20_000 + b"]" * 20_000, b"\xff\xfe"],
    ids=["truncated", "not-json", "too-deep", "not-utf8"],
)
async def test_malformed_json_is_422(api: Api, raw: bytes) -> None:
    r = await api.call(
        "POST", "/ai-sessions", ERIN, content=raw, headers={"content-type": "application/json"}
    )
    _is_error(r, 422, "invalid_json")


async def test_a_body_that_is_not_json_is_422(api: Api) -> None:
    r = await api.call(
        "POST", "/ai-sessions", ERIN, content=b"problem", headers={"content-type": "text/plain"}
    )
    _is_error(r, 422, "validation_error")
    assert r.json()["field"].startswith("body")


async def test_a_missing_body_is_422_naming_it(api: Api) -> None:
    r = await api.call("POST", "/ai-sessions", ERIN)
    _is_error(r, 422, "validation_error")
    assert r.json()["field"] == "body"


async def test_a_real_bug_is_a_500_in_the_same_shape(settings: Settings) -> None:
    """Only a defect gets here; the suite shows no input does (test_schema.py)."""
    app = create_app(settings)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("a defect")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        r = await client.get("/boom")
    _is_error(r, 500, "internal_error")
    assert "defect" not in r.text


async def test_readyz_is_503_and_calls_are_503_when_the_database_is_gone(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, "sqlite")
    services = await prepared(settings)
    app = create_app(settings, services)
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert (await client.get("/readyz")).status_code == 200
            shutil.rmtree(tmp_path / "db")
            await services.uow.close()  # type: ignore[attr-defined]
            ready = await client.get("/readyz")
            assert (ready.status_code, ready.json()) == (503, {"status": "unavailable"})
            assert (await client.get("/healthz")).status_code == 200
            call = await client.get(f"{API}/members", headers=bearer(settings, "acme", "erin"))
            _is_error(call, 503, "storage_unavailable")
            assert "sqlite" not in call.text and str(tmp_path) not in call.text  # the log has it
    finally:
        await services.close()
