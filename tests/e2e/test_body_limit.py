"""A body over the limit is answered 413 over a real socket, even when the client writes all of it
before it reads a byte of the answer (as simple async clients do): never a connection reset."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from starlette.types import Receive, Scope, Send
from tests.e2e.conftest import make_settings, prepared
from tests.e2e.people import API, bearer
from tests.e2e.servers import serving

from handoff_app.http import create_app
from handoff_app.http.limits import BodyLimit
from handoff_app.settings import Settings

BIG = 3 * 1024 * 1024


@pytest.fixture
def limited(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
async def base_url(limited: Settings) -> AsyncIterator[str]:
    services = await prepared(limited)
    app: FastAPI = create_app(limited, services)
    try:
        async with serving(app) as base:
            yield base
    finally:
        await services.close()


def _port(base_url: str) -> int:
    return int(base_url.rsplit(":", 1)[1])


async def _post_whole_body_then_read(
    port: int, headers: dict[str, str], body: bytes, *, chunked: bool = False
) -> tuple[int, dict[str, str], bytes]:
    """Write the request line, headers and the whole body, and only then read the answer.

    The socket's send buffer is kept small, as on a busy host or a slow link, so the body is still
    being written when the server has seen the headers: the case that used to end in a reset.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 128 * 1024)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock)
    try:
        lines = [f"POST {API}/ai-sessions HTTP/1.1", "Host: handoff.test"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        if chunked:
            lines.append("Transfer-Encoding: chunked")
            step = 64 * 1024
            parts = [
                f"{len(body[i : i + step]):x}\r\n".encode() + body[i : i + step] + b"\r\n"
                for i in range(0, len(body), step)
            ]
            payload = b"".join(parts) + b"0\r\n\r\n"
        else:
            lines.append(f"Content-Length: {len(body)}")
            payload = body
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        for start in range(0, len(payload), 64 * 1024):
            writer.write(payload[start : start + 64 * 1024])
            await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        answer = {
            name.lower(): value.strip()
            for name, _, value in (line.partition(":") for line in header_lines if line)
        }
        content = await reader.readexactly(int(answer["content-length"]))
        return int(status_line.split()[1]), answer, content
    finally:
        writer.close()


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_ten_big_bodies_written_whole_before_reading_all_get_413(
    base_url: str, limited: Settings, chunked: bool
) -> None:
    headers = {**bearer(limited, "acme", "erin"), "Content-Type": "application/json"}
    body = b'{"problem_summary": "' + b"x" * BIG + b'"}'

    async with asyncio.timeout(60):
        answers = [
            await _post_whole_body_then_read(_port(base_url), headers, body, chunked=chunked)
            for _ in range(10)
        ]

    for status, answer, content in answers:
        assert status == 413
        assert answer["content-type"].startswith("application/json")
        assert json.loads(content)["error"] == "payload_too_large"


async def test_a_client_that_waits_for_100_continue_is_answered_without_sending_the_body(
    base_url: str, limited: Settings
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", _port(base_url))
    try:
        head = "\r\n".join(
            [
                f"POST {API}/ai-sessions HTTP/1.1",
                "Host: handoff.test",
                f"Authorization: {bearer(limited, 'acme', 'erin')['Authorization']}",
                "Content-Type: application/json",
                f"Content-Length: {BIG}",
                "Expect: 100-continue",
            ]
        )
        writer.write((head + "\r\n\r\n").encode())
        await writer.drain()
        async with asyncio.timeout(5):  # well under the 10 s a body is drained for at most
            status_line = await reader.readline()
    finally:
        writer.close()

    assert status_line.split()[1] == b"413"


async def test_after_a_refused_body_read_whole_the_connection_serves_the_next_request(
    base_url: str, limited: Settings
) -> None:
    auth = bearer(limited, "acme", "erin")["Authorization"]
    body = b"x" * (limited.body_limit_bytes + 1)
    reader, writer = await asyncio.open_connection("127.0.0.1", _port(base_url))
    try:
        writer.write(
            (
                f"POST {API}/ai-sessions HTTP/1.1\r\nHost: handoff.test\r\n"
                f"Authorization: {auth}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode()
            + body
            + f"GET {API}/members HTTP/1.1\r\nHost: handoff.test\r\n".encode()
            + f"Authorization: {auth}\r\n\r\n".encode()
        )
        await writer.drain()
        async with asyncio.timeout(10):
            statuses = []
            for _ in range(2):
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                statuses.append(int(lines[0].split()[1]))
                length = next(
                    int(line.split(":", 1)[1])
                    for line in lines
                    if line.lower().startswith("content-length")
                )
                await reader.readexactly(length)
    finally:
        writer.close()

    assert statuses == [413, 200]


async def _ok(scope: Scope, receive: Receive, send: Send) -> None:
    """An app that answers 200 to whatever reaches it (and starts and stops as uvicorn asks)."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def _status_after(port: int, head: bytes, body: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head + body)
        await writer.drain()
        async with asyncio.timeout(5):
            return (await reader.readline()).split()[1]
    finally:
        writer.close()


async def test_a_body_declared_larger_than_is_ever_drained_is_refused_at_once() -> None:
    limited = BodyLimit(_ok, limit=10, drain_bytes=1000, drain_seconds=60)
    async with serving(limited) as base:
        huge = b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000000\r\n\r\n"
        assert await _status_after(_port(base), huge, b"x" * 100) == b"413"


async def test_a_body_that_trickles_forever_is_drained_only_for_a_while() -> None:
    limited = BodyLimit(_ok, limit=10, drain_bytes=10**9, drain_seconds=0.3)
    async with serving(limited) as base:
        trickle = b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        assert await _status_after(_port(base), trickle, b"20\r\n" + b"x" * 32 + b"\r\n") == b"413"


async def test_a_body_that_stops_arriving_gets_408_and_the_connection_is_closed(
    tmp_path: Path,
) -> None:
    """A client that sends 10 of the 1,000 bytes it declared, then nothing: it may not hold the
    connection forever."""
    settings = make_settings(tmp_path, body_timeout_seconds=0.5)
    services = await prepared(settings)
    try:
        async with serving(create_app(settings, services)) as base:
            reader, writer = await asyncio.open_connection("127.0.0.1", _port(base))
            headers = bearer(settings, "acme", "erin")
            lines = [f"POST {API}/ai-sessions HTTP/1.1", "Host: handoff.test"]
            lines += [f"{k}: {v}" for k, v in headers.items()]
            lines += ["Content-Type: application/json", "Content-Length: 1000"]
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + b'{"problem_')
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            rest = await asyncio.wait_for(reader.read(), 10)  # then the server closes
            writer.close()
    finally:
        await services.close()
    assert head.startswith(b"HTTP/1.1 408")
    assert b"connection: close" in head.lower()
    assert json.loads(rest)["error"] == "request_timeout"
