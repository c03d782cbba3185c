"""Other origins in real Chromium: CORS for a separate front end's EventSource, cross-site POSTs
refused, and the API docs working with every request off this machine blocked."""

from __future__ import annotations

import html
import re
from pathlib import Path
from urllib.parse import urlsplit

from playwright.async_api import Route, expect
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route as Path_
from tests.browser.conftest import Pages, Site, running_site
from tests.browser.test_inbox import escalate
from tests.e2e.servers import bound_socket, serving

from handoff_app.http import mint_token

LISTENER = """<!doctype html><title>front end</title><body data-state="starting">
<script>
const q = new URLSearchParams(location.search);
const es = new EventSource(q.get("api") + "/api/v1/escalations/stream?access_token=" + q.get("t"));
es.onopen = () => { document.body.dataset.state = "open"; };
es.onerror = () => { document.body.dataset.state = "error"; };
es.addEventListener("escalation.created", (e) => {
  document.body.dataset.state = "got";
  document.body.textContent = JSON.parse(e.data).problem_summary;
});
</script></body>"""

FORGER = """<!doctype html><title>another site</title><body>
<form id="f" method="post" action="{action}">{fields}</form>
<script>document.getElementById("f").submit();</script></body>"""


async def listener(request: Request) -> HTMLResponse:
    return HTMLResponse(LISTENER)


async def forger(request: Request) -> HTMLResponse:
    fields = "".join(
        f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
        for k, v in request.query_params.items()
        if k != "action"
    )
    action = html.escape(request.query_params["action"])
    return HTMLResponse(FORGER.format(action=action, fields=fields))


FRONT_END = Starlette(routes=[Path_("/listen", listener), Path_("/forge", forger)])


async def test_a_front_end_on_an_allowed_origin_hears_the_stream_and_another_is_refused(
    tmp_path: Path, pages: Pages
) -> None:
    allowed_sock, other_sock = bound_socket(), bound_socket()
    allowed = f"http://127.0.0.1:{allowed_sock.getsockname()[1]}"
    async with (
        running_site(tmp_path, cors_origins=(allowed,)) as site,
        serving(FRONT_END, allowed_sock) as front,
        serving(FRONT_END, other_sock) as other,
    ):
        token = mint_token(site.settings, "acme", "olga")
        _, heard = await pages.new()
        _, refused = await pages.new()
        await heard.goto(f"{front}/listen?api={site.base}&t={token}")
        await refused.goto(f"{other}/listen?api={site.base}&t={token}")
        await expect(heard.locator("body")).to_have_attribute("data-state", "open")
        await expect(refused.locator("body")).to_have_attribute("data-state", "error")
        await escalate(site, "Heard across origins")
        await expect(heard.locator("body")).to_have_text("Heard across origins")
        assert await refused.locator("body").get_attribute("data-state") == "error"


async def test_a_forged_post_from_another_port_of_the_same_site_claims_nothing(
    site: Site, pages: Pages
) -> None:
    handoff_id = await escalate(site, "Forge target")
    page = await pages.signed_in(site, "acme", "olga")  # the cookie 127.0.0.1 would send along
    assert site.services.claim_links is not None
    claim_url = site.services.claim_links.url("acme", "olga", handoff_id)
    csrf_page = await site.api.client.get(urlsplit(claim_url).path)
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', csrf_page.text)
    assert csrf is not None
    async with serving(FRONT_END) as evil:
        api_claim = f"{site.base}/api/v1/handoffs/{handoff_id}/claim"
        await page.goto(f"{evil}/forge?action={api_claim}")
        await page.wait_for_url(api_claim)
        assert '"error":"cross_site"' in (await page.content()).replace(" ", "")
        await page.goto(
            f"{evil}/forge?action={claim_url}&csrf={csrf.group(1)}&handoff_id={handoff_id}"
        )
        await page.wait_for_url(claim_url)
        await expect(page.locator("h1")).to_have_text("Not claimed")
    r = await site.api.call("GET", f"/handoffs/{handoff_id}", ("acme", "erin"))
    assert r.json()["status"] == "open"


async def test_the_api_docs_render_with_nothing_fetched_from_elsewhere(
    site: Site, pages: Pages
) -> None:
    context, page = await pages.new()
    elsewhere: list[str] = []

    async def only_here(route: Route) -> None:
        if route.request.url.startswith(site.base):
            await route.continue_()
        else:
            elsewhere.append(route.request.url)
            await route.abort()

    await context.route("**/*", only_here)
    await page.goto(f"{site.base}/docs")
    await expect(page.locator(".opblock-summary-path").first).to_be_visible()
    await expect(page.get_by_text("/api/v1/handoffs/{handoff_id}/claim")).to_be_visible()
    await page.goto(f"{site.base}/redoc")
    heading = page.locator("h2", has_text="Claim an open escalation; exactly one")
    await expect(heading).to_be_visible()
    assert elsewhere == []
