"""The whole log of a real `handoff serve` run (SPEC §13): no token it was given appears in it,
however the request spelled it, and Ctrl-C with streams open stops it without an error line."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import pytest
from tests.support.cli import add_member, handoff
from tests.support.process import Served, serving_process

SECRET = "server-log-secret-of-at-least-32-bytes"
STREAM = "/api/v1/escalations/stream"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    settings = {
        "HANDOFF_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'h.db'}",
        "HANDOFF_JWT_SECRET": SECRET,
        "HANDOFF_MAILDIR": str(tmp_path / "mail"),
        "HANDOFF_HEARTBEAT_SECONDS": "0.2",
    }
    for member, role in (("olga", "owner"), ("erin", "engineer"), ("vic", "viewer")):
        done = add_member("acme", member, email=f"{member}@acme.test", name=member.title(),
                          role=role, cwd=tmp_path, env=settings)  # fmt: skip
        assert done.returncode == 0, done.stderr
    return settings


def mint(member: str, env: dict[str, str], cwd: Path) -> str:
    done = handoff("token", "--account", "acme", "--member", member, cwd=cwd, env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def encoded(text: str, times: int = 1) -> str:
    """Every character percent-encoded, `times` over."""
    for _ in range(times):
        text = "".join(f"%{b:02X}" for b in text.encode())
    return text


@contextmanager
def request(served: Served, target: str, headers: dict[str, str] | None = None) -> Iterator[str]:
    """Send one request exactly as written (no client re-encodes it); yields the status line
    and keeps the connection open for the block (a stream stays open meanwhile)."""
    port = int(served.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        lines = [f"GET {target} HTTP/1.1", "Host: handoff.test"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        yield conn.makefile("rb").readline().decode().strip()


def status(served: Served, target: str, headers: dict[str, str] | None = None) -> int:
    with request(served, target, headers) as line:
        return int(line.split()[1])


def test_no_token_of_the_run_appears_anywhere_in_the_server_log(
    env: dict[str, str], tmp_path: Path
) -> None:
    tokens = {m: mint(m, env, tmp_path) for m in ("olga", "erin", "vic")}
    olga, erin, vic = tokens["olga"], tokens["erin"], tokens["vic"]
    forged = olga[: olga.rindex(".") + 1] + "A" * 43  # a token with a bad signature
    with serving_process(env, tmp_path) as served:
        assert status(served, "/api/v1/members", {"Authorization": f"Bearer {olga}"}) == 200
        assert status(served, "/api/v1/members", {"Authorization": f"Bearer {forged}"}) == 401
        for name in ("access_token", "access%5Ftoken", "%61ccess_token", "access%255Ftoken"):
            for value in (erin, encoded(erin), encoded(erin, 2)):
                status(served, f"{STREAM}?{name}={value}")
        for target in (
            f"{STREAM}?access_token={olga}&x=1",
            f"{STREAM}/?access_token={olga}",
            f"{STREAM}?access_token={forged}",
            f"{STREAM}?access_token={vic}",  # a viewer: 403
            f"/api/v1/members?access_token={erin}",
            f"/api/v1/members?jwt={encoded(erin)}",
            f"/healthz?token={olga}",
            f"/healthz?note=hello%20{quote(olga)}",
            f"/api/v1/handoffs/{olga}",
            f"/api/v1/{encoded(vic)}",
            f"/metrics?{erin}",
        ):
            status(served, target, {"Authorization": f"Bearer {erin}"})
        with request(served, f"{STREAM}?access_token={erin}") as line:
            assert line.endswith("200 OK")
            log = served.stop()  # with that stream still open
    assert "GET /api/v1/escalations/stream?[redacted]" in log  # the requests were logged
    assert "GET /healthz?[redacted]" in log
    for token in (*tokens.values(), forged):
        for part in (token, quote(token), encoded(token), *token.split(".")[1:]):
            assert part not in log
    assert "access_token" not in log and "%61ccess" not in log


@contextmanager
def stream_client(served: Served, token: str) -> Iterator[socket.socket]:
    port = int(served.url.rsplit(":", 1)[1])
    conn = socket.create_connection(("127.0.0.1", port), timeout=20)
    conn.sendall(
        f"GET {STREAM} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
    )
    try:
        yield conn
    finally:
        conn.close()


def read_to_end(conn: socket.socket) -> bytes:
    received = b""
    while chunk := conn.recv(65536):
        received += chunk
    return received


def test_ctrl_c_with_streams_open_stops_cleanly(env: dict[str, str], tmp_path: Path) -> None:
    erin, olga = mint("erin", env, tmp_path), mint("olga", env, tmp_path)
    with (
        serving_process(env, tmp_path) as served,
        stream_client(served, erin) as first,
        stream_client(served, olga) as second,
    ):
        assert b"200 OK" in first.recv(4096) and b"200 OK" in second.recv(4096)
        log = served.stop()
        ends = [read_to_end(first), read_to_end(second)]
    assert served.returncode == 130, log
    assert "ERROR" not in log and "Traceback" not in log, log
    assert "ASGI callable returned without completing response" not in log
    assert all(end.endswith(b"0\r\n\r\n") for end in ends)  # each stream ended as HTTP says
    assert "Application shutdown complete" in log


def test_the_log_says_where_it_listens(env: dict[str, str], tmp_path: Path) -> None:
    with serving_process(env, tmp_path) as served:
        pass
    port = served.url.rsplit(":", 1)[1]
    assert f"handoff serving on http://127.0.0.1:{port} (Ctrl-C stops it)" in served.log
    assert "Uvicorn running on" not in served.log
    assert isinstance(served.process, subprocess.Popen)
