"""The inbox on two `handoff serve` processes over one PostgreSQL, in real Chromium: a page on
one process sees what happens on the other."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from playwright.async_api import Page, expect
from tests.browser.conftest import Pages
from tests.scaleout.conftest import auth as _auth
from tests.scaleout.conftest import env, pg_url, servers  # noqa: F401
from tests.support.cli import handoff

pytestmark = pytest.mark.postgres


def login_link(settings: dict[str, str], base: str, member: str) -> str:
    args = ("login-link", "--account", "acme", "--member", member)
    done = handoff(*args, cwd=Path.cwd(), env=settings)
    assert done.returncode == 0, done.stderr
    # HANDOFF_PUBLIC_URL is the default here: open the link on the process under test.
    return base + "/login/" + done.stdout.strip().rsplit("/login/", 1)[1]


async def inbox(pages: Pages, base: str, link: str) -> Page:
    _, page = await pages.new()
    await page.goto(link)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(f"{base}/")
    await page.wait_for_selector("#live[data-state=live]")
    return page


async def test_a_page_on_each_process_sees_the_card_and_the_claim_made_on_the_other(
    env: dict[str, str],  # noqa: F811
    servers: list[str],  # noqa: F811
    pages: Pages,
) -> None:
    one, two = servers
    ada = await inbox(pages, one, login_link(env, one, "ada"))
    sam = await inbox(pages, two, login_link(env, two, "sam"))
    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.post(
            f"{one}/api/v1/ai-sessions",
            headers=_auth("acme", "eve"),
            json={"problem_summary": "Seen from both processes"},
        )
        assert r.status_code == 201, r.text
        r = await client.post(
            f"{one}/api/v1/ai-sessions/{r.json()['id']}/handoff",
            headers=_auth("acme", "eve"),
            json={"intent": "escalate", "engineer_notes": "over PostgreSQL"},
        )
        assert r.status_code == 201, r.text
    for page in (ada, sam):
        await expect(page.locator("#queue .card", has_text="Seen from both")).to_be_visible()
    await sam.locator("#queue .card", has_text="Seen from both").locator(".claim").click()
    await expect(sam.locator("#taken .card")).to_contain_text("You claimed it")
    await expect(ada.locator("#taken .card")).to_contain_text("Claimed by Sam")
