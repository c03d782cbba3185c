"""A standalone `handoff worker --metrics-port` serves its heartbeat for an alert when it stops
(`serve --no-worker` has none to give): a real worker process, scraped over HTTP."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
from tests.support.cli import HANDOFF, environment, handoff, one_line


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _store(tmp_path: Path) -> dict[str, str]:
    env = {
        "HANDOFF_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'h.db'}",
        "HANDOFF_WORKER_POLL_SECONDS": "0.05",
        "HANDOFF_MAILDIR": str(tmp_path / "mail"),
    }
    assert handoff("db", "upgrade", cwd=tmp_path, env=env).returncode == 0
    return env


def test_a_standalone_worker_serves_its_heartbeat_while_it_runs(tmp_path: Path) -> None:
    env = _store(tmp_path)
    port = _free_port()
    worker = subprocess.Popen(
        [*HANDOFF, "worker", "--metrics-port", str(port)],
        cwd=tmp_path, env=environment(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        beats: list[float] = []
        deadline = time.monotonic() + 20
        while len(beats) < 2 and time.monotonic() < deadline:
            try:
                body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
            except httpx.TransportError:
                body = ""  # not listening yet
            for line in body.splitlines():
                if line.startswith("handoff_worker_last_pass_timestamp_seconds "):
                    beat = float(line.split()[1])
                    if not beats or beat > beats[-1]:
                        beats.append(beat)
            time.sleep(0.2)
        assert len(beats) == 2, "the heartbeat never moved"
        assert abs(beats[-1] - time.time()) < 30
    finally:
        worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=30)
    assert worker.returncode == 0, err
    assert f"handoff worker metrics on http://127.0.0.1:{port}/metrics" in out
    # stopped with the worker: nothing listens any more
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0


def test_a_metrics_port_already_taken_is_one_line_and_no_worker(tmp_path: Path) -> None:
    env = _store(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = handoff("worker", "--metrics-port", str(port), cwd=tmp_path, env=env, timeout=30)
    line = one_line(done, 2)
    assert line.startswith(f"handoff: --metrics-port: cannot serve on 127.0.0.1:{port}: ")
    assert "running" not in done.stdout
