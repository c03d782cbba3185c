"""Handoffs through the API: claim, withdraw, deliveries, the queue and the analytics."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from tests.e2e.people import Api

OLGA = ("acme", "olga")
ADAM = ("acme", "adam")
ERIN = ("acme", "erin")
EVE = ("acme", "eve")
VIC = ("acme", "vic")


async def test_a_claim_hands_the_session_to_the_claimer(api: Api) -> None:
    session_id, handoff_id = await api.escalate(ERIN)
    r = await api.call("POST", f"/handoffs/{handoff_id}/claim", EVE)
    assert r.status_code == 200
    h = r.json()
    assert (h["status"], h["claimed_by"], h["intent"]) == ("claimed", "eve", "escalate")
    assert h["claimed_at"] is not None and h["closed_at"] is not None
    session = (await api.call("GET", f"/ai-sessions/{session_id}", VIC)).json()
    assert (session["status"], session["assignee_id"], session["owner_id"]) == (
        "active",
        "eve",
        "erin",
    )
    read = await api.call("GET", f"/handoffs/{handoff_id}", VIC)
    assert read.json() == h


async def test_a_late_claimer_learns_who_won(api: Api) -> None:
    _, handoff_id = await api.escalate(ERIN)
    assert (await api.call("POST", f"/handoffs/{handoff_id}/claim", EVE)).status_code == 200
    late = await api.call("POST", f"/handoffs/{handoff_id}/claim", ADAM)
    assert late.status_code == 409
    assert late.json() == {
        "error": "already_claimed",
        "detail": late.json()["detail"],
        "claimed_by": "eve",
    }
    assert "eve" in late.json()["detail"]
    assert (await api.call("GET", f"/handoffs/{handoff_id}", ADAM)).json()["claimed_by"] == "eve"


async def test_concurrent_claims_have_exactly_one_winner(api: Api) -> None:
    _, handoff_id = await api.escalate(ERIN)
    answers = await asyncio.gather(
        *(api.call("POST", f"/handoffs/{handoff_id}/claim", who) for who in (EVE, ADAM, OLGA))
    )
    codes = sorted(a.status_code for a in answers)
    assert codes == [200, 409, 409]
    winner = next(a.json()["claimed_by"] for a in answers if a.status_code == 200)
    assert all(a.json()["claimed_by"] == winner for a in answers if a.status_code == 409)


@pytest.mark.parametrize("who", [ERIN, VIC], ids=["escalator", "viewer"])
async def test_the_escalator_and_viewers_may_not_claim(api: Api, who: tuple[str, str]) -> None:
    _, handoff_id = await api.escalate(ERIN)
    r = await api.call("POST", f"/handoffs/{handoff_id}/claim", who)
    assert (r.status_code, r.json()["error"]) == (403, "forbidden")
    assert (await api.call("GET", f"/handoffs/{handoff_id}", VIC)).json()["status"] == "open"


async def test_the_escalator_racing_the_claimers_is_refused_and_one_other_wins(api: Api) -> None:
    session_id, handoff_id = await api.escalate(ERIN)
    racers = (ERIN, EVE, ADAM, OLGA, ERIN)
    answers = await asyncio.gather(
        *(api.call("POST", f"/handoffs/{handoff_id}/claim", who) for who in racers)
    )
    assert [answers[0].status_code, answers[-1].status_code] == [403, 403]
    others = answers[1:-1]
    assert sorted(a.status_code for a in others) == [200, 409, 409]
    winner = next(a.json()["claimed_by"] for a in others if a.status_code == 200)
    assert winner in {"eve", "adam", "olga"}
    assert all(a.json()["claimed_by"] == winner for a in others if a.status_code == 409)
    assert (await api.call("GET", f"/handoffs/{handoff_id}", VIC)).json()["claimed_by"] == winner
    session = (await api.call("GET", f"/ai-sessions/{session_id}", VIC)).json()
    assert session["assignee_id"] == winner
    timeline = (await api.call("GET", f"/ai-sessions/{session_id}/timeline", VIC)).json()
    claims = [e["actor_id"] for e in timeline if e["type"] == "escalation.claimed"]
    assert claims == [winner]


async def test_another_accounts_escalation_cannot_be_claimed(api: Api) -> None:
    _, handoff_id = await api.escalate(ERIN)
    r = await api.call("POST", f"/handoffs/{handoff_id}/claim", ("globex", "gwen"))
    assert (r.status_code, r.json()["error"]) == (404, "not_found")
    assert (await api.call("GET", f"/handoffs/{handoff_id}", VIC)).json()["status"] == "open"


async def test_a_park_or_a_closed_escalation_cannot_be_claimed(api: Api) -> None:
    session_id = await api.session(ERIN)
    park = await api.call(
        "POST", f"/ai-sessions/{session_id}/handoff", ERIN, json={"intent": "park"}
    )
    r = await api.call("POST", f"/handoffs/{park.json()['id']}/claim", EVE)
    assert (r.status_code, r.json()["error"]) == (409, "invalid_transition")

    _, handoff_id = await api.escalate(ERIN)
    withdrawn = await api.call("POST", f"/handoffs/{handoff_id}/withdraw", ERIN)
    assert withdrawn.status_code == 200
    late = await api.call("POST", f"/handoffs/{handoff_id}/claim", EVE)
    assert (late.status_code, late.json()["error"]) == (409, "invalid_transition")
    assert "claimed_by" not in late.json()


async def test_withdraw_takes_an_escalation_back(api: Api) -> None:
    session_id, handoff_id = await api.escalate(ERIN)
    await api.settled(ERIN, handoff_id)
    not_theirs = await api.call("POST", f"/handoffs/{handoff_id}/withdraw", EVE)
    assert (not_theirs.status_code, not_theirs.json()["error"]) == (403, "forbidden")
    viewer = await api.call("POST", f"/handoffs/{handoff_id}/withdraw", VIC)
    assert viewer.status_code == 403
    r = await api.call("POST", f"/handoffs/{handoff_id}/withdraw", ERIN)
    assert r.status_code == 200
    assert (r.json()["status"], r.json()["claimed_by"]) == ("withdrawn", None)
    session = (await api.call("GET", f"/ai-sessions/{session_id}", ERIN)).json()
    assert (session["status"], session["assignee_id"]) == ("active", "erin")
    again = await api.call("POST", f"/handoffs/{handoff_id}/withdraw", ERIN)
    assert (again.status_code, again.json()["error"]) == (409, "invalid_transition")


async def test_an_admin_withdraws_but_not_once_claimed(api: Api) -> None:
    _, first = await api.escalate(ERIN)
    assert (await api.call("POST", f"/handoffs/{first}/withdraw", ADAM)).status_code == 200
    _, second = await api.escalate(ERIN, summary="Disk full")
    assert (await api.call("POST", f"/handoffs/{second}/claim", EVE)).status_code == 200
    r = await api.call("POST", f"/handoffs/{second}/withdraw", ADAM)
    assert (r.status_code, r.json()["error"], r.json()["claimed_by"]) == (
        409,
        "already_claimed",
        "eve",
    )


async def test_deliveries_are_listed_per_recipient_and_channel(api: Api) -> None:
    _, handoff_id = await api.escalate(ERIN)
    deliveries = await api.settled(VIC, handoff_id)
    assert sorted((d["recipient_id"], d["channel"]) for d in deliveries) == [
        ("adam", "email"),
        ("eve", "email"),
        ("olga", "email"),
    ]
    d = deliveries[0]
    assert set(d) == {
        "id",
        "account_id",
        "handoff_id",
        "recipient_id",
        "channel",
        "kind",
        "status",
        "attempts",
        "next_attempt_at",
        "last_error",
        "sent_at",
        "message_id",
        "seen_at",
    }
    assert (d["kind"], d["status"], d["attempts"], d["handoff_id"]) == (
        "escalation",
        "sent",
        1,
        handoff_id,
    )
    assert d["sent_at"].endswith("Z")


async def test_the_queue_lists_escalations_oldest_first_by_status(api: Api) -> None:
    _, first = await api.escalate(ERIN, summary="one")
    _, second = await api.escalate(ERIN, summary="two")
    _, third = await api.escalate(ERIN, summary="three")
    await api.call("POST", f"/handoffs/{second}/claim", EVE)
    await api.call("POST", f"/handoffs/{third}/withdraw", ERIN)

    async def ids(query: str) -> list[str]:
        r = await api.call("GET", f"/escalations{query}", VIC)
        assert r.status_code == 200
        return [h["id"] for h in r.json()]

    assert await ids("") == [first]
    assert await ids("?status=open") == [first]
    assert await ids("?status=claimed") == [second]
    assert await ids("?status=withdrawn") == [third]
    assert await ids("?status=all") == [first, second, third]
    bad = await api.call("GET", "/escalations?status=lost", VIC)
    assert (bad.status_code, bad.json()["field"]) == (422, "query.status")


async def test_analytics_count_and_time_the_claims(api: Api) -> None:
    _, first = await api.escalate(ERIN)
    _, second = await api.escalate(ERIN)
    await api.escalate(ERIN)
    await api.call("POST", f"/handoffs/{first}/claim", EVE)
    await api.call("POST", f"/handoffs/{second}/withdraw", ERIN)
    r = await api.call("GET", "/analytics/escalations", ADAM)
    assert r.status_code == 200
    stats = r.json()
    assert {k: stats[k] for k in ("escalated", "claimed", "withdrawn", "open")} == {
        "escalated": 3,
        "claimed": 1,
        "withdrawn": 1,
        "open": 1,
    }
    assert stats["claim_rate"] == pytest.approx(1 / 3, abs=1e-3)
    assert stats["claims_by_member"] == {"eve": 1}
    assert stats["time_to_claim_p50_s"] is not None and stats["time_to_claim_p50_s"] >= 0

    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    later = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    empty = await api.call("GET", "/analytics/escalations", ADAM, params={"since": future})
    assert empty.json()["escalated"] == 0 and empty.json()["claim_rate"] is None
    window = await api.call(
        "GET", "/analytics/escalations", ADAM, params={"since": future, "until": later}
    )
    assert window.json()["escalated"] == 0


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"since": "2026-01-01T00:00:00"}, "query.since"),
        ({"since": "yesterday"}, "query.since"),
        ({"since": "0001-01-01T00:00:00+14:00"}, "since"),
        ({"since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "since"),
    ],
    ids=["naive", "not-a-time", "no-utc-year", "backwards"],
)
async def test_bad_analytics_windows_are_422(api: Api, params: dict[str, str], field: str) -> None:
    r = await api.call("GET", "/analytics/escalations", ADAM, params=params)
    assert (r.status_code, r.json()["field"]) == (422, field)


async def test_viewers_get_no_analytics(api: Api) -> None:
    r = await api.call("GET", "/analytics/escalations", VIC)
    assert (r.status_code, r.json()["error"]) == (403, "forbidden")
