"""Internationalised addresses (SPEC §11), read at real aiosmtpd servers with and without SMTPUTF8:
as given when the relay offers SMTPUTF8, the domain in IDNA when it does not, and a clear
permanent failure when only SMTPUTF8 could carry the address."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs

from handoff_core.notice import Notice
from handoff_mail import SmtpSender, build_message

if TYPE_CHECKING:
    from conftest import SinkServer

MakeSender = Callable[..., SmtpSender]
MakeNotice = Callable[..., Notice]
StartServer = Callable[..., "SinkServer"]

IDN = "bob@exämple.test"
IDN_AS_IDNA = "bob@xn--exmple-cua.test"
UTF8_LOCAL = "jösé@acme.test"
BOTH = "jösé@exämple.test"


def _to(make_notice: MakeNotice, n: int, address: str) -> Notice:
    return attrs.evolve(make_notice(n), to_address=address, to_name="Jösé Ünal")


def _to_line(raw: bytes) -> bytes:
    return next(line for line in raw.split(b"\r\n") if line.startswith(b"To: "))


async def test_a_relay_with_smtputf8_gets_the_addresses_as_given(
    start_smtp_server: StartServer, make_sender: MakeSender, make_notice: MakeNotice
) -> None:
    server = start_smtp_server(enable_SMTPUTF8=True)
    sender = make_sender(server.port)
    batch = [_to(make_notice, 1, BOTH), _to(make_notice, 2, IDN), make_notice(3)]

    outcomes = await sender.send(batch)

    assert [(o.ok, o.error) for o in outcomes] == [(True, None)] * 3
    by_rcpt = {rcpts[0]: content for _, rcpts, content in server.sink.accepted}
    assert sorted(by_rcpt) == sorted([BOTH, IDN, "senior3@acme.test"])
    assert f"<{BOTH}>".encode() in _to_line(by_rcpt[BOTH])
    assert f"<{IDN}>".encode() in _to_line(by_rcpt[IDN])
    # SMTPUTF8 is asked for only where an address needs it
    options = sorted(("SMTPUTF8" in o) for o in server.sink.mail_options)
    assert options == [False, True, True]
    assert by_rcpt["senior3@acme.test"].isascii()


async def test_without_smtputf8_a_non_ascii_domain_goes_as_idna(
    start_smtp_server: StartServer, make_sender: MakeSender, make_notice: MakeNotice
) -> None:
    server = start_smtp_server(enable_SMTPUTF8=False)
    sender = make_sender(server.port)

    outcomes = await sender.send([_to(make_notice, 1, IDN)])

    assert [(o.ok, o.error) for o in outcomes] == [(True, None)]
    ((_, rcpts, content),) = server.sink.accepted
    assert rcpts == [IDN_AS_IDNA]
    assert f"<{IDN_AS_IDNA}>".encode() in _to_line(content)
    assert content.isascii()
    assert all("SMTPUTF8" not in o for o in server.sink.mail_options)


async def test_without_smtputf8_a_non_ascii_local_part_fails_permanently_and_says_why(
    start_smtp_server: StartServer, make_sender: MakeSender, make_notice: MakeNotice
) -> None:
    server = start_smtp_server(enable_SMTPUTF8=False)
    sender = make_sender(server.port, "?pool=1")
    batch = [make_notice(0), _to(make_notice, 1, UTF8_LOCAL), _to(make_notice, 2, BOTH)]

    outcomes = await sender.send(batch)

    assert outcomes[0].ok
    for refused in outcomes[1:]:
        assert (refused.ok, refused.permanent) == (False, True)
        assert refused.error is not None
        assert "non-ASCII local part" in refused.error and "SMTPUTF8" in refused.error
    assert server.sink.recipients() == ["senior0@acme.test"]


def test_a_message_built_alone_writes_idna_or_refuses_alike(make_notice: MakeNotice) -> None:
    idna = build_message(_to(make_notice, 1, IDN), "handoff@acme.test")
    utf8 = build_message(_to(make_notice, 1, UTF8_LOCAL), "handoff@acme.test", smtputf8=True)

    assert f"<{IDN_AS_IDNA}>".encode() in _to_line(idna)
    assert f"<{UTF8_LOCAL}>".encode() in _to_line(utf8)
