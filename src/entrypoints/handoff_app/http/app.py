"""The FastAPI application: SPEC §6 under /api/v1, plus health, readiness and the OpenAPI docs."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from fastapi import APIRouter, FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from handoff_app.container import Services
from handoff_app.http import errors
from handoff_app.http.auth import stranger_refusal
from handoff_app.http.claim_pages import router as claim_router
from handoff_app.http.docs import install_docs, install_openapi, operation_id
from handoff_app.http.ending import EndStreams
from handoff_app.http.lifecycle import ServiceSlot, get_services, handoff_lifespan
from handoff_app.http.limits import BodyLimit
from handoff_app.http.logs import redact_access_log
from handoff_app.http.pages import router as pages_router
from handoff_app.http.routes_handoffs import router as handoffs_router
from handoff_app.http.routes_members import router as members_router
from handoff_app.http.routes_sessions import router as sessions_router
from handoff_app.http.routes_stream import router as stream_router
from handoff_app.http.routes_webhooks import router as webhooks_router
from handoff_app.http.schemas import Health
from handoff_app.metrics import MeasureRequests, ProcessMetrics, exposition
from handoff_app.settings import Settings, SettingsError

log = logging.getLogger("handoff.http")

API_PREFIX = "/api/v1"
READY_TIMEOUT_SECONDS = 5.0

DESCRIPTION = """Hand off AI-assisted troubleshooting sessions: park one privately, or escalate it
to every eligible senior of the account until one claims it.

Every `/api/v1` call takes `Authorization: Bearer <JWT>` (HS256; claims `sub` = member id,
`account_id`, `exp`). Errors are `{"error": "<code>", "detail": "<words>"}`."""


def _probes() -> APIRouter:
    probes = APIRouter(tags=["health"])

    @probes.get("/healthz", response_model=Health, summary="The process is up")
    async def healthz() -> Health:
        return Health(status="ok")

    @probes.get(
        "/readyz",
        response_model=Health,
        summary="The database is reachable",
        responses={503: {"model": Health, "description": "The database is not reachable"}},
    )
    async def readyz(request: Request) -> Health | JSONResponse:
        try:
            with anyio.fail_after(READY_TIMEOUT_SECONDS):
                ready = await (await get_services(request)).ready()
        except Exception:
            log.warning("readiness check failed", exc_info=True)
            ready = False
        if not ready:
            return JSONResponse({"status": "unavailable"}, status_code=503)
        return Health(status="ok")

    return probes


def _metrics(process: ProcessMetrics) -> APIRouter:
    router = APIRouter()

    @router.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        """Prometheus's text format; 503 when the store cannot be read."""
        services = await get_services(request)
        body, content_type = await exposition(
            process, services.figures, services.clock.now(), services.delivery
        )
        return Response(body, media_type=content_type)

    return router


def create_app(settings: Settings, services: Services | None = None) -> FastAPI:
    """The HTTP API over `services`, or over services built from `settings` when first needed.

    Run on its own, its lifespan opens the services at start and closes them at exit. Mounted in
    a host application (whose server never runs a sub-app's lifespan), the services are built on
    the first request; the host composes `handoff_lifespan(api)` to open and close them itself.
    Services passed in belong to the caller, who closes them.
    """
    if not settings.jwt_secret:
        raise SettingsError("HANDOFF_JWT_SECRET is not set; the HTTP API needs it to check tokens")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with handoff_lifespan(app):
            yield

    app = FastAPI(
        title="handoff",
        version="1",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served offline by install_docs
        redoc_url=None,
        generate_unique_id_function=operation_id,
    )
    app.state.handoff = ServiceSlot(settings, services)
    errors.install(app, vet_invalid=stranger_refusal)
    app.add_middleware(
        BodyLimit, limit=settings.body_limit_bytes, body_seconds=settings.body_timeout_seconds
    )
    app.add_middleware(EndStreams)
    if settings.metrics:
        process = ProcessMetrics()
        app.include_router(_metrics(process))
        app.add_middleware(MeasureRequests, process=process)
    if settings.cors_origins:
        # Outermost, so a preflight is answered before anything else looks at it. Bearer tokens
        # only: the inbox's cookie is SameSite=Strict and never meant for another origin.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "Last-Event-ID"],
            expose_headers=["WWW-Authenticate"],
            allow_credentials=False,
            max_age=600,
        )
    app.include_router(_probes())
    for router in (
        members_router,
        sessions_router,
        handoffs_router,
        stream_router,
        webhooks_router,
    ):
        app.include_router(router, prefix=API_PREFIX)
    app.include_router(pages_router)
    app.include_router(claim_router)
    app.mount("/static", StaticFiles(packages=[("handoff_app", "static")]), name="handoff-static")
    install_docs(app)
    install_openapi(app)
    redact_access_log()
    return app


__all__ = ["API_PREFIX", "create_app"]
