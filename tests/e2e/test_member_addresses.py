"""`PUT /members/{id}` refuses what no mail server could be given (422 naming `email`) and keeps
what it accepts as it was given."""

from __future__ import annotations

import pytest
from tests.e2e.people import Api

ADAM = ("acme", "adam")
NINA = {"name": "Nina", "role": "engineer", "active": True}


@pytest.mark.parametrize(
    "address",
    [
        "a<b>@acme.test",
        "a@b@acme.test",
        '"a b"@acme.test',
        "a@acme..test",
        "bob@host.invalid",  # only email-validator knows: RFC 6761 keeps .invalid unresolvable
    ],
)
async def test_an_address_nothing_could_send_to_is_422_naming_email(api: Api, address: str) -> None:
    r = await api.call("PUT", "/members/nina", ADAM, json={**NINA, "email": address})

    assert r.status_code == 422, r.text
    body = r.json()
    assert (body["error"], body["field"]) == ("validation_error", "email")
    listed = await api.call("GET", "/members", ADAM)
    assert "nina" not in {m["id"] for m in listed.json()}


async def test_a_bad_address_does_not_replace_a_good_one(api: Api) -> None:
    good = await api.call("PUT", "/members/nina", ADAM, json={**NINA, "email": "nina@acme.test"})
    assert good.status_code == 200

    bad = await api.call("PUT", "/members/nina", ADAM, json={**NINA, "email": "a<b>@acme.test"})

    assert bad.status_code == 422
    listed = await api.call("GET", "/members", ADAM)
    assert {m["id"]: m["email"] for m in listed.json()}["nina"] == "nina@acme.test"


async def test_an_internationalised_address_is_kept_as_given(api: Api) -> None:
    r = await api.call("PUT", "/members/nina", ADAM, json={**NINA, "email": "Nïna@Exämple.test"})

    assert r.status_code == 200, r.text
    assert r.json()["email"] == "Nïna@Exämple.test"
