"""SPEC §13's tokens and account guards against a real uvicorn: clock leeway and numeric times,
the last owner kept, permission before validation, the whole `Allow` on 405, strict date-times,
one id rule."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI
from tests.e2e.people import API, SECRET, Api
from tests.e2e.servers import serving

from handoff_app.container import Services
from handoff_app.http import mint_token
from handoff_app.settings import Settings
from handoff_core.errors import ValidationError

OLGA = ("acme", "olga")  # the only owner of acme
ADAM = ("acme", "adam")
ERIN = ("acme", "erin")
VIC = ("acme", "vic")


@pytest.fixture
async def remote(app: FastAPI, settings: Settings) -> AsyncIterator[Api]:
    async with serving(app) as url, httpx.AsyncClient(base_url=url) as client:
        yield Api(client, settings)


def signed(claims: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {jwt.encode(claims, SECRET, algorithm='HS256')}"}


def claims(**times: Any) -> dict[str, Any]:
    now = int(datetime.now(UTC).timestamp())
    return {"sub": "erin", "account_id": "acme", "iat": now, "exp": now + 600, **times}


async def members_with(remote: Api, headers: dict[str, str]) -> httpx.Response:
    return await remote.client.get(f"{API}/members", headers=headers)


# --- tokens -------------------------------------------------------------------------------------


async def test_a_token_from_a_host_whose_clock_runs_ahead_is_let_in(
    remote: Api, settings: Settings
) -> None:
    ahead = datetime.now(UTC) + timedelta(seconds=2)
    token = mint_token(settings, "acme", "erin", 600, now=ahead)
    r = await members_with(remote, {"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    ("times", "status"),
    [
        ({"iat": "NOW+20"}, 200),  # within the 30 s leeway
        ({"nbf": "NOW+20"}, 200),
        ({"exp": "NOW-20"}, 200),
        ({"iat": "NOW+60"}, 401),  # past it
        ({"nbf": "NOW+60"}, 401),
        ({"exp": "NOW-60"}, 401),
    ],
)
async def test_iat_nbf_and_exp_have_a_leeway_of_30_seconds(
    remote: Api, times: dict[str, str], status: int
) -> None:
    now = int(datetime.now(UTC).timestamp())
    resolved = {k: now + int(v.removeprefix("NOW")) for k, v in times.items()}
    r = await members_with(remote, signed(claims(**resolved)))
    assert r.status_code == status, r.text


@pytest.mark.parametrize("name", ["exp", "iat", "nbf"])
async def test_a_time_claim_that_is_not_a_number_is_refused(remote: Api, name: str) -> None:
    later = str(int(datetime.now(UTC).timestamp()) + 600)
    r = await members_with(remote, signed(claims(**{name: later})))
    assert (r.status_code, r.json()["error"]) == (401, "unauthorized")
    if name == "exp":  # PyJWT itself refuses a string iat or nbf; it would read this exp
        assert r.json()["detail"] == NOT_A_TIME.format(name="exp")


NOT_A_TIME = "the token's {name} must be a number (seconds since the epoch, before the year 10000)"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("exp", True),  # PyJWT reads it as 1: "expired" would be the wrong reason
        ("exp", 10**400),  # would never expire
        ("exp", 253_402_300_800),  # one second into the year 10000
        ("iat", True),
        ("nbf", False),
    ],
)
async def test_a_time_claim_no_calendar_holds_is_refused_as_such(
    remote: Api, name: str, value: object
) -> None:
    r = await members_with(remote, signed(claims(**{name: value})))
    assert r.status_code == 401
    assert r.json()["detail"] == NOT_A_TIME.format(name=name)


# --- the last owner -----------------------------------------------------------------------------


async def test_the_last_owner_cannot_remove_or_demote_themselves(remote: Api) -> None:
    removed = await remote.call("DELETE", "/members/olga", OLGA)
    assert removed.status_code == 409
    assert removed.json() == {
        "error": "conflict",
        "detail": "olga is the account's last owner: make another member owner before you "
        "remove them",
    }
    body = {"email": "olga@acme.test", "name": "Olga", "role": "admin", "active": True}
    demoted = await remote.call("PUT", "/members/olga", OLGA, json=body)
    assert demoted.status_code == 409 and "last owner" in demoted.json()["detail"]
    inactive = await remote.call("PUT", "/members/olga", ADAM, json={**body, "role": "owner",
                                                                     "active": False})  # fmt: skip
    assert inactive.status_code == 409
    by_admin = await remote.call("DELETE", "/members/olga", ADAM)
    assert by_admin.status_code == 409
    listed = await remote.call("GET", "/members", OLGA)
    olga = next(m for m in listed.json() if m["id"] == "olga")
    assert (olga["role"], olga["active"]) == ("owner", True)


async def test_with_a_second_owner_the_first_may_step_down(remote: Api) -> None:
    second = {"email": "adam@acme.test", "name": "Adam", "role": "owner", "active": True}
    assert (await remote.call("PUT", "/members/adam", OLGA, json=second)).status_code == 200
    body = {"email": "olga@acme.test", "name": "Olga", "role": "admin", "active": True}
    r = await remote.call("PUT", "/members/olga", OLGA, json=body)
    assert (r.status_code, r.json()["role"]) == (200, "admin")
    assert (await remote.call("DELETE", "/members/adam", ADAM)).status_code == 409


# --- permission before validation ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "method", "path", "kwargs"),
    [
        (ERIN, "PUT", "/members/x", {"json": {"email": "nope"}}),
        (ERIN, "PUT", "/members/x", {"content": b"{not json", "headers": {"Content-Type":
                                                                          "application/json"}}),
        (ERIN, "PUT", "/escalation-policy", {"json": {"roles": "all"}}),
        (VIC, "POST", "/ai-sessions", {"json": {"problem_summary": 7}}),
        (VIC, "POST", "/ai-sessions/x/handoff", {"json": {"intent": "shout"}}),
        (VIC, "GET", "/analytics/escalations", {"params": {"until": "0.5"}}),
        (VIC, "GET", "/escalations/stream", {"headers": {"Last-Event-ID": "abc"}}),
    ],
)  # fmt: skip
async def test_a_member_who_may_not_do_it_gets_403_even_for_an_invalid_request(
    remote: Api, who: tuple[str, str], method: str, path: str, kwargs: dict[str, Any]
) -> None:
    r = await remote.call(method, path, who, **kwargs)
    assert r.status_code == 403, r.text
    assert r.json()["error"] == "forbidden"


async def test_a_manager_sending_the_same_invalid_body_gets_422(remote: Api) -> None:
    r = await remote.call("PUT", "/members/x", ADAM, json={"email": "nope"})
    assert r.status_code == 422 and r.json()["error"] == "validation_error"


# --- 405 and Allow --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/escalation-policy", {"GET", "PUT"}),
        ("/ai-sessions/s1", {"GET", "PATCH"}),
        ("/members/eve", {"PUT", "DELETE"}),
        ("/members", {"GET"}),
        ("/handoffs/h1/claim", {"POST"}),
    ],
)
async def test_405_names_every_method_the_path_answers(
    remote: Api, path: str, allowed: set[str]
) -> None:
    r = await remote.call("OPTIONS", path, ERIN)
    assert r.status_code == 405
    assert set(r.headers["allow"].split(", ")) == allowed
    assert r.json()["error"] == "method_not_allowed"


# --- strict date-times ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", ["0.5", "1700000000", "2026-05-01", "yesterday", "2026-13-01T00:00Z"]
)
async def test_analytics_takes_only_iso_date_times(remote: Api, value: str) -> None:
    r = await remote.call("GET", "/analytics/escalations", ERIN, params={"until": value})
    assert r.status_code == 422, r.text
    assert r.json()["field"] == "query.until"


@pytest.mark.parametrize("value", ["2026-05-01T00:00:00Z", "2026-05-01T02:00:00.5+02:00"])
async def test_analytics_accepts_an_iso_date_time_with_an_offset(remote: Api, value: str) -> None:
    r = await remote.call("GET", "/analytics/escalations", ERIN, params={"since": value})
    assert r.status_code == 200, r.text


# --- one id rule --------------------------------------------------------------------------------


async def test_the_library_refuses_an_id_no_url_could_reach(services: Services) -> None:
    for bad in ("ops/team2", "..", "a b"):
        with pytest.raises(ValidationError) as refused:
            await services.members.upsert("acme", bad, email="x@acme.test", name="X", role="viewer")
        assert refused.value.field == "id"


@pytest.mark.parametrize("raw", ["a%20b", "tab%09", "nbsp%C2%A0", "nel%C2%85"])
async def test_the_api_refuses_the_ids_the_library_refuses(remote: Api, raw: str) -> None:
    body = {"email": "x@acme.test", "name": "X", "role": "viewer", "active": True}
    r = await remote.call("PUT", f"/members/{raw}", OLGA, json=body)
    assert (r.status_code, r.json()["field"]) == (422, "path.member_id")


async def test_an_id_the_rule_allows_is_reachable_over_http(remote: Api) -> None:
    body = {"email": "x@acme.test", "name": "X", "role": "viewer", "active": True}
    for member_id in ("auth0|5f1e", "x@acme.test", "ops:team2", "100%"):
        quoted = member_id.replace("%", "%25").replace("|", "%7C")
        put = await remote.call("PUT", f"/members/{quoted}", OLGA, json=body)
        assert (put.status_code, put.json()["id"]) == (200, member_id)
        assert (await remote.call("DELETE", f"/members/{quoted}", OLGA)).status_code == 204
