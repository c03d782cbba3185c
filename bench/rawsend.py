"""Raw aiosmtplib in a process of its own: the mail path's limit, measured while requests run.

Run by the harness as `python -m bench.rawsend --port SINK_PORT --messages FILE --connections K`.
It reads the messages (a sink dump, JSON lines), opens K connections to the sink and prints one
JSON line when they are open. Then, per command line on stdin: `go` sends every message, each
connection taking the next one as soon as it is free, and prints the monotonic times of the
first send and the last reply ({"start": ..., "done": ..., "sent": N}); `quit` closes the
connections. A process of its own, as the handoff worker is, so that the harness's own clients
and the sender do not share an event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import aiosmtplib

from bench.b2_fanout import Message, load, send_all


async def _send(messages: list[Message], pool: list[aiosmtplib.SMTP]) -> dict[str, float]:
    start = time.monotonic()
    await send_all(messages, pool)
    return {"start": start, "done": time.monotonic(), "sent": len(messages)}


async def main(port: int, path: Path, connections: int) -> None:
    messages = load(path)
    pool = [aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=30) for _ in range(
        connections)]  # fmt: skip
    for conn in pool:
        await conn.connect()
    print(json.dumps({"connections": connections, "messages": len(messages)}), flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        while line := (await reader.readline()).decode().strip():
            if line == "quit":
                break
            if line != "go":
                print(json.dumps({"error": f"unknown command {line!r}"}), flush=True)
                continue
            print(json.dumps(await _send(messages, pool)), flush=True)
    finally:
        for conn in pool:
            await conn.quit()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.rawsend")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--messages", type=Path, required=True)
    parser.add_argument("--connections", type=int, required=True)
    args = parser.parse_args()
    asyncio.run(main(args.port, args.messages, args.connections))
