"""Real SMTP servers on 127.0.0.1 for the mail tests: an aiosmtpd sink that can refuse, defer,
drop and hang, with or without PIPELINING offered, and a scripted server that accepts the
connection and then never answers.

The sink fixtures (`smtp_server`, `stopped_smtp_server`, `start_smtp_server`) are parametrised:
every test that uses one runs against a sink that offers PIPELINING and one that does not.
aiosmtpd never offers it itself, but reads commands line by line from its buffer, so a client's
pipelined group is answered in order as RFC 2920 asks.
"""

from __future__ import annotations

import asyncio
import email
import ssl
import subprocess
import threading
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from email.message import EmailMessage
from email.policy import default as default_policy
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP
from tests.support.net import free_port
from tests.support.smtp import SilentServer, SmtpServer

from handoff_core.notice import Notice, NoticeBody
from handoff_mail import SmtpSender, SmtpSettings


class Sink:
    """An aiosmtpd handler that keeps what it accepts and misbehaves on request.

    `refuse` maps an address to the reply its RCPT gets; `defer_rcpt` / `defer_data` answer
    451 to that many RCPT / DATA commands; `drop_on_data` holds the 1-based numbers of DATA
    commands on which the connection is cut instead of answered.

    Relays that close connections: `close_after_message` closes each connection right after it
    accepted a message (the 250 reaches the client, then the connection ends);
    `close_soon_after_message` closes it a moment later, after answering the commands that were
    already read behind the message (aiosmtpd's read-ahead: a pipelined MAIL FROM, RCPT TO and
    DATA get their replies, 354 included, before the close);
    `bye_on_next_mail` answers 421 and closes when a connection that already carried a message
    starts another; `drop_on_mail` cuts every connection at its first MAIL FROM.

    Counted over all connections from 1: `refuse_mail[n]` is the reply to the n-th MAIL FROM,
    `refuse_data_command[n]` the reply to the n-th DATA command that has a recipient (instead of
    354), `refuse_message[n]` the reply to the n-th message once its data is in; `hang_on_mail`
    and `hang_on_data_command` hold the numbers of the MAIL FROM / DATA commands that are never
    answered (the server waits until the client leaves), `hang_on_message` those of the messages
    whose data is read and never answered; `close_after_refusing_mail` closes the
    connection once a `refuse_mail` reply is out. `data_without_rcpt` makes DATA answer 354 even
    when no recipient was accepted (what a relay should never do); a message sent then is kept
    with the recipient `nobody@sink.invalid`; `hang_on_data_without_rcpt` leaves such a DATA
    unanswered instead. `shut_after` (a count of accepted messages) closes
    the connection that carried that message once it is answered, and every new connection as
    soon as it is made: a relay that goes away.

    `pipelining` adds PIPELINING to the EHLO reply. `reads` keeps every chunk the server read
    from a socket, in order: a pipelined group arrives in one.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.accepted: list[tuple[str, list[str], bytes]] = []
        self.connections = 0
        self.refuse: dict[str, str] = {}
        self.defer_rcpt = 0
        self.defer_data = 0
        self.drop_on_data: set[int] = set()
        self.data_commands = 0
        self.close_after_message = False
        self.close_soon_after_message = False
        self.hang_on_message: set[int] = set()
        self.bye_on_next_mail = False
        self.drop_on_mail = False
        self.mail_options: list[list[str]] = []
        self.pipelining = False
        self.refuse_mail: dict[int, str] = {}
        self.refuse_data_command: dict[int, str] = {}
        self.refuse_message: dict[int, str] = {}
        self.hang_on_mail: set[int] = set()
        self.hang_on_data_command: set[int] = set()
        self.data_without_rcpt = False
        self.hang_on_data_without_rcpt = False
        self.close_after_refusing_mail = False
        self.shut_after: int | None = None
        self.shut = False
        self.mail_commands = 0
        self.data_starts = 0
        self.reads: list[bytes] = []

    async def handle_EHLO(
        self, server: object, session: object, envelope: object, hostname: str, responses: list[str]
    ) -> list[str]:
        with self._lock:
            self.connections += 1
        session.host_name = hostname  # type: ignore[attr-defined]
        if self.pipelining:  # before the last line, "250 HELP"
            return [*responses[:-1], "250-PIPELINING", responses[-1]]
        return responses

    async def handle_MAIL(
        self,
        server: object,
        session: object,
        envelope: object,
        address: str,
        mail_options: list[str],
    ) -> str:
        if self.drop_on_mail:
            server.transport.close()  # type: ignore[attr-defined]
            return "250 OK"  # never reaches the client
        if self.bye_on_next_mail and getattr(session, "carried", 0) > 0:
            asyncio.get_running_loop().call_soon(server.transport.close)  # type: ignore[attr-defined]
            return "421 4.4.2 relay.test closing: one message per connection"
        with self._lock:
            self.mail_commands += 1
            number = self.mail_commands
        if number in self.hang_on_mail:
            await asyncio.Event().wait()  # cancelled by aiosmtpd when the client leaves
        if number in self.refuse_mail:
            if self.close_after_refusing_mail:
                asyncio.get_running_loop().call_soon(server.transport.close)  # type: ignore[attr-defined]
            return self.refuse_mail[number]
        with self._lock:
            self.mail_options.append(list(mail_options))
        envelope.mail_from = address  # type: ignore[attr-defined]
        envelope.mail_options.extend(mail_options)  # type: ignore[attr-defined]
        return "250 OK"

    async def handle_RCPT(
        self, server: object, session: object, envelope: object, address: str, options: object
    ) -> str:
        with self._lock:
            if address in self.refuse:
                return self.refuse[address]
            if self.defer_rcpt > 0:
                self.defer_rcpt -= 1
                return "451 4.3.0 Mailbox busy, try again later"
        envelope.rcpt_tos.append(address)  # type: ignore[attr-defined]
        return "250 OK"

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        with self._lock:
            self.data_commands += 1
            hang = self.data_commands in self.hang_on_message
        if hang:
            await asyncio.Event().wait()  # cancelled by aiosmtpd when the client leaves
        with self._lock:
            if self.data_commands in self.drop_on_data:
                server.transport.close()  # type: ignore[attr-defined]
                return "250 OK"  # never reaches the client: the connection is gone
            if self.defer_data > 0:
                self.defer_data -= 1
                return "451 4.3.0 Queue full, try again later"
            if self.data_commands in self.refuse_message:
                return self.refuse_message[self.data_commands]
            self.accepted.append(
                (
                    envelope.mail_from,  # type: ignore[attr-defined]
                    list(envelope.rcpt_tos),  # type: ignore[attr-defined]
                    bytes(envelope.original_content),  # type: ignore[attr-defined]
                )
            )
            if self.shut_after is not None and len(self.accepted) >= self.shut_after:
                self.shut = True
        session.carried = getattr(session, "carried", 0) + 1  # type: ignore[attr-defined]
        if self.close_after_message or self.shut:
            session.hang_up = True  # type: ignore[attr-defined]  # SinkSMTP, once the 250 is out
        elif self.close_soon_after_message:
            asyncio.get_running_loop().call_soon(server.transport.close)  # type: ignore[attr-defined]
        return "250 2.0.0 Message accepted"

    # Plain methods, not properties: aiosmtpd runs inspect.getmembers() on the handler for every
    # connection, which would evaluate a property (and parse every message) each time.
    def messages(self) -> list[EmailMessage]:
        with self._lock:
            raw = [content for _, _, content in self.accepted]
        # Stored the way a mail store keeps it: with local line endings.
        return [
            email.message_from_bytes(r.replace(b"\r\n", b"\n"), policy=default_policy) for r in raw
        ]

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages() if address in str(m["To"])]

    def recipients(self) -> list[str]:
        with self._lock:
            return [r for _, rcpts, _ in self.accepted for r in rcpts]

    def per_recipient(self) -> dict[str, int]:
        """How many messages each recipient got."""
        return dict(Counter(self.recipients()))

    def groups(self) -> list[bytes]:
        """The socket reads that carried a MAIL FROM, each as it was read."""
        with self._lock:
            return [chunk for chunk in self.reads if b"MAIL FROM:" in chunk]

    # Called by SinkSMTP, not hooks (aiosmtpd looks for hooks by their handle_ prefix).
    def read(self, data: bytes) -> None:
        with self._lock:
            self.reads.append(bytes(data))

    def data_command_reply(self) -> str | None:
        with self._lock:
            self.data_starts += 1
            return self.refuse_data_command.get(self.data_starts)

    def data_command_hangs(self) -> bool:
        with self._lock:
            return self.data_starts in self.hang_on_data_command


class SinkSMTP(SMTP):
    """aiosmtpd's SMTP with what its hooks cannot do: record each socket read, and refuse or
    never answer a DATA command (aiosmtpd answers 354 without asking the handler)."""

    event_handler: Sink

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if self.event_handler.shut:
            transport.close()

    def data_received(self, data: bytes) -> None:
        self.event_handler.read(data)
        super().data_received(data)

    async def smtp_DATA(self, arg: str) -> None:
        sink = self.event_handler
        envelope = self.envelope
        if envelope is not None and envelope.mail_from and not arg:
            if not envelope.rcpt_tos and sink.hang_on_data_without_rcpt:
                await asyncio.Event().wait()  # cancelled by aiosmtpd when the client leaves
            if not envelope.rcpt_tos and sink.data_without_rcpt:
                envelope.rcpt_tos.append("nobody@sink.invalid")
            elif envelope.rcpt_tos:
                reply = sink.data_command_reply()
                if sink.data_command_hangs():
                    await asyncio.Event().wait()  # cancelled by aiosmtpd when the client leaves
                if reply is not None:
                    await self.push(reply)
                    return
        await super().smtp_DATA(arg)
        if getattr(self.session, "hang_up", False) and self.transport is not None:
            # The 250 is written; the relay reads nothing after it, as one that closes after
            # each message does (aiosmtpd would go on with commands already in its buffer).
            self.transport.close()


class SinkController(Controller):
    def factory(self) -> SMTP:
        return SinkSMTP(self.handler, **self.SMTP_kwargs)


class SinkServer(SmtpServer[Sink]):
    """A Sink on 127.0.0.1, offering PIPELINING if `pipelining`; Controller options (TLS, AUTH)
    as keyword arguments."""

    def __init__(
        self, port: int | None = None, *, pipelining: bool = False, **controller: Any
    ) -> None:
        super().__init__(Sink(), port, **controller)
        self.sink.pipelining = pipelining

    def start(self) -> None:
        self._controller = SinkController(
            self.sink, hostname="127.0.0.1", port=self.port, **self._options
        )
        self._controller.start()


@pytest.fixture(params=["plain", "pipelining"])
def pipelining(request: pytest.FixtureRequest) -> bool:
    """Whether the sink offers PIPELINING: every test using a sink runs both ways."""
    return bool(request.param == "pipelining")


@pytest.fixture
def smtp_server(pipelining: bool) -> Iterator[SinkServer]:
    server = SinkServer(pipelining=pipelining)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def stopped_smtp_server(pipelining: bool) -> Iterator[SinkServer]:
    """A sink with its port chosen but not listening yet: start it when the test says."""
    server = SinkServer(pipelining=pipelining)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def unused_port() -> int:
    return free_port()


@pytest.fixture
def start_smtp_server(pipelining: bool) -> Iterator[Callable[..., SinkServer]]:
    """Start sinks with Controller options of the test's choosing; all stopped at the end."""
    started: list[SinkServer] = []

    def start(**controller: Any) -> SinkServer:
        server = SinkServer(pipelining=pipelining, **controller)
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def server_tls(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    """A server-side TLS context with a throwaway self-signed certificate for 127.0.0.1."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


@pytest.fixture
def sink(smtp_server: SinkServer) -> Sink:
    return smtp_server.sink


@pytest.fixture
async def silent_server() -> AsyncIterator[SilentServer]:
    async with SilentServer() as server:
        yield server


@pytest.fixture
async def greeting_then_silent_server() -> AsyncIterator[SilentServer]:
    async with SilentServer(greet=True) as server:
        yield server


BODY = NoticeBody(
    subject="Escalation: VPN won't connect after Win update",
    text="Alice escalated a session.\n\nProblem: VPN won't connect after Win update\n",
    html="<p>Alice escalated a session.</p><p><strong>Problem:</strong> VPN won't connect</p>",
)


def _notice(n: int, *, domain: str = "acme.test", body: NoticeBody = BODY) -> Notice:
    return Notice(
        delivery_id=f"d{n}",
        message_id=f"<d{n}@handoff>",
        to_address=f"senior{n}@{domain}",
        to_name=f"Senior {n}",
        body=body,
    )


MakeNotice = Callable[..., Notice]


@pytest.fixture
def notice_body() -> NoticeBody:
    return BODY


@pytest.fixture
def make_notice() -> MakeNotice:
    """Notice n goes to senior{n}@acme.test as delivery d{n}, Message-ID <d{n}@handoff>."""
    return _notice


@pytest.fixture
async def make_sender() -> AsyncIterator[Callable[..., SmtpSender]]:
    """SmtpSenders for a port, their pools closed at the end of the test."""
    made: list[SmtpSender] = []

    def make(
        port: int, query: str = "", mail_from: str = "Handoff <handoff@acme.test>"
    ) -> SmtpSender:
        settings = SmtpSettings.from_url(f"smtp://127.0.0.1:{port}{query}", mail_from=mail_from)
        sender = SmtpSender(settings)
        made.append(sender)
        return sender

    yield make
    await asyncio.gather(*(sender.close() for sender in made))
