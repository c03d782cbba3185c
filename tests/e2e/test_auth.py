"""Who gets in: a valid, unexpired token of a current member of the account, and nobody else."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI
from jwt.utils import base64url_decode
from tests.e2e.conftest import make_settings
from tests.e2e.people import API, SECRET, bearer, seed
from tests.support.databases import fresh_database

from handoff_app.container import build_services
from handoff_app.http import create_app, mint_token, read_token
from handoff_app.settings import Settings, SettingsError
from handoff_sql import upgrade


def _raw(claims: dict[str, object], secret: str = SECRET, alg: str = "HS256") -> dict[str, str]:
    return {"Authorization": f"Bearer {jwt.encode(claims, secret, algorithm=alg)}"}


def _later() -> datetime:
    return datetime.now(UTC) + timedelta(minutes=5)


async def test_probes_answer_without_a_token(client: httpx.AsyncClient) -> None:
    health = await client.get("/healthz")
    ready = await client.get("/readyz")
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    assert (ready.status_code, ready.json()) == (200, {"status": "ok"})


async def test_a_valid_token_lets_a_member_in(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    r = await client.get(f"{API}/members", headers=bearer(settings, "acme", "vic"))
    assert r.status_code == 200
    assert "vic" in {m["id"] for m in r.json()}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Basic b2xnYTpwYXNz"},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer not.a.jwt"},
        _raw({"sub": "olga", "account_id": "acme", "exp": _later()}, secret="another-secret-" * 3),
        _raw({"sub": "olga", "account_id": "acme"}),
        _raw({"account_id": "acme", "exp": _later()}),
        _raw({"sub": "olga", "exp": _later()}),
        _raw({"sub": "olga", "account_id": 7, "exp": _later()}),
        _raw({"sub": "ol\x00ga", "account_id": "acme", "exp": _later()}),
        _raw({"sub": "olga", "account_id": "acme", "exp": _later()}, alg="HS512"),
    ],
    ids=[
        "no-token",
        "basic-auth",
        "empty-bearer",
        "garbage",
        "wrong-secret",
        "no-exp",
        "no-sub",
        "no-account",
        "account-not-text",
        "sub-not-an-id",
        "other-algorithm",
    ],
)
async def test_no_or_bad_token_is_401(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    r = await client.get(f"{API}/members", headers=headers)
    assert r.status_code == 401
    body = r.json()
    assert body["error"] == "unauthorized" and body["detail"]
    assert r.headers["www-authenticate"] == "Bearer"


async def test_an_expired_token_is_401(client: httpx.AsyncClient, settings: Settings) -> None:
    r = await client.get(f"{API}/members", headers=bearer(settings, "acme", "olga", ttl=-30))
    assert r.status_code == 401
    assert "expired" in r.json()["detail"]


@pytest.mark.parametrize(
    ("account_id", "member_id"),
    [("acme", "dora"), ("acme", "ivan"), ("acme", "nobody"), ("acme", "gus"), ("nowhere", "olga")],
    ids=["deleted", "inactive", "unknown", "other-account's-member", "unknown-account"],
)
async def test_a_member_not_current_in_the_account_is_401(
    client: httpx.AsyncClient, settings: Settings, account_id: str, member_id: str
) -> None:
    r = await client.get(f"{API}/members", headers=bearer(settings, account_id, member_id))
    assert r.status_code == 401
    assert r.json()["error"] == "unauthorized"


async def test_a_query_token_only_opens_the_stream(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    token = mint_token(settings, "acme", "olga")
    r = await client.get(f"{API}/members", params={"access_token": token})
    assert r.status_code == 401


async def test_a_removed_members_token_stops_working(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    eve = bearer(settings, "acme", "eve")
    assert (await client.get(f"{API}/members", headers=eve)).status_code == 200
    removed = await client.delete(f"{API}/members/eve", headers=bearer(settings, "acme", "adam"))
    assert removed.status_code == 204
    assert (await client.get(f"{API}/members", headers=eve)).status_code == 401


def test_minted_tokens_read_back(settings: Settings) -> None:
    token = mint_token(settings, "acme", "erin", ttl=60)
    assert read_token(settings, token) == ("acme", "erin")
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert claims["exp"] - claims["iat"] == 60


def test_the_api_refuses_to_start_without_a_secret(tmp_path: object) -> None:
    with pytest.raises(SettingsError, match="HANDOFF_JWT_SECRET"):
        create_app(Settings(database_url="memory://", jwt_secret=None))


def _operations(app: FastAPI) -> list[tuple[str, str, bool]]:
    """(method, concrete path, takes a body) of every route that wants a token."""
    found = []
    for path, item in app.openapi()["paths"].items():
        if not path.startswith(API):
            continue
        for method, operation in item.items():
            found.append((method, re.sub(r"\{[^}]+\}", "x", path), "requestBody" in operation))
    return found


@pytest.mark.parametrize(
    "member_id", ["dora", "ivan", "nobody", "gus"], ids=["deleted", "inactive", "unknown", "other"]
)
async def test_every_route_refuses_a_member_not_current_with_401(
    client: httpx.AsyncClient, app: FastAPI, settings: Settings, member_id: str
) -> None:
    """Each route's use case checks the member, and an invalid request never reaches one: a
    valid token of someone not current is 401 either way, never 404, 422 or 403."""
    headers = bearer(settings, "acme", member_id)
    operations = _operations(app)
    assert len(operations) >= 17
    for method, path, takes_body in operations:
        bodies: list[object] = (
            [{}, {"problem_summary": "fine", "intent": "park"}] if takes_body else [None]
        )
        for body in bodies:
            r = await client.request(method, path, headers=headers, json=body)
            assert r.status_code == 401, f"{method.upper()} {path} {body}: {r.status_code}"
            assert r.json()["error"] == "unauthorized"
            assert r.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("GET", "/analytics/escalations", {"params": {"since": "yesterday"}}),
        ("GET", "/escalations", {"params": {"status": "lost"}}),
        ("GET", "/handoffs/not an id", {}),
        (
            "POST",
            "/ai-sessions",
            {"content": b"{not json", "headers": {"content-type": "application/json"}},
        ),
        ("POST", "/ai-sessions/x/handoff", {"json": {"intent": "abandon"}}),
    ],
    ids=["bad-query", "bad-filter", "bad-path", "bad-json", "bad-intent"],
)
async def test_an_invalid_request_is_422_for_a_member_and_401_for_a_former_one(
    client: httpx.AsyncClient, settings: Settings, method: str, path: str, kwargs: dict[str, Any]
) -> None:
    extra = dict(kwargs.pop("headers", {}))
    member = await client.request(
        method, f"{API}{path}", headers={**extra, **bearer(settings, "acme", "olga")}, **kwargs
    )
    assert member.status_code == 422, member.text
    former = await client.request(
        method, f"{API}{path}", headers={**extra, **bearer(settings, "acme", "dora")}, **kwargs
    )
    assert (former.status_code, former.json()["error"]) == (401, "unauthorized")


async def test_a_member_removed_after_their_token_was_made_cannot_claim(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    erin, eve, adam = (bearer(settings, "acme", m) for m in ("erin", "eve", "adam"))
    started = await client.post(f"{API}/ai-sessions", headers=erin, json={"problem_summary": "x"})
    escalated = await client.post(
        f"{API}/ai-sessions/{started.json()['id']}/handoff",
        headers=erin,
        json={"intent": "escalate"},
    )
    handoff = f"{API}/handoffs/{escalated.json()['id']}"
    assert (await client.delete(f"{API}/members/eve", headers=adam)).status_code == 204

    refused = await client.post(f"{handoff}/claim", headers=eve)

    assert (refused.status_code, refused.json()["error"]) == (401, "unauthorized")
    assert (await client.get(handoff, headers=adam)).json()["status"] == "open"
    assert (await client.post(f"{handoff}/claim", headers=adam)).json()["claimed_by"] == "adam"


# A lone surrogate is what a JSON escape such as "\ud800" decodes to: no store can look it up
# (asyncpg and aiosqlite both refuse to encode it), so it is as bad a claim as a NUL.
SURROGATE_CLAIMS = [
    {"sub": "\ud800", "account_id": "acme"},
    {"sub": "olga", "account_id": "\udcff"},
    {"sub": "ol\udfffga", "account_id": "acme"},
]
SURROGATE_IDS = ["sub", "account_id", "sub-inside"]


def _surrogate_token(claims: dict[str, str]) -> str:
    token = jwt.encode({**claims, "exp": _later()}, SECRET, algorithm="HS256")
    assert b"\\ud" in base64url_decode(token.split(".")[1])  # a JSON escape, as a client sends
    return token


def _assert_bad_claims(r: httpx.Response) -> None:
    assert r.status_code == 401, r.text
    assert r.json() == {
        "error": "unauthorized",
        "detail": "the token's account_id and sub must be account and member ids",
    }
    assert r.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("claims", SURROGATE_CLAIMS, ids=SURROGATE_IDS)
async def test_a_signed_token_with_a_lone_surrogate_id_is_401(
    client: httpx.AsyncClient, claims: dict[str, str]
) -> None:
    headers = {"Authorization": f"Bearer {_surrogate_token(claims)}"}
    _assert_bad_claims(await client.get(f"{API}/escalations", headers=headers))
    _assert_bad_claims(await client.get(f"{API}/members", headers=headers))


@pytest.mark.parametrize("claims", SURROGATE_CLAIMS, ids=SURROGATE_IDS)
async def test_a_stream_query_token_with_a_lone_surrogate_id_is_401_and_keeps_the_connection(
    base_url: str, settings: Settings, claims: dict[str, str]
) -> None:
    """Over a real socket: the 401 is an answer, so the keep-alive connection goes on serving."""
    async with httpx.AsyncClient(base_url=base_url) as client:
        refused = await client.get(
            f"{API}/escalations/stream", params={"access_token": _surrogate_token(claims)}
        )
        _assert_bad_claims(refused)
        headers = {"Authorization": f"Bearer {_surrogate_token(claims)}"}
        _assert_bad_claims(await client.get(f"{API}/escalations", headers=headers))
        after = await client.get(f"{API}/members", headers=bearer(settings, "acme", "olga"))
    assert after.status_code == 200


async def test_on_postgresql_a_lone_surrogate_id_is_401(tmp_path: Path) -> None:
    async with fresh_database("handoff_e2e_auth") as url:
        await upgrade(url)
        settings = make_settings(tmp_path, database_url=url, push="pg")
        services = await build_services(settings)
        try:
            await seed(services)
            transport = httpx.ASGITransport(app=create_app(settings, services))
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                for claims in SURROGATE_CLAIMS:
                    token = _surrogate_token(claims)
                    headers = {"Authorization": f"Bearer {token}"}
                    _assert_bad_claims(await client.get(f"{API}/escalations", headers=headers))
                    stream = await client.get(
                        f"{API}/escalations/stream", params={"access_token": token}
                    )
                    _assert_bad_claims(stream)
                good = await client.get(f"{API}/members", headers=bearer(settings, "acme", "olga"))
        finally:
            await services.close()
    assert good.status_code == 200
