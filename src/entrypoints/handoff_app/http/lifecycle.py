"""Who owns the services: the app's own lifespan, a host application's, or the first request.

Starlette never runs a mounted sub-application's lifespan, so the services are also built on first
use; a host that wants them opened at start and closed at exit composes `handoff_lifespan(api)`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request

from handoff_app.container import Services, build_services
from handoff_app.settings import Settings
from handoff_core.errors import HandoffError, StorageUnavailable

log = logging.getLogger("handoff.http")


class ServiceSlot:
    """Holds the services of one app; builds them at most once, closes only what it built."""

    def __init__(self, settings: Settings, services: Services | None) -> None:
        self._settings = settings
        self._services = services
        self._owned = services is None
        self._lock: asyncio.Lock | None = None

    @property
    def settings(self) -> Settings:
        return self._settings

    @property
    def built(self) -> bool:
        return self._services is not None

    async def get(self) -> Services:
        if self._services is not None:
            return self._services
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._services is None:
                try:
                    self._services = await build_services(self._settings)
                except HandoffError:
                    raise
                except Exception as exc:
                    log.exception("could not open the services")
                    raise StorageUnavailable(
                        "the service could not open its store; see the server log"
                    ) from exc
        return self._services

    async def close(self) -> None:
        """Close the services if this slot built them; given services belong to the giver."""
        services, self._lock = self._services, None
        if services is None or not self._owned:
            return
        self._services = None
        await services.close()


def slot_of(app: FastAPI) -> ServiceSlot:
    slot = getattr(app.state, "handoff", None)
    if not isinstance(slot, ServiceSlot):
        raise RuntimeError("this FastAPI app was not made by handoff_app.http.create_app")
    return slot


@asynccontextmanager
async def handoff_lifespan(app: FastAPI) -> AsyncIterator[Services]:
    """Open the API's services at start and close them at exit.

    A host mounting the API composes it into its own lifespan:
    `async with handoff_lifespan(api): yield`.
    """
    slot = slot_of(app)
    services = await slot.get()
    try:
        yield services
    finally:
        await slot.close()


def _serving(request: Request) -> ServiceSlot:
    """The slot of the app serving this request (the sub-app when mounted)."""
    app = request.scope.get("app")
    if not isinstance(app, FastAPI):
        raise RuntimeError("no FastAPI app in the request scope")
    return slot_of(app)


async def get_services(request: Request) -> Services:
    return await _serving(request).get()


async def get_settings(request: Request) -> Settings:
    """The settings the app was made with (tokens, limits, heartbeats). `async` although it never
    waits: FastAPI runs a plain `def` dependency in its thread pool, a thread hop per request."""
    return _serving(request).settings
