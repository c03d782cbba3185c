"""Which email addresses `MemberService.upsert` accepts: the core's own conservative check by
default, or the one the application passes in (handoff_app passes email-validator's)."""

from __future__ import annotations

import pytest
from tests.unit.stage import ACME, Stage

from handoff_core import ValidationError
from handoff_core.services.members import MemberService, check_address_shape

UNSENDABLE = [
    "a<b>@acme.test",
    "a@b@acme.test",
    "a b@acme.test",
    '"a b"@acme.test',
    "a..b@acme.test",
    ".a@acme.test",
    "a@acme..test",
    "a@-acme.test",
    "a@[10.0.0.1]",
    "a@acme.test,b@acme.test",
    "a@",
    "@acme.test",
    "x" * 65 + "@acme.test",
]


@pytest.mark.parametrize("address", UNSENDABLE)
async def test_an_address_nothing_could_send_to_is_refused_naming_email(
    stage: Stage, address: str
) -> None:
    refused = await stage.refused(
        lambda: stage.members.upsert(ACME, "bob", email=address, name="Bob", role="engineer"),
        ValidationError,
    )
    assert refused.field == "email"


@pytest.mark.parametrize(
    "address",
    ["bob@acme.test", "o'neil+escalations@acme.test", "jösé@exämple.test", "Bob@Acme.TEST", "x@mx"],
)
async def test_a_sendable_address_is_stored_as_given(stage: Stage, address: str) -> None:
    await stage.members.upsert(ACME, "bob", email=f"  {address} ", name="Bob", role="engineer")

    bob = await stage.members.get(ACME, "bob")
    assert bob is not None and bob.email == address


async def test_the_check_the_application_passes_in_decides(stage: Stage) -> None:
    def only_acme(address: str) -> str:
        if not address.endswith("@acme.test"):
            raise ValidationError("email", "must be an acme.test address")
        return address.lower()

    members = MemberService(stage.db, stage.clock, check_address=only_acme)

    refused = await stage.refused(
        lambda: members.upsert(ACME, "bob", email="bob@else.test", name="Bob", role="engineer"),
        ValidationError,
    )
    assert refused.field == "email" and "acme.test" in refused.detail
    stored = await members.upsert(ACME, "nia", email="Nia@acme.test", name="Nia", role="admin")
    assert stored.email == "nia@acme.test"
    nia = await members.get(ACME, "nia")
    assert nia is not None and nia.email == "nia@acme.test"


def test_the_default_check_returns_the_address_unchanged() -> None:
    assert check_address_shape("jösé@exämple.test") == "jösé@exämple.test"
