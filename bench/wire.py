"""A lean HTTP/1.1 client on asyncio streams, for the load loops.

httpx costs the client about a millisecond of CPU per request; on a 2-core machine shared with the
server and PostgreSQL that would be measured as server time. This client keeps one connection
alive, writes a prepared request and reads a Content-Length or chunked answer, nothing more.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

HEAD_END = b"\r\n\r\n"


class HttpConnection:
    """One keep-alive connection; reconnects when the server closes it."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)

    async def close(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    def encode(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        body: object = None,
        headers: dict[str, str] | None = None,
    ) -> bytes:
        payload = b"" if body is None else json.dumps(body).encode()
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        if token is not None:
            lines.append(f"Authorization: Bearer {token}")
        if body is not None:
            lines.append("Content-Type: application/json")
        if body is not None or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(payload)}")
        for name, value in (headers or {}).items():
            lines.append(f"{name}: {value}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload

    async def send(self, raw: bytes) -> tuple[int, bytes]:
        """Write a prepared request and read its answer: (status, body)."""
        if self._writer is None or self._reader is None or self._reader.at_eof():
            await self.close()  # the server closes idle keep-alive connections (uvicorn: 5 s)
            await self.open()
        assert self._reader is not None and self._writer is not None
        self._writer.write(raw)
        status, headers = await read_head(self._reader)
        body = await read_body(self._reader, headers)
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return status, body

    async def request(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        body: object = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:
        return await self.send(self.encode(method, path, token=token, body=body, headers=headers))

    async def json(
        self, method: str, path: str, *, token: str | None = None, body: object = None
    ) -> tuple[int, Any]:
        status, raw = await self.request(method, path, token=token, body=body)
        return status, (json.loads(raw) if raw else None)


async def answers(port: int, path: str) -> bool:
    """Whether a server on 127.0.0.1:`port` answers GET `path` with 200 (False while it is not
    listening yet, or answers something else)."""
    conn = HttpConnection("127.0.0.1", port)
    try:
        status, _ = await conn.request("GET", path)
        return status == 200
    except (OSError, asyncio.IncompleteReadError, ValueError):
        return False
    finally:
        await conn.close()


async def read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    head = await reader.readuntil(HEAD_END)
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        raise ValueError(f"not an HTTP response: {lines[0]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers


async def read_chunk(reader: asyncio.StreamReader) -> bytes:
    """One chunk of a chunked body; b"" at its end."""
    size_line = await reader.readline()
    if not size_line:
        raise asyncio.IncompleteReadError(b"", None)
    size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
    if size == 0:
        await reader.readline()  # the CRLF after the last chunk (no trailers are sent)
        return b""
    data = await reader.readexactly(size + 2)
    return data[:-2]


async def read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if "content-length" in headers:
        return await reader.readexactly(int(headers["content-length"]))
    if headers.get("transfer-encoding", "").lower() == "chunked":
        parts: list[bytes] = []
        while chunk := await read_chunk(reader):
            parts.append(chunk)
        return b"".join(parts)
    return b""


def sse_events(buffer: bytearray) -> list[dict[str, str]]:
    """Take every complete event out of `buffer` (text/event-stream), leaving a partial one.

    A comment-only block comes back as {"comment": text}.
    """
    text = bytes(buffer).replace(b"\r\n", b"\n")
    *complete, rest = text.split(b"\n\n")
    buffer[:] = rest
    events: list[dict[str, str]] = []
    for block in complete:
        event: dict[str, str] = {}
        for line in block.decode("utf-8", "replace").split("\n"):
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "":
                event.setdefault("comment", value)
            elif name in ("event", "id", "data"):
                event[name] = value
        if event:
            events.append(event)
    return events
