"""Fixtures for the e2e tests: the real app over real services, on each store that can run here."""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from tests.e2e.people import SECRET, Api, seed
from tests.e2e.servers import serving

from handoff_app.container import Services, build_services
from handoff_app.http import create_app
from handoff_app.settings import Settings


def _stores() -> list[str]:
    stores = ["memory"]
    try:
        from handoff_sql import SqlDatabase, ensure_schema  # noqa: F401
    except ImportError:
        return stores
    return [*stores, "sqlite"]


STORES = _stores()


def make_settings(folder: Path, store: str = "memory", **overrides: object) -> Settings:
    url = "memory://" if store == "memory" else f"sqlite+aiosqlite:///{folder / 'db' / 'h.db'}"
    values: dict[str, object] = {
        "database_url": url,
        "jwt_secret": SECRET,
        "maildir": str(folder / "mail"),
        "public_url": "http://handoff.test",
        # presence lives 3 beats: 3 s outlasts any stall of a loaded CI machine; 0.6 s did not
        "heartbeat_seconds": 1.0,
        "body_limit_bytes": 64 * 1024,
        "webhook_allow_private": True,  # receivers in the tests listen on 127.0.0.1
        **overrides,
    }
    return Settings(**values)  # type: ignore[arg-type]


async def prepared(settings: Settings) -> Services:
    """Services with a schema (SQL) and the teams of people.py in them."""
    if not settings.is_memory:
        from handoff_sql import ensure_schema

        await ensure_schema(settings.database_url)
    services = await build_services(settings)
    await seed(services)
    return services


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings(tmp_path: Path, store: str, request: pytest.FixtureRequest) -> Settings:
    if store == "sqlite":
        shutil.copytree(request.getfixturevalue("sqlite_template"), tmp_path / "db")
    return make_settings(tmp_path, store)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated, seeded SQLite database made once; each test gets its own copy of it."""
    folder = tmp_path_factory.mktemp("template")

    async def build() -> None:
        await (await prepared(make_settings(folder, "sqlite"))).close()

    asyncio.run(build())
    return folder / "db"


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    """For SQLite the `settings` fixture already copied in a seeded database."""
    built = await build_services(settings) if not settings.is_memory else await prepared(settings)
    try:
        yield built
    finally:
        await built.close()


@pytest.fixture
def app(settings: Settings, services: Services) -> FastAPI:
    return create_app(settings, services)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://handoff.test") as c:
        yield c


@pytest.fixture
def api(client: httpx.AsyncClient, settings: Settings) -> Api:
    return Api(client, settings)


@pytest.fixture
def maildir(settings: Settings) -> Path:
    return Path(settings.maildir)


@pytest.fixture
async def base_url(app: FastAPI) -> AsyncIterator[str]:
    """The app served by a real uvicorn on 127.0.0.1 (streams need a real socket)."""
    async with serving(app) as url:
        yield url


@pytest.fixture
async def remote(base_url: str, settings: Settings) -> AsyncIterator[Api]:
    """The API over the real socket."""
    async with httpx.AsyncClient(base_url=base_url) as client:
        yield Api(client, settings)


@pytest.fixture
def access_log() -> Iterator[list[str]]:
    """What uvicorn's access log prints, as formatted lines."""
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    logger = logging.getLogger("uvicorn.access")
    handler, level = Keep(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
