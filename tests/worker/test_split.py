"""Sending moved out of the request process (issue 14): `serve --no-worker` with
HANDOFF_DISPATCH_CONCURRENCY=0 sends nothing itself; a `handoff worker` process on PostgreSQL is
woken by the commit's notification and sends at once, however long its polling interval."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from pathlib import Path

import httpx
import pytest
from tests.e2e.people import Api, address, eventually, recipients
from tests.support.cli import HANDOFF, add_member, environment, handoff
from tests.support.databases import fresh_database
from tests.support.process import serving_process

from handoff_app.settings import Settings

pytestmark = pytest.mark.postgres

SECRET = "split-secret-of-at-least-thirty-two-bytes"
WAIT = 15.0


async def test_a_worker_process_sends_what_the_request_process_left(tmp_path: Path) -> None:
    async with fresh_database("handoff_split") as url:
        env = {
            "HANDOFF_DATABASE_URL": url,
            "HANDOFF_JWT_SECRET": SECRET,
            "HANDOFF_MAILDIR": str(tmp_path / "mail"),
            "HANDOFF_DISPATCH_CONCURRENCY": "0",
            "HANDOFF_WORKER_POLL_SECONDS": "60",  # only the wake-up can make it send in time
            "HANDOFF_WORKER_LANES": "3",
        }
        assert handoff("db", "upgrade", cwd=tmp_path, env=env).returncode == 0
        for member, role in (("erin", "engineer"), ("adam", "admin"), ("olga", "owner")):
            done = add_member(
                "acme", member, email=address("acme", member), name=member, role=role,
                cwd=tmp_path, env=env,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
        settings = Settings(jwt_secret=SECRET)
        with serving_process(env, tmp_path, "--no-worker") as served:
            async with httpx.AsyncClient(base_url=served.url) as client:
                api = Api(client, settings)
                _, first = await api.escalate(("acme", "erin"))
                await asyncio.sleep(1.0)
                listed = await api.call("GET", f"/handoffs/{first}/deliveries", ("acme", "erin"))
                assert {d["status"] for d in listed.json()} == {"pending"}  # nobody sent it
                assert recipients(tmp_path / "mail") == []

                worker = await asyncio.create_subprocess_exec(
                    *HANDOFF, "worker", env=environment(env), cwd=tmp_path,
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                )  # fmt: skip
                try:
                    assert worker.stdout is not None
                    line = await asyncio.wait_for(worker.stdout.readline(), WAIT)
                    assert b"running" in line  # and its first pass sends `first`
                    _, second = await api.escalate(("acme", "erin"), summary="second")

                    async def all_four() -> bool:
                        return len(recipients(tmp_path / "mail")) >= 4

                    await eventually(all_four, timeout=WAIT)
                finally:
                    worker.send_signal(signal.SIGTERM)
                    await asyncio.wait_for(worker.wait(), WAIT)
                got = await api.call("GET", f"/handoffs/{second}/deliveries", ("acme", "erin"))
        assert sorted(recipients(tmp_path / "mail")) == sorted(
            [address("acme", "adam"), address("acme", "olga")] * 2
        )
        assert {d["status"] for d in got.json()} == {"sent"}
        assert worker.returncode == 0
