"""The request body limit, checked before any route reads a byte of it."""

from __future__ import annotations

import asyncio
import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

DRAIN_BYTES = 16 * 1024 * 1024
"""At most this much of a refused body is read and thrown away before the 413 goes out."""
DRAIN_SECONDS = 10.0
"""And for at most this long: a client that trickles its body is answered (and cut) after it."""
BODY_SECONDS = 30.0
"""A body still arriving after this long is refused with 408 and the connection closed: a client
that stops sending cannot hold a connection (and its worker) forever."""


def _header(scope: Scope, wanted: bytes) -> bytes | None:
    for name, value in scope.get("headers", ()):
        if name == wanted:
            return bytes(value)
    return None


def _declared_length(scope: Scope) -> int | None:
    value = _header(scope, b"content-length")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def _waits_for_continue(scope: Scope) -> bool:
    """The client sent `Expect: 100-continue`: it sends no body until asked, so none is read."""
    value = _header(scope, b"expect")
    return value is not None and value.strip().lower() == b"100-continue"


class BodyLimit:
    """Refuse (413) a body over `limit` bytes, whether its Content-Length says so or it streams in.

    The body is read whole before the app runs (it is small by construction) and replayed to it;
    after that the app's `receive` is the server's own, so disconnects still reach streams.

    A refused body is read to its end (up to `drain_bytes`, for up to `drain_seconds`) and thrown
    away before the 413 is sent. A client that writes its whole body before it reads the answer
    then gets the answer: closing a socket with unread data makes the kernel reset the
    connection, and the client would see a reset instead of 413. A body declared larger than
    `drain_bytes`, or one whose client waits for `100 Continue`, is refused without reading it.
    """

    def __init__(
        self,
        app: ASGIApp,
        limit: int,
        *,
        drain_bytes: int = DRAIN_BYTES,
        drain_seconds: float = DRAIN_SECONDS,
        body_seconds: float = BODY_SECONDS,
    ) -> None:
        self.app = app
        self.limit = limit
        self.body_seconds = body_seconds
        self.drain_bytes = drain_bytes
        self.drain_seconds = drain_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _declared_length(scope)
        if declared is not None and declared > self.limit:
            drained = declared <= self.drain_bytes and await self._drain(scope, receive, 0)
            await self._refuse(send, keep_alive=drained)
            return
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.body_seconds):
                while True:
                    message = await receive()
                    if message["type"] != "http.request":
                        return  # the client left before sending its body: nobody to answer
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > self.limit:
                        more = message.get("more_body", False)
                        drained = not more or await self._drain(scope, receive, size)
                        await self._refuse(send, keep_alive=drained)
                        return
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            await self._answer(
                send, 408, "request_timeout",
                f"the body did not arrive within {self.body_seconds:g} s", keep_alive=False,
            )  # fmt: skip
            return
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _drain(self, scope: Scope, receive: Receive, received: int) -> bool:
        """Read and drop the rest of the body; whether it ended within the bounds.

        `received` bytes of it were read already. A client that left is as good as drained:
        there is nothing unread to reset the connection with, and nobody to answer.
        """
        if _waits_for_continue(scope):
            return False
        try:
            async with asyncio.timeout(self.drain_seconds):
                while received <= self.drain_bytes:
                    message = await receive()
                    if message["type"] != "http.request" or not message.get("more_body", False):
                        return True
                    received += len(message.get("body", b""))
        except TimeoutError:
            pass
        return False

    async def _refuse(self, send: Send, *, keep_alive: bool) -> None:
        """413 in the API's error shape; the connection is closed unless the body was read whole
        (what is left of it would be read as the next request)."""
        detail = f"the body must be at most {self.limit} bytes"
        await self._answer(send, 413, "payload_too_large", detail, keep_alive=keep_alive)

    async def _answer(
        self, send: Send, status: int, code: str, detail: str, *, keep_alive: bool
    ) -> None:
        payload = json.dumps({"error": code, "detail": detail}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
        ]
        if not keep_alive:
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload, "more_body": False})
