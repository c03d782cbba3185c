"""The API's documents: readable operation ids, the stream's events, and /docs and /redoc offline.

Swagger UI and ReDoc come from the `fastapi-offline` package, which ships both bundles; the
service serves them itself, so the pages work on a machine without internet.
"""

from __future__ import annotations

import re
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles

DOCS_ASSETS = "/docs-assets"

# The docs pages may load and connect to this service alone: ReDoc's bundle shows a logo from a
# CDN in its menu, which this keeps from being fetched at all. Swagger UI starts from an inline
# script, and both style themselves inline.
DOCS_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; "
    "connect-src 'self'; frame-ancestors 'none'"
)


def _offline(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = DOCS_POLICY
    return page


# The names people read in generated clients; a route not listed gets its function's name in
# camelCase (`list_members` → `listMembers`).
OPERATION_IDS = {
    "healthz": "getHealth",
    "readyz": "getReadiness",
    "put_member": "putMember",
    "delete_member": "deleteMember",
    "list_members": "listMembers",
    "get_policy": "getEscalationPolicy",
    "put_policy": "putEscalationPolicy",
    "start_session": "startSession",
    "get_session": "getSession",
    "patch_session": "updateSession",
    "hand_off": "handOffSession",
    "resume": "resumeSession",
    "resolve": "resolveSession",
    "timeline": "getSessionTimeline",
    "get_handoff": "getHandoff",
    "claim": "claimHandoff",
    "withdraw": "withdrawHandoff",
    "deliveries": "listHandoffDeliveries",
    "queue": "listEscalations",
    "analytics": "getEscalationAnalytics",
    "stream": "streamEscalations",
    "seen": "markEscalationsSeen",
}


def operation_id(route: APIRoute) -> str:
    """`generate_unique_id_function` for FastAPI: a short camelCase id per route."""
    if route.name in OPERATION_IDS:
        return OPERATION_IDS[route.name]
    head, *rest = re.split(r"[^0-9A-Za-z]+", route.name) or [route.name]
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


_EVENT_DATA = {
    "type": "object",
    "required": ["handoff_id", "session_id", "problem_summary", "actor_id", "at"],
    "properties": {
        "handoff_id": {"type": "string"},
        "session_id": {"type": "string"},
        "problem_summary": {"type": "string"},
        "actor_id": {"type": ["string", "null"], "description": "Who did it (the claimer)"},
        "at": {"type": "string", "format": "date-time"},
        "engineer_notes": {"type": "string", "description": "escalation.created only"},
        "claimed_by": {"type": "string", "description": "escalation.claimed only"},
        "round": {"type": "integer", "description": "escalation.reminded: the reminder's round"},
    },
}

STREAM_EVENTS: dict[str, tuple[str, dict[str, Any]]] = {
    "stream.ready": (
        "First on every connection: `id:` and `data.position` are the account's current "
        "position, so a client that drops before any escalation resumes without loss.",
        {
            "type": "object",
            "required": ["position"],
            "properties": {"position": {"type": "integer"}},
        },
    ),
    "stream.reset": (
        "The `Last-Event-ID` given can no longer be replayed: reload the queue "
        "(`GET /api/v1/escalations?status=open`) and carry on.",
        {"type": "object"},
    ),
    "escalation.created": ("An escalation was raised; sent to its recipients.", _EVENT_DATA),
    "escalation.reminded": ("Still unclaimed: a reminder to its recipients.", _EVENT_DATA),
    "escalation.claimed": ("Someone claimed it; sent to every senior.", _EVENT_DATA),
    "escalation.withdrawn": ("The escalator took it back; sent to every senior.", _EVENT_DATA),
}


def _describe_stream(schema: dict[str, Any]) -> None:
    """Name each event of the stream, with its `data:` schema, in the stream's 200 response."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["StreamEventData"] = _EVENT_DATA
    for path, operations in schema.get("paths", {}).items():
        if not path.endswith("/escalations/stream"):
            continue
        ok = operations.get("get", {}).get("responses", {}).get("200")
        if ok is None:
            continue
        events = []
        for name, (words, data) in STREAM_EVENTS.items():
            ref = {"$ref": "#/components/schemas/StreamEventData"} if data is _EVENT_DATA else data
            events.append({"event": name, "description": words, "data": ref})
        ok["x-sse-events"] = events
        lines = "\n".join(f"- `{name}`: {words}" for name, (words, _) in STREAM_EVENTS.items())
        ok["description"] = (
            "Server-sent events, each with `event:`, `id:` (a decimal per-account sequence in "
            "commit order; send it back as `Last-Event-ID` to resume) and `data:` (JSON):\n\n"
            f"{lines}\n\nA comment line is sent every heartbeat."
        )


def install_openapi(app: FastAPI) -> None:
    """The document as FastAPI builds it, plus the stream's events; built once, on first ask."""

    built = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            _describe_stream(built())  # FastAPI's own, which it keeps in app.openapi_schema
        assert app.openapi_schema is not None
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def install_docs(app: FastAPI) -> None:
    """/docs (Swagger UI) and /redoc (ReDoc) from assets this service serves itself."""
    assets = resources.files("fastapi_offline") / "static"
    app.mount(DOCS_ASSETS, StaticFiles(directory=str(assets)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger(request: Request) -> HTMLResponse:
        root = str(request.scope.get("root_path", "")).rstrip("/")
        return _offline(
            get_swagger_ui_html(
                openapi_url=f"{root}{app.openapi_url}",
                title=f"{app.title} · API",
                swagger_js_url=f"{root}{DOCS_ASSETS}/swagger-ui-bundle.js",
                swagger_css_url=f"{root}{DOCS_ASSETS}/swagger-ui.css",
                swagger_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png",
            )
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = str(request.scope.get("root_path", "")).rstrip("/")
        return _offline(
            get_redoc_html(
                openapi_url=f"{root}{app.openapi_url}",
                title=f"{app.title} · API",
                redoc_js_url=f"{root}{DOCS_ASSETS}/redoc.standalone.js",
                redoc_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png",
                with_google_fonts=False,
            )
        )
