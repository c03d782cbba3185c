"""A real webhook receiver for the tests: a Starlette app on 127.0.0.1 that keeps every request
it gets and answers as scripted per path (a status, or hang until released)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

from attrs import define, field
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from tests.e2e.servers import serving

HANG = -1


@define
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@define
class Receiver:
    """`script[path]` is the list of answers to give, in order (the last repeats; HANG waits
    for `release`); paths without a script answer 200. `base_url` is set while it serves."""

    script: dict[str, list[int]] = field(factory=dict)
    received: dict[str, list[Received]] = field(factory=lambda: defaultdict(list))
    release: asyncio.Event = field(factory=asyncio.Event)
    base_url: str = ""

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path}"

    def got(self, path: str) -> list[Received]:
        return list(self.received.get(path, []))

    async def _handle(self, request: Request) -> Response:
        path = request.path_params["path"]
        self.received[path].append(
            Received(path, {k.lower(): v for k, v in request.headers.items()}, await request.body())
        )
        answers = self.script.get(path, [200])
        status = answers.pop(0) if len(answers) > 1 else answers[0]
        if status == HANG:
            await self.release.wait()
            status = 200
        return Response(status_code=status)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/{path:path}", self._handle, methods=["POST"])])


@contextlib.asynccontextmanager
async def receiving(receiver: Receiver | None = None) -> AsyncIterator[Receiver]:
    """Serve a receiver on 127.0.0.1 for the block."""
    receiver = receiver or Receiver()
    async with serving(receiver.app()) as base_url:
        receiver.base_url = base_url
        try:
            yield receiver
        finally:
            receiver.release.set()  # let hung requests go, so the server can stop
