"""Real SMTP servers on 127.0.0.1 for the mail tests: an aiosmtpd sink that can refuse, defer
and drop, and a scripted server that accepts the connection and then never answers."""

from __future__ import annotations

import asyncio
import email
import ssl
import subprocess
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from email.message import EmailMessage
from email.policy import default as default_policy
from typing import Any

import pytest
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
    `bye_on_next_mail` answers 421 and closes when a connection that already carried a message
    starts another; `drop_on_mail` cuts every connection at its first MAIL FROM.
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
        self.bye_on_next_mail = False
        self.drop_on_mail = False
        self.mail_options: list[list[str]] = []

    async def handle_EHLO(
        self, server: object, session: object, envelope: object, hostname: str, responses: list[str]
    ) -> list[str]:
        with self._lock:
            self.connections += 1
        session.host_name = hostname  # type: ignore[attr-defined]
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
            if self.data_commands in self.drop_on_data:
                server.transport.close()  # type: ignore[attr-defined]
                return "250 OK"  # never reaches the client: the connection is gone
            if self.defer_data > 0:
                self.defer_data -= 1
                return "451 4.3.0 Queue full, try again later"
            self.accepted.append(
                (
                    envelope.mail_from,  # type: ignore[attr-defined]
                    list(envelope.rcpt_tos),  # type: ignore[attr-defined]
                    bytes(envelope.original_content),  # type: ignore[attr-defined]
                )
            )
        session.carried = getattr(session, "carried", 0) + 1  # type: ignore[attr-defined]
        if self.close_after_message:
            # Runs once the reply below is written: the client gets its 250, then the close.
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


class SinkServer(SmtpServer[Sink]):
    """A Sink on 127.0.0.1; Controller options (TLS, AUTH) as keyword arguments."""

    def __init__(self, port: int | None = None, **controller: Any) -> None:
        super().__init__(Sink(), port, **controller)


@pytest.fixture
def smtp_server() -> Iterator[SinkServer]:
    server = SinkServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def stopped_smtp_server() -> Iterator[SinkServer]:
    """A sink with its port chosen but not listening yet: start it when the test says."""
    server = SinkServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def unused_port() -> int:
    return free_port()


@pytest.fixture
def start_smtp_server() -> Iterator[Callable[..., SinkServer]]:
    """Start sinks with Controller options of the test's choosing; all stopped at the end."""
    started: list[SinkServer] = []

    def start(**controller: Any) -> SinkServer:
        server = SinkServer(**controller)
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
