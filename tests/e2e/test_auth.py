"""Who gets in: a valid, unexpired token of a current member of the account, and nobody else."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import jwt
import pytest
from tests.e2e.people import API, SECRET, bearer

from handoff_app.http import create_app, mint_token, read_token
from handoff_app.settings import Settings, SettingsError


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
