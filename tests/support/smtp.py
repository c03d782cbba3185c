"""SMTP servers on 127.0.0.1 for the tests: an aiosmtpd Controller around a handler of the test's
choosing, and a server that accepts connections and then hangs."""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

from aiosmtpd.controller import Controller
from tests.support.net import free_port

H = TypeVar("H")


class SmtpServer(Generic[H]):
    """`handler` behind an aiosmtpd Controller on 127.0.0.1, stoppable and startable again on its
    port (a server that goes away and comes back).

    Extra keyword arguments go to the Controller (`ssl_context`, `tls_context`, `authenticator`,
    ...), so the same sink can speak implicit TLS, STARTTLS or AUTH."""

    def __init__(self, handler: H, port: int | None = None, **controller: Any) -> None:
        self.port = port or free_port()
        self.sink = handler
        self._options = controller
        self._controller: Controller | None = None

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._controller = Controller(
            self.sink, hostname="127.0.0.1", port=self.port, **self._options
        )
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            controller, self._controller = self._controller, None
            controller.stop()


class SilentServer:
    """Accepts TCP connections and then says nothing (or, with `greet`, answers the greeting and
    EHLO and then nothing more): the SMTP server that hangs."""

    def __init__(self, *, greet: bool = False) -> None:
        self.greet = greet
        self.port = 0
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        if self.greet:
            writer.write(b"220 silent.test ESMTP\r\n")
            line = await reader.readline()
            if line.upper().startswith((b"EHLO", b"HELO")):
                writer.write(b"250 silent.test\r\n")
        while await reader.read(4096):  # read until the client gives up, never answer
            pass
        writer.close()

    async def stop(self) -> None:
        for writer in self._writers:
            writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
