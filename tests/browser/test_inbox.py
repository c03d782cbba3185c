"""The inbox and the claim page in real Chromium: live cards, claims, seen, safe text."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from playwright.async_api import Page, Request, expect
from tests.browser.conftest import Pages, Site
from tests.e2e.people import eventually, mails
from tests.e2e.servers import open_stream

from handoff_app.http import mint_token

ERIN = ("acme", "erin")
XSS = "<img src=x onerror=alert(1)>"
CONVERSATION = {
    "messages": [
        {"role": "user", "content": "The VPN drops at the auth step"},
        {"role": "assistant", "content": "Checked the certificate: valid until 2027"},
    ],
    "confidence_tier": "discovery",
}


async def escalate(
    site: Site, summary: str, notes: str = "stuck", context: dict[str, Any] | None = None
) -> str:
    body: dict[str, Any] = {"problem_summary": summary}
    if context is not None:
        body["context"] = context
    r = await site.api.call("POST", "/ai-sessions", ERIN, json=body)
    assert r.status_code == 201, r.text
    r = await site.api.call(
        "POST",
        f"/ai-sessions/{r.json()['id']}/handoff",
        ERIN,
        json={"intent": "escalate", "engineer_notes": notes},
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def card(page: Page, summary: str) -> Any:
    return page.locator("#queue .card", has_text=summary)


def seen_ids(page: Page) -> list[str]:
    """The `last_event_id` of every seen call the page makes, as it makes them."""
    ids: list[str] = []

    def watch(request: Request) -> None:
        if request.method == "POST" and request.url.endswith("/api/v1/escalations/seen"):
            ids.append(json.loads(request.post_data or "{}").get("last_event_id", ""))

    page.on("request", watch)
    return ids


async def test_a_card_arrives_live_is_claimed_in_the_page_and_goes_live_elsewhere(
    site: Site, pages: Pages
) -> None:
    adam = await pages.signed_in(site, "acme", "adam")
    olga = await pages.signed_in(site, "acme", "olga")
    adam_seen = seen_ids(adam)
    await expect(adam.locator("#empty")).to_be_visible()

    # Eve listens too, to learn the id the stream gives the escalation.
    async with open_stream(site.base, mint_token(site.settings, "acme", "eve")) as eve:
        handoff_id = await escalate(site, "VPN drops at auth", "Tried re-keying", CONVERSATION)
        created = await eve.next()
    assert created.event == "escalation.created" and created.id

    for page in (adam, olga):
        arrived = card(page, "VPN drops at auth")
        await expect(arrived).to_be_visible()
        await expect(arrived.locator(".notes")).to_have_text("Tried re-keying")
        await expect(arrived.locator(".who")).to_have_text("Erin")
    await eventually(lambda: _has(adam_seen, created.id))

    await card(olga, "VPN drops at auth").locator(".show-snapshot").click()
    conversation = card(olga, "VPN drops at auth").locator(".snapshot .message")
    await expect(conversation).to_have_count(2)
    await expect(conversation.first).to_contain_text("The VPN drops at the auth step")

    await card(adam, "VPN drops at auth").locator(".claim").click()
    await expect(adam.locator("#taken .card")).to_contain_text("You claimed it")
    taken = olga.locator("#taken .card", has_text="VPN drops at auth")
    await expect(taken).to_contain_text("Claimed by Adam")
    await expect(card(olga, "VPN drops at auth")).to_have_count(0)
    await expect(taken.locator(".claim")).to_have_count(0)
    r = await site.api.call("GET", f"/handoffs/{handoff_id}", ERIN)
    assert r.json()["claimed_by"] == "adam"
    assert pages.elsewhere == []  # the inbox asked nothing of any other host
    await adam.screenshot(path=str(Path(site.settings.maildir).parent / "inbox.png"))


async def _has(ids: list[str], wanted: str) -> bool:
    return wanted in ids


async def test_a_claim_lost_in_the_page_names_who_won(site: Site, pages: Pages) -> None:
    handoff_id = await escalate(site, "Disk full on build box")
    page = await pages.signed_in(site, "acme", "adam")
    await expect(card(page, "Disk full on build box")).to_be_visible()
    await page.context.set_offline(True)  # the page hears nothing of the claim below
    r = await site.api.call("POST", f"/handoffs/{handoff_id}/claim", ("acme", "olga"))
    assert r.status_code == 200
    await page.context.set_offline(False)
    button = card(page, "Disk full on build box").locator(".claim")
    if await button.count():
        await button.click()
    await expect(page.locator("#taken .card")).to_contain_text("Claimed by Olga")


async def test_an_emails_claim_link_shows_the_escalation_and_its_button_claims(
    site: Site, pages: Pages
) -> None:
    handoff_id = await escalate(site, "Mail relay refuses auth", "Since 9am", CONVERSATION)
    await site.api.settled(ERIN, handoff_id)
    [to_olga] = [m for m in mails(site.settings.maildir) if "olga@" in str(m["To"])]
    plain = to_olga.get_payload()[0].get_payload(decode=True).decode()  # type: ignore[index]
    [link] = re.findall(re.escape(site.base) + r"/claim/\S+", plain)

    _, page = await pages.new(viewport={"width": 390, "height": 844})  # a phone
    await page.goto(link)
    await expect(page.locator("h1.summary")).to_have_text("Mail relay refuses auth")
    await expect(page.locator(".notes")).to_have_text("Since 9am")
    await expect(page.locator(".conversation .message")).to_have_count(2)
    r = await site.api.call("GET", f"/handoffs/{handoff_id}", ERIN)
    assert r.json()["status"] == "open"  # opening the link claimed nothing

    await page.get_by_role("button", name="Claim").click()
    await expect(page.locator(".banner.ok")).to_have_text(
        "You claimed it. The session is yours now."
    )
    await expect(page.locator("#state")).to_contain_text("You have it")
    r = await site.api.call("GET", f"/handoffs/{handoff_id}", ERIN)
    assert r.json()["claimed_by"] == "olga"
    assert pages.elsewhere == []


async def test_user_text_shows_as_text_and_runs_nothing(site: Site, pages: Pages) -> None:
    await escalate(site, XSS, f"notes {XSS}")
    page = await pages.signed_in(site, "acme", "olga")
    dialogs: list[str] = []
    page.on("dialog", lambda d: dialogs.append(d.message))
    await escalate(site, f"live {XSS}", XSS)
    await expect(page.locator("#queue .card")).to_have_count(2)
    summaries = await page.locator("#queue .card .summary").all_text_contents()
    assert summaries == [XSS, f"live {XSS}"]
    assert await page.locator("#queue img").count() == 0
    assert dialogs == []
