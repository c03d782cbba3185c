"""`handoff serve` as a real process: started, waited for (bounded), stopped with Ctrl-C, and its
whole log kept for the test to read."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx
from attrs import define
from tests.support.cli import HANDOFF, environment
from tests.support.net import free_port

START_SECONDS = 30.0
STOP_SECONDS = 20.0


@define
class Served:
    """A running server: its base URL, the process, and (once stopped) its log and exit code."""

    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    returncode: int | None = None

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> str:
        """Ctrl-C, as an operator stops it; the whole log once it has exited."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_SECONDS)
        self.returncode = self.process.returncode
        return self.log


@contextmanager
def serving_process(
    env: Mapping[str, str], cwd: Path, *args: str, port: int | None = None
) -> Iterator[Served]:
    """`handoff serve --port P ARGS` until /healthz answers; stopped (Ctrl-C) at the block's end.
    Fails if it exits or stays silent for START_SECONDS."""
    port = port or free_port()
    log_path = cwd / f"serve-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*HANDOFF, "serve", "--port", str(port), *args],
            env=environment(env),
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    served = Served(f"http://127.0.0.1:{port}", process, log_path)
    try:
        deadline = time.monotonic() + START_SECONDS
        while True:
            if process.poll() is not None:
                raise AssertionError(f"serve exited with {process.returncode}: {served.log}")
            try:
                if httpx.get(f"{served.url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"serve did not answer within {START_SECONDS} s: {served.log}")
            time.sleep(0.1)
        yield served
    finally:
        served.stop()
