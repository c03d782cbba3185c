"""A real uvicorn on 127.0.0.1 (in the test loop or a thread of its own), and an SSE reader."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any, TypeVar

import httpx
import uvicorn
from attrs import define, field
from starlette.types import ASGIApp

T = TypeVar("T")


def _bound_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def _config(app: ASGIApp) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        log_config=None,
        access_log=True,
        lifespan="on",
        timeout_graceful_shutdown=2,
        ws="none",
    )


def bound_socket() -> socket.socket:
    """A socket bound to a free port of 127.0.0.1, for a server whose URL must be known first."""
    return _bound_socket()


@contextlib.asynccontextmanager
async def serving(app: ASGIApp, sock: socket.socket | None = None) -> AsyncIterator[str]:
    """Serve `app` from this event loop (on `sock` if given); yields the base URL and stops the
    server at exit."""
    sock = sock or _bound_socket()
    server = uvicorn.Server(_config(app))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(500):
            if server.started or task.done():
                break
            await asyncio.sleep(0.01)
        if not server.started:
            raise RuntimeError("uvicorn did not start")
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=10)
        sock.close()


@define
class ThreadedServer:
    """uvicorn in a thread with its own event loop, for synchronous callers (Schemathesis)."""

    app: ASGIApp
    base_url: str = ""
    loop: asyncio.AbstractEventLoop | None = None
    _server: uvicorn.Server | None = None
    _thread: threading.Thread | None = None
    _ready: threading.Event = field(factory=threading.Event)

    def start(self) -> None:
        sock = _bound_socket()
        self.base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self._server = uvicorn.Server(_config(self.app))

        def run() -> None:
            self.loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self.loop)
            self._ready.set()
            assert self._server is not None
            self.loop.run_until_complete(self._server.serve(sockets=[sock]))
            self.loop.close()
            sock.close()

        self._thread = threading.Thread(target=run, name="e2e-uvicorn", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        for _ in range(1000):
            if self._server.started:
                return
            threading.Event().wait(0.01)
        raise RuntimeError("uvicorn did not start")

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine in the server's loop (where its services live) and wait for it."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=15)


@contextlib.contextmanager
def threaded(app: ASGIApp) -> Iterator[ThreadedServer]:
    server = ThreadedServer(app)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@define
class Sse:
    """One server-sent event (or a comment, when `comment` is set)."""

    event: str | None = None
    id: str | None = None
    data: str = ""
    comment: str | None = None

    def json(self) -> Any:
        return json.loads(self.data)


class EventStream:
    """Reads an open text/event-stream response in the background; `next` waits, bounded."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.ready = Sse()
        self._queue: asyncio.Queue[Sse] = asyncio.Queue()
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        current, has_data = Sse(), False
        async for line in self.response.aiter_lines():
            if line == "":
                if has_data:  # as EventSource does: an event without data is not dispatched
                    await self._queue.put(current)
                current, has_data = Sse(), False
                continue
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "":
                await self._queue.put(Sse(comment=value))
            elif name == "event":
                current.event = value
            elif name == "id":
                current.id = value
            elif name == "data":
                current.data = f"{current.data}\n{value}" if has_data else value
                has_data = True

    async def next(self, timeout: float = 10.0, *, comments: bool = False) -> Sse:
        """The next event (skipping comments unless asked for); fails after `timeout` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            left = deadline - loop.time()
            if left <= 0:
                raise AssertionError(f"no event within {timeout} s")
            try:
                item = await asyncio.wait_for(self._queue.get(), timeout=left)
            except TimeoutError:
                raise AssertionError(f"no event within {timeout} s") from None
            if item.comment is None or comments:
                return item

    async def events_until(self, event_type: str, timeout: float = 10.0) -> list[Sse]:
        """Every event up to and including the first of `event_type`."""
        seen: list[Sse] = []
        while True:
            item = await self.next(timeout)
            seen.append(item)
            if item.event == event_type:
                return seen

    async def ended(self) -> None:
        """Return once the server has ended the response (nothing more will come)."""
        with contextlib.suppress(httpx.HTTPError):
            await asyncio.shield(self._task)

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
            await self._task


@contextlib.asynccontextmanager
async def open_stream(
    base_url: str,
    token: str | None = None,
    *,
    query_token: bool = False,
    last_event_id: str | None = None,
) -> AsyncIterator[EventStream]:
    """Connect to the stream and wait for its first event, `stream.ready` (kept as `.ready`): from
    then on the member is online."""
    headers: dict[str, str] = {}
    params: dict[str, str] = {}
    if token is not None and query_token:
        params["access_token"] = token
    elif token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    async with (
        httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(10, read=None)) as client,
        client.stream("GET", "/api/v1/escalations/stream", headers=headers, params=params) as r,
    ):
        assert r.status_code == 200, (await r.aread()).decode()
        assert r.headers["content-type"].startswith("text/event-stream")
        stream = EventStream(r)
        try:
            first = await stream.next(comments=True)
            assert first.event == "stream.ready", first
            stream.ready = first
            yield stream
        finally:
            await stream.close()
