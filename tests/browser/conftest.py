"""Real Chromium (Debian's, driven by Playwright) against the real app served by uvicorn.

Every page a test opens through `pages` is saved as a screenshot under the test's tmp dir when
the test fails. No browser is downloaded: Playwright is pointed at the system's chromium.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import AsyncIterator, Generator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from attrs import define, field
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect
from tests.e2e.conftest import make_settings, prepared
from tests.e2e.people import Api
from tests.e2e.servers import bound_socket, serving

from handoff_app.container import Services
from handoff_app.http import create_app
from handoff_app.settings import Settings
from handoff_core.services.signin import SignInService

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
WAIT_MS = 10_000


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Generator[Any]:
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


@define
class Site:
    """The service at `base` (its public URL too), its services, and an API client for it."""

    base: str
    settings: Settings
    services: Services
    api: Api

    async def login_url(self, account_id: str, member_id: str) -> str:
        signin = SignInService(self.services.uow, self.services.clock)
        code = await signin.issue(account_id, member_id, timedelta(minutes=5))
        return f"{self.base}/login/{code}"


@contextlib.asynccontextmanager
async def running_site(folder: Path, **overrides: object) -> AsyncIterator[Site]:
    """A fresh SQLite deployment of the app, served on 127.0.0.1 from this event loop."""
    (folder / "db").mkdir(parents=True, exist_ok=True)
    sock = bound_socket()
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    settings = make_settings(folder, "sqlite", public_url=base, **overrides)
    services = await prepared(settings)
    try:
        async with (
            serving(create_app(settings, services), sock),
            httpx.AsyncClient(base_url=base, timeout=10) as client,
        ):
            yield Site(base, settings, services, Api(client, settings))
    finally:
        await services.close()


@define
class Pages:
    """Browser contexts and pages a test opened, kept for screenshots on failure."""

    browser: Browser
    opened: list[Page] = field(factory=list)
    elsewhere: list[str] = field(factory=list)  # requests to anywhere but 127.0.0.1

    async def new(self, **options: Any) -> tuple[BrowserContext, Page]:
        context = await self.browser.new_context(**options)
        context.set_default_timeout(WAIT_MS)
        context.on("request", lambda request: self._note(request))
        page = await context.new_page()
        self.opened.append(page)
        return context, page

    def _note(self, request: Any) -> None:
        url = str(request.url)
        if not url.startswith(("http://127.0.0.1:", "data:", "about:")):
            self.elsewhere.append(url)

    async def signed_in(self, site: Site, account_id: str, member_id: str) -> Page:
        """A page of a new context, signed in by a one-time link and showing the live inbox."""
        _, page = await self.new()
        await page.goto(await site.login_url(account_id, member_id))
        await page.get_by_role("button", name="Sign in").click()  # opening the link spends nothing
        await page.wait_for_url(f"{site.base}/")
        await page.wait_for_selector("#live[data-state=live]")
        return page


@pytest.fixture
async def pages(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Pages]:
    expect.set_options(timeout=WAIT_MS)  # a loaded 2-core CI machine needs more than 5 s
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM)
        kept = Pages(browser)
        try:
            yield kept
        finally:
            report = getattr(request.node, "report_call", None)
            if report is None or report.failed:
                for number, page in enumerate(kept.opened):
                    with contextlib.suppress(Exception):
                        await page.screenshot(path=str(tmp_path / f"page-{number}.png"))
            await browser.close()


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    async with running_site(tmp_path) as running:
        yield running
