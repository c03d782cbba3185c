"""The SMTP sink: aiosmtpd on 127.0.0.1 in a process of its own, counting what it accepted.

Run by the harness as `python -m bench.sink --port P` (`--no-pipelining` to offer no PIPELINING).
It answers one JSON line per command read from stdin: `stats` (count, first and last acceptance
on the monotonic clock, which every process of this machine shares), `reset` (`reset keep` also
keeps the messages), `times` (when each was accepted), `dump PATH` (the kept messages as JSON
lines with the time each was accepted, for the raw aiosmtplib baseline to send again and for
counting who got what), and `quit`. End of input stops it too.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from typing import Any

from aiosmtpd.controller import Controller


class Counting:
    """An aiosmtpd handler that accepts everything and remembers when.

    It offers PIPELINING (RFC 2920) in its EHLO reply, as the relays the service really talks to
    do (Postfix, Exim, Exchange): aiosmtpd simply does not announce it, though it reads pipelined
    commands line by line and answers them in order. `pipelining=False` (`--no-pipelining`)
    leaves the reply as aiosmtpd writes it.
    """

    def __init__(self, *, pipelining: bool = True) -> None:
        self.pipelining = pipelining
        self.lock = threading.Lock()
        self.count = 0
        self.first: float | None = None
        self.last: float | None = None
        self.keep = False
        self.kept: list[tuple[str, list[str], bytes]] = []
        self.times: list[float] = []

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        if self.pipelining:  # before the last line, "250 HELP"
            return [*responses[:-1], "250-PIPELINING", responses[-1]]
        return responses

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        now = time.monotonic()
        with self.lock:
            self.count += 1
            if self.first is None:
                self.first = now
            self.last = now
            self.times.append(now)
            if self.keep:
                self.kept.append(
                    (envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.original_content))
                )
        return "250 2.0.0 accepted"

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {"count": self.count, "first": self.first, "last": self.last}

    def reset(self, keep: bool) -> None:
        with self.lock:
            self.count, self.first, self.last = 0, None, None
            self.keep, self.kept, self.times = keep, [], []

    def dump(self, path: str) -> int:
        with self.lock:
            kept = list(self.kept)
            times = list(self.times[-len(kept) :]) if kept else []
        with open(path, "w", encoding="utf-8") as out:
            for (mail_from, rcpts, content), at in zip(kept, times, strict=True):
                row = {"from": mail_from, "to": rcpts, "data": content.decode("latin-1"), "t": at}
                out.write(json.dumps(row) + "\n")
        return len(kept)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sink")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--no-pipelining", action="store_true", help="leave PIPELINING out of the EHLO reply"
    )
    args = parser.parse_args()
    handler = Counting(pipelining=not args.no_pipelining)
    controller = Controller(
        handler, hostname="127.0.0.1", port=args.port, data_size_limit=10 * 1024 * 1024
    )
    controller.start()
    try:
        print(json.dumps({"ready": True, "port": args.port}), flush=True)
        for line in sys.stdin:
            command, _, rest = line.strip().partition(" ")
            answer: dict[str, Any]
            if command == "stats":
                answer = handler.stats()
            elif command == "reset":
                handler.reset(keep=rest == "keep")
                answer = {"reset": True}
            elif command == "times":
                with handler.lock:
                    answer = {"times": list(handler.times)}
            elif command == "dump":
                answer = {"dumped": handler.dump(rest)}
            elif command == "quit":
                print(json.dumps({"bye": True}), flush=True)
                break
            else:
                answer = {"error": f"unknown command {command!r}"}
            print(json.dumps(answer), flush=True)
    finally:
        controller.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
