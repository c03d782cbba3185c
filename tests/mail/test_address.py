"""The address check members are held to (email-validator, syntax only) and the wire form of an
address, chosen by what the SMTP server offers."""

from __future__ import annotations

import pytest

from handoff_core import ValidationError
from handoff_mail import check_address
from handoff_mail.address import wire_address


@pytest.mark.parametrize(
    "address",
    [
        "a<b>@acme.test",
        "a@b@acme.test",
        "a b@acme.test",
        '"quoted"@acme.test',
        "Bob <bob@acme.test>",
        "a..b@acme.test",
        "a@acme..test",
        "a@[10.0.0.1]",
        "a@host.invalid",
        "a@acme.test\r\nBcc: x@else.test",
        "x" * 65 + "@acme.test",
        "",
    ],
)
def test_what_cannot_be_sent_to_is_refused_naming_email(address: str) -> None:
    with pytest.raises(ValidationError) as refused:
        check_address(address)
    assert refused.value.field == "email"
    assert "cannot be sent to" in refused.value.detail


@pytest.mark.parametrize(
    "address",
    [
        "bob@acme.test",
        "o'neil+tag@acme.co.uk",
        "jösé@exämple.test",
        "Bob@ACME.test",
        "ops@mailhost",
    ],
)
def test_a_sendable_address_comes_back_as_given(address: str) -> None:
    assert check_address(f" {address} ") == address


@pytest.mark.parametrize(
    ("address", "smtputf8", "wire"),
    [
        ("bob@acme.test", False, "bob@acme.test"),
        ("bob@exämple.test", False, "bob@xn--exmple-cua.test"),
        ("bob@exämple.test", True, "bob@exämple.test"),
        ("jösé@exämple.test", True, "jösé@exämple.test"),
    ],
)
def test_the_wire_form_follows_what_the_server_offers(
    address: str, smtputf8: bool, wire: str
) -> None:
    assert wire_address(address, smtputf8=smtputf8) == wire


def test_a_non_ascii_local_part_without_smtputf8_says_why() -> None:
    with pytest.raises(ValueError, match=r"non-ASCII local part.*SMTPUTF8"):
        wire_address("jösé@acme.test", smtputf8=False)


@pytest.mark.parametrize("address", ["a:b@c.test", "list:a@c.test;", "@route:b@c.test"])
def test_an_address_a_relay_could_read_as_another_is_never_put_on_the_wire(address: str) -> None:
    """`a:b@c.test` reads as a group or a source route to SMTP libraries (aiosmtplib sends it to
    <b@c.test>): one that reached the store without the check at the edge is refused, not sent
    to someone else."""
    with pytest.raises(ValueError, match="not a single plain address"):
        wire_address(address, smtputf8=True)
