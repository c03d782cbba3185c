"""Addresses: which can be sent to at all (checked where members are put in), and the form each
takes on the wire (chosen per connection, by what the SMTP server offers).

The check at the edge is email-validator's syntax check (no DNS: members are often mirrored in
before their mailbox exists). The wire form follows RFC 6531: an internationalised address goes
as it is to a server that offers SMTPUTF8; to one that does not, a non-ASCII domain goes as IDNA
(punycode) and a non-ASCII local part cannot go at all.
"""

from __future__ import annotations

import re

from email_validator import EmailNotValidError, validate_email

from handoff_core.errors import ValidationError

_SPECIALS = '<>,;:"()[]\\'  # RFC 5322 specials; ':' would make a route or a group
_SPACE_OR_SPECIAL = re.compile(rf"[\s{re.escape(_SPECIALS)}]")


def check_address(address: str) -> str:
    """The address to store for a member: `address` as given, without surrounding spaces.

    Syntax only, with email-validator: no DNS lookup; names under `.test` and domains without a
    dot (an internal relay's `alice@mailhost`) are accepted; quoted local parts, IP literals and
    display names are not (they cannot be sent by this library). Non-ASCII addresses are
    accepted: they are sent with SMTPUTF8, or with an IDNA domain, when the message goes.

    Raises `ValidationError("email", why)` for anything else, e.g. `a<b>@acme.test` or
    `a@b@acme.test`.
    """
    text = address.strip()
    try:
        validate_email(
            text,
            check_deliverability=False,
            globally_deliverable=False,
            test_environment=True,
            allow_quoted_local=False,
            allow_domain_literal=False,
            allow_display_name=False,
            allow_empty_local=False,
            strict=True,  # the 64-octet limit on local parts, which relays enforce
        )
    except EmailNotValidError as exc:
        raise ValidationError("email", f"{text!r} cannot be sent to: {exc}") from None
    return text


def plain_address(address: str) -> str:
    """`address` if it is one plain `local@domain` that can sit in a header and an SMTP command.

    Raises ValueError for line breaks, control characters, spaces, brackets, commas, colons,
    quotes, or not exactly one `@`: anything that could smuggle a second header, recipient or
    command, or be read as another address.
    """
    if not address or not address.isprintable():
        raise ValueError(f"address {address!r} cannot be put in a message header")
    if _SPACE_OR_SPECIAL.search(address) or address.count("@") != 1:
        raise ValueError(f"address {address!r} is not a single plain address")
    local, _, domain = address.partition("@")
    if not local or not domain:
        raise ValueError(f"address {address!r} is not a single plain address")
    return address


def wire_address(address: str, *, smtputf8: bool) -> str:
    """The form of `address` the envelope and the To header carry.

    As given when it is ASCII, or when the server offers SMTPUTF8 (`smtputf8`); otherwise the
    domain in IDNA (`bob@xn--exmple-cua.test`). Raises ValueError when the address is not a
    plain address, when its domain is not a valid internationalised name, or when its local part
    is not ASCII and the server does not offer SMTPUTF8 (nothing else could carry it).
    """
    plain_address(address)
    if address.isascii() or smtputf8:
        return address
    local, _, domain = address.partition("@")
    if not local.isascii():
        raise ValueError(
            f"address {address!r} has a non-ASCII local part, and the mail server does not offer "
            "SMTPUTF8, which alone could carry it"
        )
    try:
        checked = validate_email(
            f"x@{domain}",
            check_deliverability=False,
            globally_deliverable=False,
            test_environment=True,
        )
    except EmailNotValidError as exc:
        raise ValueError(f"address {address!r} has a domain IDNA cannot encode: {exc}") from None
    return f"{local}@{checked.ascii_domain}"


def ascii_address(address: str) -> str:
    """`address` if it is a plain ASCII address (the sender's own); ValueError otherwise."""
    plain_address(address)
    if not address.isascii():
        raise ValueError(f"address {address!r} cannot be put in a message header")
    return address
