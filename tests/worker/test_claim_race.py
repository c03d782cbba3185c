"""Claims racing the sends of their own escalation, through a real `serve` on PostgreSQL: every
claim answers 200 or 409 (never a 500 from a deadlock between the claim and the dispatcher), and
the delivery records tell the truth: an email that reached the mailbox is recorded `sent`, and one
recorded `sent` reached it. Bounded: 30 escalations, three claimers each."""

from __future__ import annotations

import asyncio
import mailbox
from pathlib import Path

import httpx
import pytest
from tests.e2e.people import Api, address, eventually
from tests.support.cli import add_member, handoff
from tests.support.databases import fresh_database
from tests.support.process import serving_process

from handoff_app.settings import Settings

pytestmark = pytest.mark.postgres

SECRET = "claim-race-secret-of-at-least-32-bytes"
ESCALATIONS = 30
CLAIMERS = ("sam", "ada", "raj")


def message_ids(folder: Path) -> set[str]:
    if not folder.exists():
        return set()
    return {str(m["Message-ID"]) for m in mailbox.Maildir(str(folder), create=False)}


async def test_claims_racing_the_sends_never_fail_and_the_records_match_the_mailbox(
    tmp_path: Path,
) -> None:
    async with fresh_database("handoff_claim_race") as url:
        env = {
            "HANDOFF_DATABASE_URL": url,
            "HANDOFF_JWT_SECRET": SECRET,
            "HANDOFF_MAILDIR": str(tmp_path / "mail"),
            "HANDOFF_WORKER_POLL_SECONDS": "0.2",
        }
        assert handoff("db", "upgrade", cwd=tmp_path, env=env).returncode == 0
        for member in ("eve", *CLAIMERS):
            done = add_member(
                "acme", member, email=address("acme", member), name=member, role="engineer",
                cwd=tmp_path, env=env,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
        settings = Settings(jwt_secret=SECRET)
        with serving_process(env, tmp_path) as served:
            async with httpx.AsyncClient(base_url=served.url, timeout=30) as client:
                api = Api(client, settings)

                async def one(n: int) -> tuple[str, list[int]]:
                    _, handoff_id = await api.escalate(("acme", "eve"), summary=f"race {n}")
                    claims = await asyncio.gather(
                        *(
                            api.call("POST", f"/handoffs/{handoff_id}/claim", ("acme", who))
                            for who in CLAIMERS
                        )
                    )
                    return handoff_id, [r.status_code for r in claims]

                raced = await asyncio.gather(*(one(n) for n in range(ESCALATIONS)))
                for _, statuses in raced:
                    assert sorted(statuses) == [200, 409, 409], statuses

                async def records() -> list[dict[str, object]]:
                    found: list[dict[str, object]] = []
                    for handoff_id, _ in raced:
                        path = f"/handoffs/{handoff_id}/deliveries"
                        found += (await api.call("GET", path, ("acme", "eve"))).json()
                    return found

                async def settled() -> bool:
                    return all(d["status"] != "pending" for d in await records())

                await eventually(settled, timeout=30)
                deliveries = await records()
        log = served.log
    assert "Traceback" not in log and "unhandled error" not in log
    recorded_sent = {d["message_id"] for d in deliveries if d["status"] == "sent"}
    assert message_ids(tmp_path / "mail") == recorded_sent
