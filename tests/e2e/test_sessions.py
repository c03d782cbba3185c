"""Sessions through the API: start, read, edit, park, resume, escalate, resolve, timeline."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.e2e.people import Api, mails, recipients

OLGA = ("acme", "olga")
ADAM = ("acme", "adam")
ERIN = ("acme", "erin")
EVE = ("acme", "eve")
VIC = ("acme", "vic")


async def test_a_senior_starts_a_session_they_own_and_work(api: Api) -> None:
    r = await api.call(
        "POST",
        "/ai-sessions",
        ERIN,
        json={"problem_summary": "VPN down", "context": {"messages": [{"role": "user"}]}},
    )
    assert r.status_code == 201
    s = r.json()
    assert set(s) == {
        "id",
        "account_id",
        "owner_id",
        "assignee_id",
        "status",
        "problem_summary",
        "context",
        "handoff_count",
        "escalation_package",
        "created_at",
        "updated_at",
        "version",
    }
    assert (s["account_id"], s["owner_id"], s["assignee_id"]) == ("acme", "erin", "erin")
    assert (s["status"], s["handoff_count"], s["escalation_package"]) == ("active", 0, None)
    assert s["context"] == {"messages": [{"role": "user"}]}
    assert s["created_at"].endswith("Z")

    read = await api.call("GET", f"/ai-sessions/{s['id']}", VIC)
    assert read.status_code == 200
    assert read.json()["problem_summary"] == "VPN down"


async def test_a_viewer_cannot_start_a_session(api: Api) -> None:
    r = await api.call("POST", "/ai-sessions", VIC, json={"problem_summary": "x"})
    assert (r.status_code, r.json()["error"]) == (403, "forbidden")


async def test_the_assignee_or_an_admin_edits_a_session(api: Api) -> None:
    session_id = await api.session(ERIN)
    mine = await api.call(
        "PATCH", f"/ai-sessions/{session_id}", ERIN, json={"problem_summary": "VPN flaps"}
    )
    assert (mine.status_code, mine.json()["problem_summary"]) == (200, "VPN flaps")
    admin = await api.call("PATCH", f"/ai-sessions/{session_id}", ADAM, json={"context": {"a": 1}})
    assert admin.status_code == 200
    assert (admin.json()["context"], admin.json()["problem_summary"]) == ({"a": 1}, "VPN flaps")
    other = await api.call("PATCH", f"/ai-sessions/{session_id}", EVE, json={"context": {}})
    assert (other.status_code, other.json()["error"]) == (403, "forbidden")
    viewer = await api.call("PATCH", f"/ai-sessions/{session_id}", VIC, json={"context": {}})
    assert viewer.status_code == 403
    assert (await api.call("GET", f"/ai-sessions/{session_id}", VIC)).json()["context"] == {"a": 1}


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/ai-sessions", {"problem_summary": "x" * 501}, "body.problem_summary"),
        ("POST", "/ai-sessions", {"problem_summary": 5}, "body.problem_summary"),
        ("POST", "/ai-sessions", {}, "body.problem_summary"),
        ("POST", "/ai-sessions", {"problem_summary": "x", "context": [1]}, "body.context"),
        (
            "POST",
            "/ai-sessions",
            {"problem_summary": "x", "context": {"a": "\x00"}},
            "body.context",
        ),
        ("PATCH", "/ai-sessions/{id}", {"context": "text"}, "body.context"),
        ("POST", "/ai-sessions/{id}/handoff", {"intent": "fly"}, "body.intent"),
        ("POST", "/ai-sessions/{id}/handoff", {}, "body.intent"),
        (
            "POST",
            "/ai-sessions/{id}/handoff",
            {"intent": "park", "engineer_notes": "n" * 4001},
            "body.engineer_notes",
        ),
    ],
)
async def test_bad_session_fields_are_422_naming_the_field(
    api: Api, method: str, path: str, body: dict[str, object], field: str
) -> None:
    session_id = await api.session(ERIN)
    r = await api.call(method, path.format(id=session_id), ERIN, json=body)
    assert r.status_code == 422, r.text
    assert (r.json()["error"], r.json()["field"]) == ("validation_error", field)
    after = (await api.call("GET", f"/ai-sessions/{session_id}", ERIN)).json()
    assert (after["status"], after["handoff_count"], after["context"]) == ("active", 0, {})


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b'{"problem_summary": "half a \\ud800 pair"}', "body.problem_summary"),
        (b'{"problem_summary": "x", "context": {"\\udfff": 1}}', "body.context"),
        (
            b'{"problem_summary": "x", "context": {"a": ' + b"[" * 100 + b"]" * 100 + b"}}",
            "body.context",
        ),
        (b'{"problem_summary": "x", "context": {"a": NaN}}', "context"),
    ],
    ids=["lone-surrogate", "surrogate-key", "too-deep", "nan"],
)
async def test_json_no_store_could_keep_is_422(api: Api, raw: bytes, field: str) -> None:
    r = await api.call(
        "POST", "/ai-sessions", ERIN, content=raw, headers={"content-type": "application/json"}
    )
    assert (r.status_code, r.json()["field"]) == (422, field), r.text


async def test_park_and_resume(api: Api, maildir: Path) -> None:
    session_id = await api.session(ERIN)
    parked = await api.call(
        "POST",
        f"/ai-sessions/{session_id}/handoff",
        ERIN,
        json={"intent": "park", "engineer_notes": "waiting for the client's logs"},
    )
    assert parked.status_code == 201
    h = parked.json()
    assert (h["intent"], h["status"], h["created_by"], h["policy"]) == (
        "park",
        "open",
        "erin",
        None,
    )
    assert h["snapshot"]["status"] == "active"
    session = (await api.call("GET", f"/ai-sessions/{session_id}", ERIN)).json()
    assert (session["status"], session["handoff_count"]) == ("paused", 1)

    not_parker = await api.call("POST", f"/ai-sessions/{session_id}/resume", EVE)
    assert not_parker.status_code == 403
    resumed = await api.call("POST", f"/ai-sessions/{session_id}/resume", ERIN)
    assert (resumed.status_code, resumed.json()["status"]) == (200, "active")
    handoff = (await api.call("GET", f"/handoffs/{h['id']}", ERIN)).json()
    assert handoff["status"] == "resumed" and handoff["closed_at"] is not None
    again = await api.call("POST", f"/ai-sessions/{session_id}/resume", ERIN)
    assert (again.status_code, again.json()["error"]) == (409, "invalid_transition")
    deliveries = await api.call("GET", f"/handoffs/{h['id']}/deliveries", ERIN)
    assert deliveries.json() == []
    assert mails(maildir) == []


async def test_resolve_is_terminal(api: Api) -> None:
    session_id = await api.session(ERIN)
    by_other = await api.call("POST", f"/ai-sessions/{session_id}/resolve", EVE)
    assert by_other.status_code == 403
    resolved = await api.call("POST", f"/ai-sessions/{session_id}/resolve", ERIN)
    assert (resolved.status_code, resolved.json()["status"]) == (200, "resolved")
    twice = await api.call("POST", f"/ai-sessions/{session_id}/resolve", ERIN)
    assert twice.status_code == 409
    handoff = await api.call(
        "POST", f"/ai-sessions/{session_id}/handoff", ERIN, json={"intent": "escalate"}
    )
    assert (handoff.status_code, handoff.json()["error"]) == (409, "invalid_transition")
    edit = await api.call("PATCH", f"/ai-sessions/{session_id}", ERIN, json={"context": {}})
    assert edit.status_code == 409


async def test_a_viewer_cannot_hand_off(api: Api) -> None:
    session_id = await api.session(ERIN)
    r = await api.call(
        "POST", f"/ai-sessions/{session_id}/handoff", VIC, json={"intent": "escalate"}
    )
    assert (r.status_code, r.json()["error"]) == (403, "forbidden")
    session = (await api.call("GET", f"/ai-sessions/{session_id}", VIC)).json()
    assert (session["status"], session["handoff_count"]) == ("active", 0)


async def test_the_seeds_endpoint_escalates_and_emails_the_one_eligible_teammate(
    api: Api, maildir: Path
) -> None:
    """POST /ai-sessions/{id}/handoff with intent escalate: 201, and exactly one email, to the
    one eligible teammate (not the escalator, the viewer or the removed admin)."""
    sam = ("solo", "sam")
    session_id = await api.session(sam, "VPN won't connect after Win update")
    r = await api.call(
        "POST",
        f"/ai-sessions/{session_id}/handoff",
        sam,
        json={"intent": "escalate", "engineer_notes": "Stuck on auth handshake"},
    )
    assert r.status_code == 201
    handoff = r.json()
    assert (handoff["intent"], handoff["status"]) == ("escalate", "open")
    session = (await api.call("GET", f"/ai-sessions/{session_id}", sam)).json()
    assert session["status"] == "escalated"
    assert session["escalation_package"]["handoff_id"] == handoff["id"]
    assert session["escalation_package"]["escalated_by"] == "sam"

    deliveries = await api.settled(sam, handoff["id"])
    assert [(d["recipient_id"], d["channel"], d["status"]) for d in deliveries] == [
        ("tia", "email", "sent")
    ]
    assert recipients(maildir) == ["tia@solo.test"]
    (mail,) = mails(maildir)
    assert "VPN won't connect after Win update" in str(mail["Subject"])
    assert str(mail["Message-ID"]) == deliveries[0]["message_id"]


async def test_a_repeated_idempotency_key_returns_the_first_handoff(
    api: Api, maildir: Path
) -> None:
    session_id = await api.session(ERIN)
    body = {"intent": "escalate", "engineer_notes": "help"}
    key = {"Idempotency-Key": "retry-7f3a"}
    path = f"/ai-sessions/{session_id}/handoff"
    first = await api.call("POST", path, ERIN, json=body, headers=key)
    second = await api.call("POST", path, ERIN, json=body, headers=key)
    assert (first.status_code, second.status_code) == (201, 201)
    assert first.json() == second.json()
    session = (await api.call("GET", f"/ai-sessions/{session_id}", ERIN)).json()
    assert session["handoff_count"] == 1

    other = await api.call(
        "POST", path, ERIN, json={"intent": "escalate", "engineer_notes": "other"}, headers=key
    )
    assert (other.status_code, other.json()["error"]) == (409, "idempotency_conflict")
    await api.settled(ERIN, first.json()["id"])
    assert len(mails(maildir)) == 3  # olga, adam, eve: once each


@pytest.mark.parametrize("key", ["", "has space", "k" * 201, "caf\u00e9"])
async def test_a_malformed_idempotency_key_is_422(api: Api, key: str) -> None:
    session_id = await api.session(ERIN)
    r = await api.call(
        "POST",
        f"/ai-sessions/{session_id}/handoff",
        ERIN,
        json={"intent": "park"},
        headers={"Idempotency-Key": key.encode("utf-8")},
    )
    assert (r.status_code, r.json()["field"]) == (422, "header.Idempotency-Key")
    session = (await api.call("GET", f"/ai-sessions/{session_id}", ERIN)).json()
    assert session["status"] == "active"


async def test_the_timeline_tells_the_story_oldest_first(api: Api) -> None:
    session_id, handoff_id = await api.escalate(ERIN)
    claimed = await api.call("POST", f"/handoffs/{handoff_id}/claim", EVE)
    assert claimed.status_code == 200
    await api.call("POST", f"/ai-sessions/{session_id}/resolve", EVE)
    r = await api.call("GET", f"/ai-sessions/{session_id}/timeline", VIC)
    assert r.status_code == 200
    events = r.json()
    story = [(e["type"], e["actor_id"]) for e in events if not e["type"].startswith("delivery.")]
    assert story == [
        ("session.created", "erin"),
        ("session.escalated", "erin"),
        ("escalation.claimed", "eve"),
        ("session.resolved", "eve"),
    ]
    ids = [e["id"] for e in events]
    assert ids == sorted(ids)
    assert all(e["session_id"] == session_id for e in events)
    assert set(events[0]) == {"id", "type", "actor_id", "at", "handoff_id", "session_id", "data"}
