"""What every page shares: the Jinja2 templates (autoescaped), the page and notice responses, and
how an escalation is shown.

Every summary, note and name reaches a page through autoescaping (or the script's textContent),
so user text is always text. Every page carries `browser.PAGE_HEADERS` (a Content-Security-Policy
that allows only this service's own scripts, among others).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import cache
from typing import Any

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse

from handoff_app.http import browser
from handoff_core.model import Handoff, Member


@cache
def _templates() -> jinja2.Environment:
    """Built on first use, never at import time."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader("handoff_app", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )


def page(request: Request, name: str, status: int = 200, **values: Any) -> HTMLResponse:
    """Template `name` rendered with `values` (and `base`, `static`: where the service and its
    assets are mounted), with the pages' security headers."""
    base = browser.base_path(request)
    html = _templates().get_template(name).render(base=base, static=f"{base}/static", **values)
    return HTMLResponse(html, status_code=status, headers=browser.PAGE_HEADERS)


def notice(request: Request, status: int, title: str, message: str, **extra: Any) -> HTMLResponse:
    """A page that says one thing plainly (a refusal, an expired link, a store that is down)."""
    return page(request, "notice.html", status, title=title, message=message, **extra)


def when(at: datetime | None) -> str:
    """`2026-01-05 09:00 UTC`, or empty for no time."""
    return "" if at is None else at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def names_of(members: list[Member]) -> dict[str, str]:
    """Member id → name, for showing who did what."""
    return {m.id: m.name for m in members}


def card(handoff: Handoff, names: dict[str, str]) -> dict[str, Any]:
    """What the inbox shows of one escalation (the same fields its script builds from events)."""
    return {
        "handoff_id": handoff.id,
        "session_id": handoff.session_id,
        "problem_summary": str(handoff.snapshot.get("problem_summary", "")),
        "engineer_notes": handoff.engineer_notes,
        "actor_id": handoff.created_by,
        "actor_name": names.get(handoff.created_by, handoff.created_by),
        "at": handoff.created_at.astimezone(UTC).isoformat(),
        "when": when(handoff.created_at),
    }


def conversation(snapshot: dict[str, Any]) -> tuple[list[dict[str, str]], str]:
    """The snapshot's conversation (`context.messages` of role and content), and the rest of its
    context as indented JSON."""
    context = snapshot.get("context")
    if not isinstance(context, dict):
        return [], ""
    messages = context.get("messages")
    said = [
        {"role": str(m.get("role", "")), "content": str(m.get("content", ""))}
        for m in (messages if isinstance(messages, list) else [])
        if isinstance(m, dict)
    ]
    rest = {k: v for k, v in context.items() if k != "messages"}
    return said, json.dumps(rest, indent=2, ensure_ascii=False, default=str) if rest else ""
