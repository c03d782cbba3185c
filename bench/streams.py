"""Holds many SSE streams open from one process and notes when each escalation reaches each one.

Run by the harness as `python -m bench.streams --port P --tokens FILE`. It opens one stream per
token (a few at a time), waits for each stream's first event, `stream.ready` (from then on its
member is online), and prints one JSON line: how many opened. Then, per command line on stdin:
`wait HANDOFF_ID SECONDS` prints the monotonic arrival time of that escalation's event on every
stream that got it (and how many did not); `collect COUNT SECONDS` waits until at least COUNT
escalation events have arrived on all streams together (or the time is up), prints each as
[handoff id, stream index in the token list, arrival] and forgets them (for storms, where each
escalation reaches only its own account's streams); `quit` closes everything. Raw sockets, not
httpx: a thousand httpx streams would cost this process more CPU than the server spends pushing
to them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

from bench.stack import raise_nofile
from bench.wire import read_chunk, read_head, sse_events

OPEN_AT_ONCE = 25
OPEN_SECONDS = 120.0


class Streams:
    def __init__(self, port: int) -> None:
        self.port = port
        self.opened = 0
        self.failed: list[str] = []
        self.arrivals: dict[str, list[float]] = defaultdict(list)
        self.complete: dict[str, asyncio.Event] = defaultdict(asyncio.Event)
        self.tasks: list[asyncio.Task[None]] = []
        self.writers: list[asyncio.StreamWriter] = []
        self.held: list[tuple[str, int, float]] = []
        self.more = asyncio.Event()

    async def one(self, index: int, token: str, online: asyncio.Event) -> None:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError as exc:
            self.failed.append(repr(exc))
            online.set()
            return
        self.writers.append(writer)
        writer.write(
            (
                "GET /api/v1/escalations/stream HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{self.port}\r\nAccept: text/event-stream\r\n"
                f"Authorization: Bearer {token}\r\n\r\n"
            ).encode()
        )
        buffer = bytearray()
        try:
            status, _ = await read_head(reader)
            if status != 200:
                self.failed.append(f"status {status}")
                return
            while chunk := await read_chunk(reader):
                now = time.monotonic()
                buffer += chunk
                for event in sse_events(buffer):
                    ready = event.get("event") == "stream.ready" or event.get("comment") == "online"
                    if ready and not online.is_set():
                        self.opened += 1
                        online.set()
                    elif event.get("event") == "escalation.created":
                        handoff_id = json.loads(event["data"])["handoff_id"]
                        got = self.arrivals[handoff_id]
                        got.append(now)
                        self.held.append((handoff_id, index, now))
                        self.more.set()
                        if len(got) >= self.opened:
                            self.complete[handoff_id].set()
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            if not online.is_set():
                self.failed.append(repr(exc))
        finally:
            online.set()

    async def open_all(self, tokens: list[str]) -> dict[str, object]:
        started = time.monotonic()
        slots = asyncio.Semaphore(OPEN_AT_ONCE)

        async def start(index: int, token: str) -> None:
            async with slots:
                online = asyncio.Event()
                self.tasks.append(asyncio.create_task(self.one(index, token, online)))
                await online.wait()

        await asyncio.wait_for(
            asyncio.gather(*(start(i, t) for i, t in enumerate(tokens))), OPEN_SECONDS
        )
        return {
            "opened": self.opened,
            "failed": len(self.failed),
            "errors": self.failed[:3],
            "seconds": time.monotonic() - started,
        }

    async def wait(self, handoff_id: str, seconds: float) -> dict[str, object]:
        if len(self.arrivals[handoff_id]) < self.opened:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.complete[handoff_id].wait(), seconds)
        got = list(self.arrivals[handoff_id])
        return {"arrivals": got, "missing": self.opened - len(got)}

    async def collect(self, count: int, seconds: float) -> dict[str, object]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while len(self.held) < count and loop.time() < deadline:
            self.more.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.more.wait(), deadline - loop.time())
        held, self.held = self.held, []
        return {"events": held, "count": len(held)}

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for writer in self.writers:
            writer.close()
        with contextlib.suppress(Exception):
            await asyncio.gather(*self.tasks, return_exceptions=True)


async def serve(port: int, tokens: list[str]) -> None:
    streams = Streams(port)
    print(json.dumps(await streams.open_all(tokens)), flush=True)
    try:
        while True:
            line = await asyncio.to_thread(sys.stdin.readline)
            command = line.split()
            if not command or command[0] == "quit":
                break
            if command[0] == "wait" and len(command) == 3:
                answer = await streams.wait(command[1], float(command[2]))
            elif command[0] == "collect" and len(command) == 3:
                answer = await streams.collect(int(command[1]), float(command[2]))
            else:
                answer = {"error": f"unknown command {line.strip()!r}"}
            print(json.dumps(answer), flush=True)
    finally:
        await streams.close()
    print(json.dumps({"bye": True}), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.streams")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tokens", required=True, help="a JSON list of bearer tokens")
    args = parser.parse_args()
    raise_nofile()
    tokens = json.loads(Path(args.tokens).read_text())
    asyncio.run(serve(args.port, tokens))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
