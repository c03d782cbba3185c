"""Members and the escalation policy: admins and owners change them, every member reads them."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.e2e.people import Api, recipients

ADAM = ("acme", "adam")
OLGA = ("acme", "olga")
ERIN = ("acme", "erin")
VIC = ("acme", "vic")

NEW = {"email": "nina@acme.test", "name": "Nina", "role": "engineer", "active": True}


async def test_an_admin_creates_updates_and_removes_a_member(api: Api) -> None:
    created = await api.call("PUT", "/members/nina", ADAM, json=NEW)
    assert created.status_code == 200
    assert created.json() == {
        "id": "nina",
        "account_id": "acme",
        "email": "nina@acme.test",
        "name": "Nina",
        "role": "engineer",
        "active": True,
        "deleted_at": None,
    }
    updated = await api.call("PUT", "/members/nina", OLGA, json={**NEW, "role": "admin"})
    assert (updated.status_code, updated.json()["role"]) == (200, "admin")

    listed = await api.call("GET", "/members", VIC)
    assert listed.status_code == 200
    assert {"id": "nina", "role": "admin"}.items() <= next(
        m for m in listed.json() if m["id"] == "nina"
    ).items()

    removed = await api.call("DELETE", "/members/nina", ADAM)
    assert (removed.status_code, removed.content) == (204, b"")
    after = await api.call("GET", "/members", VIC)
    assert "nina" not in {m["id"] for m in after.json()}
    again = await api.call("DELETE", "/members/nina", ADAM)
    assert (again.status_code, again.json()["error"]) == (404, "not_found")


async def test_the_member_list_leaves_out_removed_members(api: Api) -> None:
    listed = await api.call("GET", "/members", ERIN)
    ids = [m["id"] for m in listed.json()]
    assert ids == sorted(ids)
    assert set(ids) == {"olga", "adam", "erin", "eve", "vic", "ivan"}


@pytest.mark.parametrize("who", [ERIN, VIC], ids=["engineer", "viewer"])
async def test_only_admins_and_owners_change_members(api: Api, who: tuple[str, str]) -> None:
    put = await api.call("PUT", "/members/nina", who, json=NEW)
    delete = await api.call("DELETE", "/members/eve", who)
    assert (put.status_code, put.json()["error"]) == (403, "forbidden")
    assert (delete.status_code, delete.json()["error"]) == (403, "forbidden")
    listed = await api.call("GET", "/members", ADAM)
    assert "nina" not in {m["id"] for m in listed.json()}
    assert "eve" in {m["id"] for m in listed.json()}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**NEW, "role": "wizard"}, "body.role"),
        ({**NEW, "active": "yes"}, "body.active"),
        ({k: v for k, v in NEW.items() if k != "name"}, "body.name"),
        ({**NEW, "name": ""}, "body.name"),
        ({**NEW, "colour": "blue"}, "body.colour"),
        ({**NEW, "name": "Ni\x00na"}, "body.name"),
        ({**NEW, "email": "not-an-address"}, "email"),
    ],
    ids=["role", "active", "missing-name", "empty-name", "unknown-field", "nul", "email"],
)
async def test_bad_member_fields_are_422_naming_the_field(
    api: Api, body: dict[str, object], field: str
) -> None:
    r = await api.call("PUT", "/members/nina", ADAM, json=body)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field
    assert field in r.json()["detail"]
    listed = await api.call("GET", "/members", ADAM)
    assert "nina" not in {m["id"] for m in listed.json()}


async def test_a_member_id_with_spaces_is_refused(api: Api) -> None:
    r = await api.call("PUT", "/members/ni na", ADAM, json=NEW)
    assert (r.status_code, r.json()["field"]) == (422, "path.member_id")


async def test_the_policy_reads_as_the_default_until_set(api: Api) -> None:
    r = await api.call("GET", "/escalation-policy", VIC)
    assert r.status_code == 200
    assert r.json() == {
        "roles": ["owner", "admin", "engineer"],
        "email_online_too": False,
        "remind_after_seconds": 600,
        "max_reminders": 2,
        "push_confirm_seconds": 30,
        "tiers": [{"roles": ["owner", "admin", "engineer"], "after_seconds": 0}],
    }


async def test_an_owner_sets_the_policy_and_new_escalations_follow_it(
    api: Api, maildir: Path
) -> None:
    _, before = await api.escalate(ERIN)
    put = await api.call(
        "PUT",
        "/escalation-policy",
        OLGA,
        json={
            "roles": ["owner"],
            "remind_after_seconds": 120,
            "max_reminders": 1,
            "push_confirm_seconds": 0,
        },
    )
    assert put.status_code == 200
    assert put.json() == {
        "roles": ["owner"],
        "email_online_too": False,
        "remind_after_seconds": 120,
        "max_reminders": 1,
        "push_confirm_seconds": 0,
        "tiers": [{"roles": ["owner"], "after_seconds": 0}],
    }
    assert (await api.call("GET", "/escalation-policy", ERIN)).json() == put.json()

    await api.settled(ERIN, before)
    _, after = await api.escalate(ERIN, summary="Printer on fire")
    deliveries = await api.settled(ERIN, after)
    assert {d["recipient_id"] for d in deliveries} == {"olga"}

    old = (await api.call("GET", f"/handoffs/{before}", ERIN)).json()
    new = (await api.call("GET", f"/handoffs/{after}", ERIN)).json()
    assert old["policy"]["roles"] == ["owner", "admin", "engineer"]
    assert new["policy"]["roles"] == ["owner"]
    assert recipients(maildir).count("olga@acme.test") == 2


@pytest.mark.parametrize("who", [ERIN, VIC], ids=["engineer", "viewer"])
async def test_only_admins_and_owners_set_the_policy(api: Api, who: tuple[str, str]) -> None:
    r = await api.call("PUT", "/escalation-policy", who, json={"roles": ["owner"]})
    assert (r.status_code, r.json()["error"]) == (403, "forbidden")
    assert (await api.call("GET", "/escalation-policy", who)).json()["roles"] == [
        "owner",
        "admin",
        "engineer",
    ]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"remind_after_seconds": 0}, "body.remind_after_seconds"),
        ({"max_reminders": 51}, "body.max_reminders"),
        ({"max_reminders": "2"}, "body.max_reminders"),
        ({"push_confirm_seconds": -1}, "body.push_confirm_seconds"),
        ({"push_confirm_seconds": "30"}, "body.push_confirm_seconds"),
        ({"roles": []}, "body.roles"),
        ({"roles": ["viewer"]}, "roles"),
        ({"email_online_too": 1}, "body.email_online_too"),
        ({"colour": "blue"}, "body.colour"),
    ],
)
async def test_bad_policy_fields_are_422_naming_the_field(
    api: Api, body: dict[str, object], field: str
) -> None:
    r = await api.call("PUT", "/escalation-policy", OLGA, json=body)
    assert (r.status_code, r.json()["field"]) == (422, field)
    assert (await api.call("GET", "/escalation-policy", OLGA)).json()["max_reminders"] == 2
