"""Two `handoff serve` processes on one migrated PostgreSQL database, for the scale-out tests."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from tests.support.cli import HANDOFF, add_member, environment, handoff
from tests.support.databases import fresh_database
from tests.support.net import free_port

from handoff_app.http import mint_token
from handoff_app.settings import Settings

SECRET = "two-servers-share-this-secret-of-32-bytes"
WAIT = 20.0


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with fresh_database("handoff_scaleout") as url:
        yield url


@pytest.fixture
def env(pg_url: str, tmp_path: Path) -> dict[str, str]:
    """The settings both servers share, over a migrated database with two accounts' members."""
    settings = {
        "HANDOFF_DATABASE_URL": pg_url,
        "HANDOFF_JWT_SECRET": SECRET,
        "HANDOFF_MAILDIR": str(tmp_path / "mail"),
        "HANDOFF_WORKER_POLL_SECONDS": "0.2",
    }
    done = handoff("db", "upgrade", env=settings, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    members = [
        ("acme", "eve", "eve@acme.test", "Eve", "engineer"),
        ("acme", "sam", "sam@acme.test", "Sam", "engineer"),
        ("acme", "ada", "ada@acme.test", "Ada", "admin"),
        ("other", "zed", "zed@o.test", "Zed", "owner"),
    ]
    for account, member, email, name, role in members:
        done = add_member(
            account, member, email=email, name=name, role=role, env=settings, cwd=tmp_path
        )
        assert done.returncode == 0, done.stderr
    return settings


@pytest.fixture
def servers(env: dict[str, str], tmp_path: Path) -> Iterator[list[str]]:
    procs: list[subprocess.Popen[str]] = []
    urls = []
    try:
        for _ in range(2):
            port = free_port()
            procs.append(
                subprocess.Popen(
                    [*HANDOFF, "serve", "--port", str(port)],
                    env=environment(env),
                    cwd=tmp_path,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
            urls.append(f"http://127.0.0.1:{port}")
        for url in urls:
            wait_ready(url)
        yield urls
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


def wait_ready(url: str) -> None:
    import time

    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} did not become ready")


def auth(account: str, member: str) -> dict[str, str]:
    settings = Settings(jwt_secret=SECRET)
    return {"Authorization": f"Bearer {mint_token(settings, account, member, 300)}"}
