"""SMTP PIPELINING: one write for MAIL FROM, RCPT TO and DATA where the server offers it, and the
same outcomes as one command at a time, whichever reply refuses. Every test runs against a sink
that offers PIPELINING and one that does not (the `pipelining` fixture)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

import aiosmtplib
import attrs
import pytest

from handoff_core.notice import Notice
from handoff_mail import SmtpSender
from handoff_mail.pipelining import Pipeline, data_block, envelope_command

if TYPE_CHECKING:
    from conftest import Sink, SinkServer

MakeSender = Callable[..., SmtpSender]
MakeNotice = Callable[..., Notice]


async def test_a_server_offering_pipelining_reads_one_write_per_message(
    smtp_server: SinkServer,
    sink: Sink,
    make_sender: MakeSender,
    make_notice: MakeNotice,
    pipelining: bool,
) -> None:
    sender = make_sender(smtp_server.port, "?pool=1")
    batch = [make_notice(i) for i in range(4)]

    outcomes = await sender.send(batch)

    assert [(o.ok, o.error) for o in outcomes] == [(True, None)] * 4
    assert sink.per_recipient() == {n.to_address: 1 for n in batch}
    groups = sink.groups()
    assert len(groups) == 4
    for i, (n, group) in enumerate(zip(batch, groups, strict=True)):
        if pipelining:
            # MAIL FROM, RCPT TO and DATA together: the first alone, each later one behind the
            # message before it, in the write that carries that message's data
            message, end, commands = group.rpartition(b"\r\n.\r\n")
            assert (bool(end), message.startswith(b"From: ")) == (i > 0, i > 0)
            lines = commands.split(b"\r\n")
            assert lines[0].startswith(b"MAIL FROM:<handoff@acme.test>")
            assert lines[1:] == [f"RCPT TO:<{n.to_address}>".encode(), b"DATA", b""]
        else:  # one command per write, each after the reply to the one before
            lines = group.split(b"\r\n")
            assert lines[0].startswith(b"MAIL FROM:<handoff@acme.test>")
            assert lines[1:] == [b""]
    if pipelining:  # the last message went alone, as nothing was left to follow it
        last = sink.reads[sink.reads.index(groups[-1]) + 1]
        assert last.endswith(b"\r\n.\r\n") and b"MAIL FROM:" not in last


@attrs.frozen
class Refusal:
    """What the sink does to notice 1 of 4, the outcome that notice gets, and how many
    connections the four take one command at a time and pipelined."""

    arrange: Callable[[Sink], object]
    permanent: bool
    error: str
    connections: tuple[int, int] = (1, 1)


REFUSALS = {
    "MAIL 5xx": Refusal(
        lambda s: s.refuse_mail.update({2: "550 5.7.1 Sender rejected"}),
        True,
        "550 5.7.1 Sender rejected",
    ),
    "MAIL 4xx": Refusal(
        lambda s: s.refuse_mail.update({2: "451 4.7.1 Greylisted, try again"}),
        False,
        "451 4.7.1 Greylisted, try again",
    ),
    "MAIL 5xx, then the relay hangs up": Refusal(
        lambda s: (
            s.refuse_mail.update({2: "554 5.7.1 Go away"}),
            setattr(s, "close_after_refusing_mail", True),
        ),
        True,
        "554 5.7.1 Go away",
        (2, 2),
    ),
    "MAIL answered with no reply code": Refusal(
        lambda s: s.refuse_mail.update({2: "hello there"}),
        False,
        "-1 Malformed SMTP response line: hello there",
        (2, 2),
    ),
    "MAIL answered with an overlong line": Refusal(
        lambda s: s.refuse_mail.update({2: "550 " + "x" * 9000}),
        False,
        "-1 Response too long",
        (2, 2),
    ),
    "RCPT 5xx": Refusal(
        lambda s: s.refuse.update({"senior1@acme.test": "550 5.1.1 No such user"}),
        True,
        "550 5.1.1 No such user",
    ),
    "RCPT 4xx": Refusal(
        lambda s: s.refuse.update({"senior1@acme.test": "450 4.2.1 Mailbox busy"}),
        False,
        "450 4.2.1 Mailbox busy",
    ),
    "RCPT 5xx on two lines": Refusal(
        lambda s: s.refuse.update({"senior1@acme.test": "550-5.1.1 No such user\r\n550 5.1.1 Bye"}),
        True,
        "550 5.1.1 No such user\n5.1.1 Bye",
    ),
    "RCPT 421": Refusal(  # the relay is going away: transient, and the connection ends
        lambda s: s.refuse.update({"senior1@acme.test": "421 4.3.2 Shutting down"}),
        False,
        "421 4.3.2 Shutting down",
        (2, 2),
    ),
    "DATA 5xx": Refusal(
        lambda s: s.refuse_data_command.update({2: "554 5.3.4 Not for you"}),
        True,
        "554 5.3.4 Not for you",
    ),
    "DATA 4xx": Refusal(
        lambda s: s.refuse_data_command.update({2: "451 4.3.0 Queue full"}),
        False,
        "451 4.3.0 Queue full",
    ),
    "message 5xx": Refusal(
        lambda s: s.refuse_message.update({2: "550 5.7.1 Content rejected"}),
        True,
        "550 5.7.1 Content rejected",
    ),
    "message 4xx": Refusal(
        lambda s: s.refuse_message.update({2: "452 4.3.1 Out of storage"}),
        False,
        "452 4.3.1 Out of storage",
    ),
    # One command at a time, RSET after the 421 finds this relay still there; pipelined, a 421
    # ends the connection wherever it comes.
    "message 421": Refusal(
        lambda s: s.refuse_message.update({2: "421 4.3.2 Closing"}),
        False,
        "421 4.3.2 Closing",
        (1, 2),
    ),
}


@pytest.mark.parametrize("case", list(REFUSALS))
async def test_a_refusal_belongs_to_its_notice_and_the_next_one_still_goes(
    case: str,
    smtp_server: SinkServer,
    sink: Sink,
    make_sender: MakeSender,
    make_notice: MakeNotice,
    pipelining: bool,
) -> None:
    refusal = REFUSALS[case]
    refusal.arrange(sink)
    sender = make_sender(smtp_server.port, "?pool=1")
    batch = [make_notice(i) for i in range(4)]

    async with asyncio.timeout(20):
        outcomes = await sender.send(batch)

    assert [(o.delivery_id, o.ok) for o in outcomes] == [
        ("d0", True),
        ("d1", False),
        ("d2", True),
        ("d3", True),
    ]
    assert (outcomes[1].permanent, outcomes[1].error) == (refusal.permanent, refusal.error)
    assert sink.per_recipient() == {f"senior{i}@acme.test": 1 for i in (0, 2, 3)}
    # 1: the next notice went on the same connection
    assert sink.connections == refusal.connections[pipelining]


async def test_data_answered_354_after_the_only_recipient_was_refused_sends_no_message(
    smtp_server: SinkServer,
    sink: Sink,
    make_sender: MakeSender,
    make_notice: MakeNotice,
    pipelining: bool,
) -> None:
    sink.refuse["senior1@acme.test"] = "550 5.1.1 No such user"
    sink.data_without_rcpt = True  # a relay that says 354 with no recipient to deliver to
    sender = make_sender(smtp_server.port, "?pool=1")
    batch = [make_notice(i) for i in range(4)]

    outcomes = await sender.send(batch)

    assert [(o.ok, o.permanent) for o in outcomes] == [
        (True, False),
        (False, True),
        (True, False),
        (True, False),
    ]
    assert outcomes[1].error == "550 5.1.1 No such user"
    # no empty (or any) message went to nobody; every other notice arrived once
    assert sink.per_recipient() == {f"senior{i}@acme.test": 1 for i in (0, 2, 3)}
    # pipelined, DATA was already sent: the transaction is abandoned by ending the connection;
    # one command at a time, DATA is never sent after the refusal
    assert sink.connections == (2 if pipelining else 1)


async def test_a_refusal_stays_the_notices_when_the_server_then_stops_answering(
    smtp_server: SinkServer,
    sink: Sink,
    make_sender: MakeSender,
    make_notice: MakeNotice,
    pipelining: bool,
) -> None:
    sink.refuse["senior1@acme.test"] = "550 5.1.1 No such user"
    sink.hang_on_data_without_rcpt = True
    sender = make_sender(smtp_server.port, "?pool=1&timeout=0.5")
    batch = [make_notice(i) for i in range(3)]

    async with asyncio.timeout(20):
        outcomes = await sender.send(batch)

    assert [(o.ok, o.permanent, o.error) for o in outcomes] == [
        (True, False, None),
        (False, True, "550 5.1.1 No such user"),
        (True, False, None),
    ]
    assert sink.per_recipient() == {"senior0@acme.test": 1, "senior2@acme.test": 1}
    # pipelined, the DATA that was never answered ends the connection; one command at a time,
    # no DATA follows the refusal
    assert sink.connections == (2 if pipelining else 1)


@pytest.mark.parametrize("hang", ["MAIL FROM", "DATA", "message"])
async def test_a_server_that_stops_answering_in_a_transaction_times_out_and_the_next_goes(
    hang: str,
    smtp_server: SinkServer,
    sink: Sink,
    make_sender: MakeSender,
    make_notice: MakeNotice,
) -> None:
    if hang == "MAIL FROM":  # it read the group and answers nothing
        sink.hang_on_mail = {2}
    elif hang == "DATA":  # it answers MAIL FROM and RCPT TO, then nothing
        sink.hang_on_data_command = {2}
    else:  # it reads the message and answers nothing; pipelined, notice 3's commands were
        # already written behind it: never answered, so not tried, and sent on the new connection
        sink.hang_on_message = {2}
    sender = make_sender(smtp_server.port, "?pool=1&timeout=0.5")
    batch = [make_notice(i) for i in range(4)]

    async with asyncio.timeout(20):
        outcomes = await sender.send(batch)

    assert [(o.ok, o.permanent) for o in outcomes] == [
        (True, False),
        (False, False),
        (True, False),
        (True, False),
    ]
    assert outcomes[1].error is not None and "timed out" in outcomes[1].error
    assert sink.per_recipient() == {f"senior{i}@acme.test": 1 for i in (0, 2, 3)}
    assert sink.connections == 2  # the hung connection ended; the next notice took a new one


async def test_a_relay_closing_after_each_message_gets_every_notice_once_on_one_connection_each(
    smtp_server: SinkServer, sink: Sink, make_sender: MakeSender, make_notice: MakeNotice
) -> None:
    sink.close_after_message = True
    sender = make_sender(smtp_server.port, "?pool=1")
    batch = [make_notice(i) for i in range(5)]

    async with asyncio.timeout(20):
        outcomes = await sender.send(batch)

    assert [(o.ok, o.error) for o in outcomes] == [(True, None)] * 5
    assert sink.per_recipient() == {n.to_address: 1 for n in batch}
    assert sink.connections == 5


async def test_a_relay_answering_past_a_message_then_closing_loses_and_repeats_nothing(
    smtp_server: SinkServer, sink: Sink, make_sender: MakeSender, make_notice: MakeNotice
) -> None:
    # Pipelined, the next notice's commands reach such a relay with the message before it, and
    # it answers them (354 too) before it closes: that notice's data meets a closed connection.
    # It failed for now, like any message cut off in its data, and goes again when retried.
    sink.close_soon_after_message = True
    sender = make_sender(smtp_server.port, "?pool=1")
    due = [make_notice(i) for i in range(6)]
    rounds = 0

    async with asyncio.timeout(20):
        while due and rounds < 6:
            outcomes = await sender.send(due)
            assert not any(o.permanent for o in outcomes)
            due = [n for n, o in zip(due, outcomes, strict=True) if not o.ok]
            rounds += 1

    assert due == []
    assert sink.per_recipient() == {f"senior{i}@acme.test": 1 for i in range(6)}


async def test_a_relay_that_goes_away_after_a_message_loses_no_notice(
    smtp_server: SinkServer, sink: Sink, make_sender: MakeSender, make_notice: MakeNotice
) -> None:
    sink.shut_after = 1  # closes the connection after the first message, and cuts new ones
    sender = make_sender(smtp_server.port, "?pool=1")
    batch = [make_notice(i) for i in range(3)]

    async with asyncio.timeout(20):
        outcomes = await sender.send(batch)

    assert [(o.ok, o.permanent) for o in outcomes] == [(True, False)] + [(False, False)] * 2
    assert all(o.error and "could not connect" in o.error for o in outcomes[1:])
    assert sink.per_recipient() == {"senior0@acme.test": 1}


async def test_dots_and_line_endings_in_a_body_arrive_as_written(
    smtp_server: SinkServer,
    sink: Sink,
    make_sender: MakeSender,
    make_notice: MakeNotice,
) -> None:
    text = ".\n..two dots\n.one dot\nbare\rcarriage return\nlast line, no break"
    notice = make_notice(1)
    notice = attrs.evolve(notice, body=attrs.evolve(notice.body, text=text))
    sender = make_sender(smtp_server.port)

    outcomes = await sender.send([notice, make_notice(2)])

    assert [o.ok for o in outcomes] == [True, True]
    (message,) = sink.to("senior1@acme.test")
    plain = message.get_body(("plain",))
    assert plain is not None
    # the text's lone CR went as a line break; each line starting with a dot got a second one
    assert plain.get_content() == text.replace("\r", "\n")
    assert b"\r\n\r\n..\r\n...two dots\r\n..one dot\r\nbare\r\n" in b"".join(sink.reads)
    assert sink.per_recipient() == {"senior1@acme.test": 1, "senior2@acme.test": 1}


def test_data_block_stuffs_dots_ends_lines_with_crlf_and_terminates() -> None:
    assert data_block(b"a\n.b\r\n..c\rd") == b"a\r\n..b\r\n...c\r\nd\r\n.\r\n"
    assert data_block(b".\r\n") == b"..\r\n.\r\n"
    assert data_block(b"x.y\r\n") == b"x.y\r\n.\r\n"
    assert data_block(b"") == b"\r\n.\r\n"


def test_envelope_commands_are_written_as_aiosmtplib_writes_them() -> None:
    assert (
        envelope_command(b"MAIL FROM:", "a@b.test", ["SIZE=10", "SMTPUTF8"], "utf-8")
        == b"MAIL FROM:<a@b.test> SIZE=10 SMTPUTF8\r\n"
    )
    assert envelope_command(b"RCPT TO:", "jösé@b.test", (), "utf-8") == (
        "RCPT TO:<jösé@b.test>\r\n".encode()
    )
    for bad in ["a b@b.test", "a\x7f@b.test", "a\x00@b.test", "jösé@b.test"]:
        with pytest.raises(ValueError):
            envelope_command(b"RCPT TO:", bad)  # ASCII: the last cannot be encoded


async def test_a_pipeline_reads_replies_in_order_and_gives_the_connection_back(
    smtp_server: SinkServer,
) -> None:
    conn = aiosmtplib.SMTP(hostname="127.0.0.1", port=smtp_server.port, timeout=5)
    await conn.connect()
    try:
        pipe = Pipeline(conn)
        pipe.write(b"NOOP\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nRSET\r\n")
        codes = [(await pipe.reply(5)).code for _ in range(4)]
        assert pipe.detach() is True

        assert codes == [250, 250, 250, 250]
        assert (await conn.noop()).code == 250  # aiosmtplib has its connection back
    finally:
        conn.close()


async def test_a_pipeline_on_a_closed_connection_says_so(smtp_server: SinkServer) -> None:
    conn = aiosmtplib.SMTP(hostname="127.0.0.1", port=smtp_server.port, timeout=5)
    await conn.connect()
    await conn.quit()

    pipe = Pipeline(conn)

    with pytest.raises(aiosmtplib.SMTPServerDisconnected):
        pipe.write(b"NOOP\r\n")
    with pytest.raises(aiosmtplib.SMTPServerDisconnected):
        await pipe.reply(5)
    assert pipe.detach() is False
