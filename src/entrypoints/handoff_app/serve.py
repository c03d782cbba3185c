"""The server process: the HTTP API and, unless told otherwise, the delivery worker beside it."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from handoff_app.container import Services
from handoff_app.http import create_app, handoff_lifespan
from handoff_app.settings import Settings

log = logging.getLogger("handoff.serve")

RUN_WORKER_ENV = "HANDOFF_SERVE_WORKER"
# gc.set_threshold for a long-running process of ours: a young generation of 100,000 objects
# (Python's default is 700), and the older generations collected less often too.
COLLECTOR_THRESHOLDS = (100_000, 50, 100)


def tune_collector() -> None:
    """Ask less of Python's cyclic garbage collector in a long-running process (`serve`,
    `worker`): what start-up made is frozen out of its passes (`gc.freeze`), and it collects at
    COLLECTOR_THRESHOLDS.

    Nearly everything a request or a send makes is freed by reference counting; the collector
    only looks for cycles, and a full pass over a process holding 1,000 open streams stopped
    everything for 100-250 ms. Measured by B3 (`python -m bench b3`, 1,000 streams): commit ->
    push p99 330-390 ms with the defaults, 83-94 ms (one process) and 158 ms (two) with these.
    """
    gc.freeze()
    gc.set_threshold(*COLLECTOR_THRESHOLDS)


@asynccontextmanager
async def delivery_worker(services: Services) -> AsyncIterator[asyncio.Task[None]]:
    """Run the delivery worker for as long as the block lasts; on exit it finishes its batch and
    gives back what it still holds."""
    stop = asyncio.Event()
    task = asyncio.get_running_loop().create_task(
        services.delivery.run(stop, poll_seconds=services.settings.worker_poll_seconds)
    )
    try:
        yield task
    finally:
        # Background sends first: they lease under the worker's id, so the worker's parting
        # release would otherwise free rows they are still sending, and they would send them
        # again (or another worker would).
        await services.dispatch.drain()
        stop.set()
        await task


def server_app(
    settings: Settings,
    *,
    run_worker: bool = True,
    services: Services | None = None,
    close_services: bool = False,
) -> FastAPI:
    """The API with a lifespan that opens the services (or takes the given ones) and, if asked,
    runs the worker in-process. Given services are closed at shutdown only if `close_services`:
    then the server's own shutdown closes them, before it reports a stopping signal."""
    app = create_app(settings, services)

    @asynccontextmanager
    async def lifespan(api: FastAPI) -> AsyncIterator[None]:
        try:
            async with handoff_lifespan(api) as opened:
                tune_collector()
                if run_worker:
                    async with delivery_worker(opened):
                        yield
                else:
                    yield
        finally:
            if services is not None and close_services:
                await services.close()

    app.router.lifespan_context = lifespan
    return app


def app_from_env() -> FastAPI:
    """For `uvicorn --factory` in each of `serve --workers N`: every process reads the settings
    once, at its own start."""
    return server_app(Settings.from_env(), run_worker=os.environ.get(RUN_WORKER_ENV, "1") == "1")


async def check_store(settings: Settings) -> None:
    """What `build_services` would refuse at a server's start, found once before any starts:
    a URL it cannot use, a database it cannot reach, a schema that is not this release's.
    An empty SQLite database is given its schema here, as every server start would."""
    if settings.is_memory:
        return
    from handoff_sql import SqlDatabase, ensure_schema, require_current_schema

    if not settings.is_postgres:
        await ensure_schema(settings.database_url)
    async with SqlDatabase(settings.database_url) as db:
        await require_current_schema(db)
