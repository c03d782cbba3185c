"""Another account's objects do not exist for the caller: 404 everywhere, and nothing changes."""

from __future__ import annotations

from typing import Any

import pytest
from tests.e2e.people import Api

OLGA = ("acme", "olga")  # the most powerful member of acme
GUS = ("globex", "gus")
GWEN = ("globex", "gwen")


async def _globex_world(api: Api) -> dict[str, str]:
    escalated_session, escalation = await api.escalate(GWEN, summary="Globex mail down")
    parked_session = await api.session(GWEN, "Globex printer")
    park = await api.call(
        "POST", f"/ai-sessions/{parked_session}/handoff", GWEN, json={"intent": "park"}
    )
    assert park.status_code == 201
    active_session = await api.session(GWEN, "Globex VPN")
    await api.settled(GWEN, escalation)
    return {
        "escalated": escalated_session,
        "escalation": escalation,
        "parked": parked_session,
        "park": park.json()["id"],
        "active": active_session,
    }


async def _globex_state(api: Api, ids: dict[str, str]) -> dict[str, Any]:
    """Everything globex can see of the objects the calls aimed at."""
    state: dict[str, Any] = {}
    for name in ("escalated", "parked", "active"):
        state[name] = (await api.call("GET", f"/ai-sessions/{ids[name]}", GUS)).json()
        timeline = await api.call("GET", f"/ai-sessions/{ids[name]}/timeline", GUS)
        state[f"{name}-timeline"] = timeline.json()
    for name in ("escalation", "park"):
        state[name] = (await api.call("GET", f"/handoffs/{ids[name]}", GUS)).json()
        deliveries = await api.call("GET", f"/handoffs/{ids[name]}/deliveries", GUS)
        state[f"{name}-deliveries"] = deliveries.json()
    state["members"] = (await api.call("GET", "/members", GUS)).json()
    state["policy"] = (await api.call("GET", "/escalation-policy", GUS)).json()
    state["queue"] = (await api.call("GET", "/escalations?status=all", GUS)).json()
    return state


CROSS_CALLS = [
    ("GET", "/ai-sessions/{active}", None),
    ("PATCH", "/ai-sessions/{active}", {"problem_summary": "mine now"}),
    ("POST", "/ai-sessions/{active}/handoff", {"intent": "escalate"}),
    ("POST", "/ai-sessions/{active}/handoff", {"intent": "park"}),
    ("POST", "/ai-sessions/{parked}/resume", None),
    ("POST", "/ai-sessions/{active}/resolve", None),
    ("GET", "/ai-sessions/{escalated}/timeline", None),
    ("GET", "/handoffs/{escalation}", None),
    ("POST", "/handoffs/{escalation}/claim", None),
    ("POST", "/handoffs/{escalation}/withdraw", None),
    ("GET", "/handoffs/{escalation}/deliveries", None),
    ("DELETE", "/members/gwen", None),
]


async def test_every_call_with_another_accounts_ids_is_404_and_changes_nothing(
    api: Api,
) -> None:
    ids = await _globex_world(api)
    before = await _globex_state(api, ids)
    for method, template, body in CROSS_CALLS:
        path = template.format(**ids)
        r = await api.call(method, path, OLGA, json=body)
        assert r.status_code == 404, f"{method} {path}: {r.status_code} {r.text}"
        assert r.json()["error"] == "not_found"
        assert "globex" not in r.text
    assert await _globex_state(api, ids) == before


async def test_unknown_ids_are_404_just_the_same(api: Api) -> None:
    for method, template, body in CROSS_CALLS:
        path = template.format(
            active="nope", parked="nope", escalated="nope", escalation="nope"
        ).replace("gwen", "nobody")
        r = await api.call(method, path, OLGA, json=body)
        assert r.status_code == 404, f"{method} {path}: {r.text}"


async def test_lists_and_settings_show_only_the_callers_account(api: Api) -> None:
    ids = await _globex_world(api)
    before = await _globex_state(api, ids)
    _, mine = await api.escalate(("acme", "erin"))
    queue = await api.call("GET", "/escalations?status=all", OLGA)
    assert [h["id"] for h in queue.json()] == [mine]
    members = await api.call("GET", "/members", OLGA)
    assert {m["account_id"] for m in members.json()} == {"acme"}
    stats = await api.call("GET", "/analytics/escalations", OLGA)
    assert stats.json()["escalated"] == 1
    put = await api.call("PUT", "/escalation-policy", OLGA, json={"roles": ["owner"]})
    assert put.status_code == 200
    assert await _globex_state(api, ids) == before


@pytest.mark.parametrize("member_id", ["gwen", "gus"])
async def test_putting_a_member_never_reaches_into_another_account(
    api: Api, member_id: str
) -> None:
    """PUT /members/{id} creates or updates in the caller's own account: same id, other row."""
    before = (await api.call("GET", "/members", GUS)).json()
    r = await api.call(
        "PUT",
        f"/members/{member_id}",
        OLGA,
        json={"email": "x@acme.test", "name": "X", "role": "viewer", "active": False},
    )
    assert (r.status_code, r.json()["account_id"]) == (200, "acme")
    assert (await api.call("GET", "/members", GUS)).json() == before
    assert (await api.call("GET", "/members", (("globex", member_id)))).status_code == 200
