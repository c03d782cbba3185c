"""The inbox page over HTTP (SPEC §12): one-time sign-in, the cookie, CSRF and Origin checks."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import httpx
from fastapi import FastAPI
from tests.e2e.conftest import make_settings, prepared
from tests.e2e.people import API, Api

from handoff_app.container import Services
from handoff_app.http import create_app
from handoff_core.services.signin import SignInService

ERIN = ("acme", "erin")
OLGA = ("acme", "olga")
XSS = "<img src=x onerror=alert(1)>"
SAME = {"Origin": "http://handoff.test"}


async def sign_in(client: httpx.AsyncClient, services: Services, who: tuple[str, str]) -> str:
    """Open a fresh sign-in link; the CSRF token of the inbox it leads to."""
    code = await SignInService(services.uow, services.clock).issue(*who, timedelta(minutes=5))
    opened = await client.post(f"/login/{code}", headers=SAME)
    assert opened.status_code == 200, opened.text
    inbox = await client.get("/")
    assert inbox.status_code == 200, inbox.text
    boot = re.search(r'<script type="application/json" id="boot">(.*?)</script>', inbox.text)
    assert boot is not None
    return str(json.loads(boot.group(1))["csrf"])


async def test_a_sign_in_link_sets_a_strict_http_only_cookie_and_works_once(
    client: httpx.AsyncClient, services: Services
) -> None:
    code = await SignInService(services.uow, services.clock).issue(*OLGA, timedelta(minutes=5))
    for _ in range(3):  # a mail scanner or a chat preview opening the link spends nothing
        shown = await client.get(f"/login/{code}")
        assert shown.status_code == 200 and "set-cookie" not in shown.headers
        assert f'action="/login/{code}"' in shown.text
    elsewhere = await client.post(f"/login/{code}", headers={"Origin": "https://evil.test"})
    assert elsewhere.status_code == 403 and "set-cookie" not in elsewhere.headers
    first = await client.post(f"/login/{code}", headers=SAME)
    assert first.status_code == 200
    cookie = first.headers["set-cookie"].lower()
    assert "handoff_session=" in cookie and "httponly" in cookie and "samesite=strict" in cookie
    assert 'http-equiv="refresh"' in first.text and "Signed in as Olga" in first.text
    client.cookies.clear()
    again = await client.post(f"/login/{code}", headers=SAME)
    assert again.status_code == 410 and "set-cookie" not in again.headers
    assert (await client.get("/")).status_code == 401


async def test_an_unknown_link_or_a_removed_member_signs_nobody_in(
    client: httpx.AsyncClient, services: Services
) -> None:
    for code in ("nope", "x" * 150, "%00%ff"):
        r = await client.post(f"/login/{code}", headers=SAME)
        assert r.status_code in (410, 422) and "set-cookie" not in r.headers
    signin = SignInService(services.uow, services.clock)
    code = await signin.issue("acme", "adam", timedelta(minutes=5))
    await services.members.remove("acme", "adam")
    r = await client.post(f"/login/{code}", headers=SAME)
    assert r.status_code == 403 and "set-cookie" not in r.headers


async def test_the_inbox_lists_the_open_queue_oldest_first_with_user_text_as_text(
    api: Api, client: httpx.AsyncClient, services: Services
) -> None:
    await api.escalate(ERIN, summary="First in", notes="old")
    await api.escalate(ERIN, summary=XSS, notes=f"notes {XSS}")
    await sign_in(client, services, OLGA)
    page = await client.get("/inbox")
    assert page.status_code == 200
    assert page.text.index("First in") < page.text.index("&lt;img src=x onerror=alert(1)&gt;")
    assert "<img" not in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'none'; script-src")
    assert "https://" not in page.text and "http://" not in page.text  # nothing from elsewhere


async def test_a_viewer_is_told_the_inbox_is_for_seniors(
    client: httpx.AsyncClient, services: Services
) -> None:
    code = await SignInService(services.uow, services.clock).issue(
        "acme", "vic", timedelta(minutes=5)
    )
    await client.post(f"/login/{code}", headers=SAME)
    page = await client.get("/")
    assert page.status_code == 403 and "for seniors" in page.text


async def test_the_cookie_claims_through_the_api_only_with_the_pages_token_from_its_origin(
    api: Api, client: httpx.AsyncClient, services: Services
) -> None:
    _, handoff_id = await api.escalate(ERIN)
    csrf = await sign_in(client, services, OLGA)
    claim = f"{API}/handoffs/{handoff_id}/claim"

    assert (await client.get(f"{API}/escalations?status=open")).status_code == 200
    missing = await client.post(claim, headers=SAME)
    assert missing.status_code == 403 and missing.json()["error"] == "csrf_failed"
    wrong = await client.post(claim, headers={**SAME, "X-CSRF-Token": "0" * 64})
    assert wrong.status_code == 403
    for odd in ("é".encode(), b"\xff", b"\xc3\xa9" * 40):  # not ASCII: never a 500
        refused = await client.post(claim, headers={**SAME, "X-CSRF-Token": odd})
        assert refused.status_code == 403 and refused.json()["error"] == "csrf_failed"
    evil = await client.post(claim, headers={"Origin": "https://evil.test", "X-CSRF-Token": csrf})
    assert evil.status_code == 403 and evil.json()["error"] == "cross_site"
    r = await api.call("GET", f"/handoffs/{handoff_id}", OLGA)
    assert r.json()["status"] == "open"

    done = await client.post(claim, headers={**SAME, "X-CSRF-Token": csrf})
    assert done.status_code == 200 and done.json()["claimed_by"] == "olga"


async def test_signing_out_clears_the_cookie(client: httpx.AsyncClient, services: Services) -> None:
    await sign_in(client, services, OLGA)
    refused = await client.post("/logout", headers={"Origin": "https://evil.test"})
    assert refused.status_code == 403
    out = await client.post("/logout", headers=SAME)
    assert out.status_code == 200
    assert (await client.get("/")).status_code == 401


async def test_mounted_under_a_prefix_the_pages_their_assets_and_cookie_stay_under_it(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path, "memory")
    services = await prepared(settings)
    host = FastAPI()
    host.mount("/handoff", create_app(settings, services))
    transport = httpx.ASGITransport(app=host)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://handoff.test") as c:
            code = await SignInService(services.uow, services.clock).issue(
                *OLGA, timedelta(minutes=5)
            )
            shown = await c.get(f"/handoff/login/{code}")
            assert f'action="/handoff/login/{code}"' in shown.text
            opened = await c.post(f"/handoff/login/{code}", headers=SAME)
            assert opened.status_code == 200
            assert "path=/handoff" in opened.headers["set-cookie"].lower()
            page = await c.get("/handoff/")
            assert page.status_code == 200
            assets = re.findall(r'(?:src|href)="(/[^"]+\.(?:js|css))"', page.text)
            assert sorted(assets) == ["/handoff/static/handoff.css", "/handoff/static/inbox.js"]
            for asset in assets:
                assert (await c.get(asset)).status_code == 200
            boot = re.search(r'id="boot">(.*?)</script>', page.text)
            assert boot is not None and json.loads(boot.group(1))["api"] == "/handoff/api/v1"
            docs = await c.get("/handoff/docs")
            for asset in re.findall(r'(?:src|href)="([^"]+)"', docs.text):
                assert asset.startswith("/handoff/"), asset
                assert (await c.get(asset)).status_code == 200, asset
    finally:
        await services.close()


async def test_the_cookie_opens_nothing_for_a_script_of_another_origin(
    client: httpx.AsyncClient, services: Services
) -> None:
    await sign_in(client, services, OLGA)
    evil = {"Origin": "http://127.0.0.1:9"}  # same site, another port: the cookie goes along
    r = await client.get(f"{API}/escalations/stream", headers=evil)
    assert r.status_code == 403 and r.json()["error"] == "cross_site"
    r = await client.get(f"{API}/escalations", headers=evil)
    assert r.status_code == 403
    assert (await client.get(f"{API}/escalations", headers=SAME)).status_code == 200
