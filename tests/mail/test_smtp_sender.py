"""The SMTP sender on its own, against real servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from handoff_core.notice import Notice, NoticeBody
from handoff_core.ports import WITHDRAWN
from handoff_mail import SmtpSender, SmtpSettings

if TYPE_CHECKING:
    from conftest import SilentServer, Sink, SinkServer

MakeSender = Callable[..., SmtpSender]
MakeNotice = Callable[..., Notice]


async def test_a_batch_arrives_once_each_with_headers_parts_and_message_id(
    smtp_server: SinkServer,
    sink: Sink,
    make_sender: MakeSender,
    make_notice: MakeNotice,
    notice_body: NoticeBody,
) -> None:
    sender = make_sender(smtp_server.port)
    batch = [make_notice(i) for i in range(12)]

    outcomes = await sender.send(batch)

    assert [(o.delivery_id, o.ok, o.error) for o in outcomes] == [
        (n.delivery_id, True, None) for n in batch
    ]
    assert sorted(sink.recipients()) == sorted(n.to_address for n in batch)
    assert Counter(sink.recipients()).most_common(1)[0][1] == 1
    for n in batch:
        (message,) = sink.to(n.to_address)
        assert message["Message-ID"] == n.message_id
        assert message["Subject"] == notice_body.subject
        assert message["From"].addresses[0].addr_spec == "handoff@acme.test"
        assert message["To"].addresses[0].display_name == n.to_name
        assert message["Date"] is not None
        assert message.get_content_type() == "multipart/alternative"
        plain = message.get_body(("plain",))
        html = message.get_body(("html",))
        assert plain is not None and html is not None
        assert plain.get_content() == notice_body.text
        assert html.get_content() == notice_body.html
    assert {mail_from for mail_from, _, _ in sink.accepted} == {"handoff@acme.test"}


async def test_a_withdrawn_notice_is_not_sent_and_says_so(
    smtp_server: SinkServer, sink: Sink, make_sender: MakeSender, make_notice: MakeNotice
) -> None:
    """`withdrawn` is asked as each notice is taken to be written (on a PIPELINING relay,
    behind the message before it): here it says yes from the sixth question on."""
    sender = make_sender(smtp_server.port, "?pool=1")
    batch = [make_notice(i) for i in range(12)]
    asked: list[str] = []

    def withdrawn(notice: Notice) -> bool:
        asked.append(notice.delivery_id)
        return len(asked) > 5

    outcomes = await sender.send(batch, withdrawn)

    assert asked == [n.delivery_id for n in batch]  # once each, in order
    assert [(o.ok, o.withdrawn) for o in outcomes] == [(True, False)] * 5 + [(False, True)] * 7
    assert {o.error for o in outcomes[5:]} == {WITHDRAWN}
    assert sorted(sink.recipients()) == sorted(n.to_address for n in batch[:5])


async def test_connections_are_reused_within_and_across_batches(
    smtp_server: SinkServer, sink: Sink, make_sender: MakeSender, make_notice: MakeNotice
) -> None:
    sender = make_sender(smtp_server.port, "?pool=3")

    first = await sender.send([make_notice(i) for i in range(20)])
    second = await sender.send([make_notice(i) for i in range(20, 40)])

    assert all(o.ok for o in [*first, *second])
    assert len(sink.accepted) == 40
    assert 1 <= sink.connections <= 3


async def test_the_pool_sends_in_parallel_up_to_its_size(
    smtp_server: SinkServer, sink: Sink, make_sender: MakeSender, make_notice: MakeNotice
) -> None:
    sender = make_sender(smtp_server.port, "?pool=4")

    outcomes = await sender.send([make_notice(i) for i in range(40)])

    assert all(o.ok for o in outcomes)
    assert sink.connections == 4


async def test_one_refused_address_is_permanent_and_the_others_still_go(
    smtp_server: SinkServer, sink: Sink, make_sender: MakeSender, make_notice: MakeNotice
) -> None:
    sink.refuse["senior2@acme.test"] = "550 5.1.1 No such user here"
    sender = make_sender(smtp_server.port, "?pool=2")
    batch = [make_notice(i) for i in range(5)]

    outcomes = {o.delivery_id: o for o in await sender.send(batch)}

    refused = outcomes["d2"]
    assert (refused.ok, refused.permanent) == (False, True)
    assert refused.error is not None and refused.error.startswith("550")
    assert all(outcomes[f"d{i}"].ok for i in (0, 1, 3, 4))
    assert sorted(sink.recipients()) == [f"senior{i}@acme.test" for i in (0, 1, 3, 4)]


async def test_451_on_rcpt_is_transient_and_a_later_send_succeeds(
    smtp_server: SinkServer, sink: Sink, make_sender: MakeSender, make_notice: MakeNotice
) -> None:
    sink.defer_rcpt = 3
    sender = make_sender(smtp_server.port)
    batch = [make_notice(i) for i in range(3)]

    first = await sender.send(batch)

    assert [(o.ok, o.permanent) for o in first] == [(False, False)] * 3
    assert all(o.error and o.error.startswith("451") for o in first)
    assert sink.accepted == []

    second = await sender.send(batch)

    assert all(o.ok for o in second)
    assert sorted(sink.recipients()) == sorted(n.to_address for n in batch)


async def test_451_on_data_is_transient_and_the_connection_stays_usable(
    smtp_server: SinkServer, sink: Sink, make_sender: MakeSender, make_notice: MakeNotice
) -> None:
    sink.defer_data = 1
    sender = make_sender(smtp_server.port, "?pool=1")

    outcomes = await sender.send([make_notice(i) for i in range(3)])

    assert [(o.ok, o.permanent) for o in outcomes] == [(False, False), (True, False), (True, False)]
    assert sink.recipients() == ["senior1@acme.test", "senior2@acme.test"]
    assert sink.connections == 1


async def test_nothing_listening_makes_every_outcome_transient(
    make_sender: MakeSender, make_notice: MakeNotice, unused_port: int
) -> None:
    sender = make_sender(unused_port, "?timeout=5")

    async with asyncio.timeout(20):
        outcomes = await sender.send([make_notice(i) for i in range(10)])

    assert [(o.ok, o.permanent) for o in outcomes] == [(False, False)] * 10
    assert all(o.error and "could not connect" in o.error for o in outcomes)


async def test_a_server_that_never_greets_times_out_as_transient(
    silent_server: SilentServer, make_sender: MakeSender, make_notice: MakeNotice
) -> None:
    sender = make_sender(silent_server.port, "?timeout=0.5&pool=2")

    async with asyncio.timeout(20):
        outcomes = await sender.send([make_notice(i) for i in range(6)])

    assert [(o.ok, o.permanent) for o in outcomes] == [(False, False)] * 6
    assert all(o.error and "timed out" in o.error for o in outcomes)
    assert silent_server.connections == 2  # one try per pooled connection, not one per notice


async def test_a_server_that_stops_answering_mid_session_times_out_as_transient(
    greeting_then_silent_server: SilentServer, make_sender: MakeSender, make_notice: MakeNotice
) -> None:
    sender = make_sender(greeting_then_silent_server.port, "?timeout=0.5&pool=2")

    async with asyncio.timeout(20):
        outcomes = await sender.send([make_notice(i) for i in range(6)])

    assert [(o.ok, o.permanent) for o in outcomes] == [(False, False)] * 6
    assert all(o.error and "timed out" in o.error for o in outcomes)
    # a fresh connection that hangs is not retried for every remaining notice
    assert greeting_then_silent_server.connections == 2


async def test_a_dropped_connection_is_transient_and_replaced(
    smtp_server: SinkServer, sink: Sink, make_sender: MakeSender, make_notice: MakeNotice
) -> None:
    sink.drop_on_data = {2}
    sender = make_sender(smtp_server.port, "?pool=1")

    outcomes = await sender.send([make_notice(i) for i in range(5)])

    assert [(o.ok, o.permanent) for o in outcomes] == [
        (True, False),
        (False, False),
        (True, False),
        (True, False),
        (True, False),
    ]
    assert sorted(sink.recipients()) == [f"senior{i}@acme.test" for i in (0, 2, 3, 4)]
    assert sink.connections == 2


async def test_a_pooled_connection_the_server_closed_is_replaced_before_the_next_batch(
    smtp_server: SinkServer, sink: Sink, make_sender: MakeSender, make_notice: MakeNotice
) -> None:
    sender = make_sender(smtp_server.port, "?pool=1")
    assert all(o.ok for o in await sender.send([make_notice(1)]))
    smtp_server.stop()  # the pooled connection dies with the server
    smtp_server.start()

    outcomes = await sender.send([make_notice(2)])

    assert [o.ok for o in outcomes] == [True]
    assert sink.recipients() == ["senior1@acme.test", "senior2@acme.test"]
    assert sink.connections == 2


async def test_close_ends_the_pool_and_a_later_send_reconnects(
    smtp_server: SinkServer, sink: Sink, make_sender: MakeSender, make_notice: MakeNotice
) -> None:
    sender = make_sender(smtp_server.port, "?pool=1")
    await sender.send([make_notice(1)])

    await sender.close()
    outcomes = await sender.send([make_notice(2)])

    assert [o.ok for o in outcomes] == [True]
    assert sink.connections == 2


async def test_an_unsendable_address_is_permanent_for_that_notice_only(
    smtp_server: SinkServer, sink: Sink, make_sender: MakeSender, make_notice: MakeNotice
) -> None:
    bad = make_notice(1, domain="acme.test>\r\nRCPT TO:<evil@x.test")
    sender = make_sender(smtp_server.port)

    outcomes = await sender.send([make_notice(0), bad, make_notice(2)])

    assert [(o.ok, o.permanent) for o in outcomes] == [(True, False), (False, True), (True, False)]
    assert sorted(sink.recipients()) == ["senior0@acme.test", "senior2@acme.test"]


async def test_an_empty_batch_opens_nothing(smtp_server: SinkServer, sink: Sink) -> None:
    sender = SmtpSender(SmtpSettings.from_url(f"smtp://127.0.0.1:{smtp_server.port}"))

    assert await sender.send([]) == []
    await sender.close()
    assert sink.connections == 0


async def test_a_relay_that_closes_after_each_message_costs_no_attempt_and_no_delay(
    smtp_server: SinkServer, sink: Sink, make_sender: MakeSender, make_notice: MakeNotice
) -> None:
    sink.close_after_message = True
    sender = make_sender(smtp_server.port, "?pool=2")
    batch = [make_notice(i) for i in range(8)]

    async with asyncio.timeout(20):
        first = await sender.send(batch[:6])
        second = await sender.send(batch[6:])  # the pooled connections were closed as well

    assert [(o.delivery_id, o.ok, o.error) for o in [*first, *second]] == [
        (n.delivery_id, True, None) for n in batch
    ]
    assert sink.per_recipient() == {n.to_address: 1 for n in batch}  # nothing was sent twice
    # One connection per message; a second batch's two workers may both connect while one of them
    # sends both notices (each on a new connection), leaving the other's connection to the pool.
    assert 8 <= sink.connections <= 9


async def test_a_relay_that_says_421_to_the_next_mail_from_costs_no_attempt(
    smtp_server: SinkServer, sink: Sink, make_sender: MakeSender, make_notice: MakeNotice
) -> None:
    sink.bye_on_next_mail = True
    sender = make_sender(smtp_server.port, "?pool=1")
    batch = [make_notice(i) for i in range(5)]

    async with asyncio.timeout(20):
        outcomes = await sender.send(batch)

    assert [(o.ok, o.error) for o in outcomes] == [(True, None)] * 5
    assert sorted(sink.recipients()) == sorted(n.to_address for n in batch)
    assert sink.connections == 5


async def test_a_new_connection_closed_at_mail_from_is_a_transient_failure_not_a_loop(
    smtp_server: SinkServer, sink: Sink, make_sender: MakeSender, make_notice: MakeNotice
) -> None:
    sink.drop_on_mail = True
    sender = make_sender(smtp_server.port, "?pool=2")

    async with asyncio.timeout(20):
        outcomes = await sender.send([make_notice(i) for i in range(6)])

    assert [(o.ok, o.permanent) for o in outcomes] == [(False, False)] * 6
    assert all(o.error for o in outcomes)
    assert sink.accepted == []
    assert sink.connections == 2  # one try per pooled connection, as for a server that hangs


def _shown(record: logging.LogRecord) -> str:
    """The line an operator reads with the default log format, which shows no `extra`."""
    return logging.Formatter("%(levelname)s %(name)s %(message)s").format(record)


async def test_a_failed_connect_is_logged_naming_the_server_and_the_error(
    make_sender: MakeSender,
    make_notice: MakeNotice,
    unused_port: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sender = make_sender(unused_port, "?timeout=5&pool=1")

    with caplog.at_level(logging.WARNING, logger="handoff.mail"):
        async with asyncio.timeout(20):
            (outcome,) = await sender.send([make_notice(0)])

    (record,) = [r for r in caplog.records if r.name == "handoff.mail"]
    assert outcome.error is not None
    error = outcome.error.removeprefix(f"could not connect to 127.0.0.1:{unused_port}: ")
    assert error != outcome.error and error  # the short error the delivery keeps
    assert _shown(record) == (
        f"WARNING handoff.mail smtp connect to 127.0.0.1:{unused_port} failed: {error}"
    )
    assert (record.smtp_server, record.error) == (f"127.0.0.1:{unused_port}", error)


async def test_a_server_that_never_greets_is_logged_as_timed_out(
    silent_server: SilentServer,
    make_sender: MakeSender,
    make_notice: MakeNotice,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sender = make_sender(silent_server.port, "?timeout=0.5&pool=1")

    with caplog.at_level(logging.WARNING, logger="handoff.mail"):
        async with asyncio.timeout(20):
            await sender.send([make_notice(0)])

    (record,) = [r for r in caplog.records if r.name == "handoff.mail"]
    assert record.getMessage().startswith(
        f"smtp connect to 127.0.0.1:{silent_server.port} failed: timed out"
    )
