"""Open streams end cleanly when the server stops.

On shutdown the stream's response returns without its last (empty) body message: the server
then logs "ASGI callable returned without completing response" once per open stream. This
middleware finishes such a response, so a Ctrl-C with streams open stops quietly.
"""

from __future__ import annotations

import contextlib

from starlette.types import ASGIApp, Message, Receive, Scope, Send

STREAM_SUFFIX = "/escalations/stream"


class EndStreams:
    """Sends the closing body message of a stream response that returned without it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).endswith(STREAM_SUFFIX):
            await self.app(scope, receive, send)
            return
        started = ended = False

        async def watched(message: Message) -> None:
            nonlocal started, ended
            if message["type"] == "http.response.start":
                started = True
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                ended = True
            await send(message)

        await self.app(scope, receive, watched)
        if started and not ended:
            with contextlib.suppress(OSError):  # the client may be gone already
                await send({"type": "http.response.body", "body": b"", "more_body": False})
