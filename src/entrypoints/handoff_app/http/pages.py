"""The pages a person opens: the escalation inbox (SPEC §12) and the claim link of an email (§11).

Server-rendered with Jinja2 (autoescaped: every summary, note and name is shown as text) and one
small script of our own; no CDN, nothing but this service's own origin. Every page carries a
Content-Security-Policy that allows only this service's scripts. A GET never changes anything but
a sign-in link, which is spent when opened; the claim page's button is the only thing that claims.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Annotated, Any
from urllib.parse import parse_qs

import jinja2
from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse, Response

from handoff_app.container import Services
from handoff_app.http import browser
from handoff_app.http.auth import ServicesDep, SettingsDep, mint_token, read_token
from handoff_app.http.errors import ApiRefusal
from handoff_app.settings import Settings
from handoff_core.errors import (
    AlreadyClaimed,
    Conflict,
    Forbidden,
    HandoffError,
    NotAMember,
    NotFound,
    StorageUnavailable,
)
from handoff_core.links import ClaimTicket, LinkRefused
from handoff_core.model import Handoff, HandoffStatus, Member
from handoff_core.services.signin import SignInService

log = logging.getLogger("handoff.pages")

router = APIRouter(include_in_schema=False)

CODE_MAX = 200


@cache
def _templates() -> jinja2.Environment:
    """Built on first use, never at import time."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader("handoff_app", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )


def _page(request: Request, name: str, status: int = 200, **values: Any) -> HTMLResponse:
    base = browser.base_path(request)
    html = _templates().get_template(name).render(base=base, static=f"{base}/static", **values)
    return HTMLResponse(html, status_code=status, headers=browser.PAGE_HEADERS)


def _notice(request: Request, status: int, title: str, message: str, **extra: Any) -> HTMLResponse:
    """A page that says one thing plainly (a refusal, an expired link, a store that is down)."""
    return _page(request, "notice.html", status, title=title, message=message, **extra)


def _when(at: datetime | None) -> str:
    return "" if at is None else at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _names(members: list[Member]) -> dict[str, str]:
    return {m.id: m.name for m in members}


def _card(handoff: Handoff, names: dict[str, str]) -> dict[str, Any]:
    """What the inbox shows of one escalation (the same fields its script builds from events)."""
    return {
        "handoff_id": handoff.id,
        "session_id": handoff.session_id,
        "problem_summary": str(handoff.snapshot.get("problem_summary", "")),
        "engineer_notes": handoff.engineer_notes,
        "actor_id": handoff.created_by,
        "actor_name": names.get(handoff.created_by, handoff.created_by),
        "at": handoff.created_at.astimezone(UTC).isoformat(),
        "when": _when(handoff.created_at),
    }


def _conversation(snapshot: dict[str, Any]) -> tuple[list[dict[str, str]], str]:
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


async def _signed_in(request: Request, settings: Settings, services: Services) -> Member | None:
    """The member the session cookie names, if it is valid and they are still current."""
    cookie = browser.session_token(request)
    if cookie is None:
        return None
    try:
        account_id, member_id = read_token(settings, cookie)
    except ApiRefusal:
        return None
    member = await services.members.get(account_id, member_id)
    return member if member is not None and member.is_current else None


# --- the inbox --------------------------------------------------------------------------------


@router.get("/", response_class=HTMLResponse)
@router.get("/inbox", response_class=HTMLResponse)
async def inbox(request: Request, services: ServicesDep, settings: SettingsDep) -> Response:
    try:
        member = await _signed_in(request, settings, services)
        if member is None:
            return _page(request, "signin.html", 401)
        if not member.is_senior:
            return _notice(
                request,
                403,
                "The inbox is for seniors",
                f"{member.name}, your role ({member.role.value}) can read escalations but not "
                "claim them, so there is no inbox for you here.",
            )
        queue = await services.queries.queue(member.account_id, member.id, "open")
        names = _names(await services.members.members(member.account_id))
    except StorageUnavailable:
        return _notice(request, 503, "Try again shortly", "The store cannot be reached just now.")
    cookie = browser.session_token(request) or ""
    return _page(
        request,
        "inbox.html",
        member=member,
        cards=[_card(h, names) for h in queue],
        boot={
            "member_id": member.id,
            "names": names,
            "csrf": browser.csrf_token(settings, cookie),
            "api": f"{browser.base_path(request)}/api/v1",
        },
    )


@router.get("/login/{code}", response_class=HTMLResponse)
async def login(
    request: Request,
    code: Annotated[str, Path(max_length=CODE_MAX)],
    services: ServicesDep,
    settings: SettingsDep,
) -> Response:
    """Spend a one-time sign-in link: set the session cookie, then go to the inbox.

    The inbox is reached by a page of ours rather than a redirect, so the SameSite=Strict cookie
    goes with it even when the link was opened from another site (a chat, a mail client)."""
    try:
        member = await SignInService(services.uow, services.clock).redeem(code)
    except NotFound:
        return _notice(
            request,
            410,
            "This sign-in link no longer works",
            "Sign-in links work once and expire. Ask for a new one "
            "(handoff login-link --account A --member ID).",
        )
    except NotAMember:
        return _notice(
            request, 403, "You can no longer sign in", "Your membership is inactive or removed."
        )
    except StorageUnavailable:
        return _notice(request, 503, "Try again shortly", "The store cannot be reached just now.")
    token = mint_token(
        settings, member.account_id, member.id, browser.SESSION_SECONDS, now=services.clock.now()
    )
    response = _page(request, "signed_in.html", member=member)
    browser.set_session_cookie(response, request, token)
    log.info("signed in", extra={"account_id": member.account_id, "member_id": member.id})
    return response


@router.post("/logout", response_class=HTMLResponse)
async def logout(request: Request, settings: SettingsDep) -> Response:
    if not browser.same_origin(request, settings):
        return _notice(request, 403, "Not signed out", "That request came from another site.")
    response = _notice(request, 200, "Signed out", "You are signed out of the inbox.")
    browser.clear_session_cookie(response, request)
    return response


# --- claim from the email ---------------------------------------------------------------------


LINK_WORDS = {
    "malformed": (
        400,
        "This is not a claim link",
        "The address is incomplete or was not made by this service. Open the link from the "
        "email again, whole.",
    ),
    "tampered": (
        400,
        "This link was changed",
        "The link does not match what this service sent: it was altered, or it was made for "
        "another installation. Open the link from the email again.",
    ),
    "expired": (
        410,
        "This link has expired",
        "Claim links work for a limited time. The escalation may still be open in the inbox.",
    ),
}


async def _ticket_page(
    request: Request,
    services: Services,
    settings: Settings,
    token: str,
    *,
    status: int = 200,
    outcome: str | None = None,
) -> Response:
    """The claim page of a token: the escalation, and the Claim button while it is open."""
    links = services.claim_links
    if links is None:
        return _notice(request, 404, "Claim links are off", "This service issues no claim links.")
    try:
        ticket = links.read(token)
    except LinkRefused as refused:
        code, title, message = LINK_WORDS[refused.reason]
        return _notice(request, code, title, message)
    try:
        member = await services.members.get(ticket.account_id, ticket.member_id)
        if member is None or not member.is_current:
            return _notice(
                request,
                403,
                "This link's recipient was removed",
                "The link was sent to a member who is no longer active in this account, so it "
                "cannot claim anything.",
            )
        handoff = await services.queries.handoff(ticket.account_id, member.id, ticket.handoff_id)
        names = _names(await services.members.members(ticket.account_id))
    except NotFound:
        return _notice(
            request,
            404,
            "This escalation is gone",
            "The escalation this link names does not exist.",
        )
    except StorageUnavailable:
        return _notice(request, 503, "Try again shortly", "The store cannot be reached just now.")
    return _claim_page(request, settings, token, ticket, member, handoff, names, status, outcome)


def _claim_page(
    request: Request,
    settings: Settings,
    token: str,
    ticket: ClaimTicket,
    member: Member,
    handoff: Handoff,
    names: dict[str, str],
    status: int,
    outcome: str | None,
) -> Response:
    messages, context = _conversation(handoff.snapshot)
    can_claim = handoff.status is HandoffStatus.OPEN and member.is_senior
    why_not = ""
    if handoff.status is HandoffStatus.OPEN and not member.is_senior:
        why_not = "Your role can read escalations but not claim them."
    elif handoff.status is HandoffStatus.OPEN and handoff.created_by == member.id:
        can_claim, why_not = False, "You raised this escalation, so someone else has to take it."
    return _page(
        request,
        "claim.html",
        status,
        member=member,
        handoff=handoff,
        card=_card(handoff, names),
        claimer=names.get(handoff.claimed_by or "", handoff.claimed_by or ""),
        claimed_when=_when(handoff.claimed_at),
        closed_when=_when(handoff.closed_at),
        messages=messages,
        context=context,
        can_claim=can_claim,
        why_not=why_not,
        outcome=outcome,
        expires=_when(ticket.expires_at),
        csrf=browser.csrf_token(settings, token, "claim"),
    )


@router.get("/claim/{token}", response_class=HTMLResponse)
async def claim_page(
    request: Request,
    token: Annotated[str, Path(max_length=4096)],
    services: ServicesDep,
    settings: SettingsDep,
) -> Response:
    """Shows the escalation a claim link names; changes nothing (mail scanners open links)."""
    return await _ticket_page(request, services, settings, token)


@router.post("/claim/{token}", response_class=HTMLResponse)
async def claim_by_link(
    request: Request,
    token: Annotated[str, Path(max_length=4096)],
    services: ServicesDep,
    settings: SettingsDep,
) -> Response:
    """The Claim button: claims as the link's recipient, from this service's own page only."""
    form = await _form(request)
    csrf, handoff_id = form.get("csrf", ""), form.get("handoff_id", "")
    if not browser.same_origin(request, settings) or not browser.csrf_matches(
        settings, token, csrf, "claim"
    ):
        return _notice(
            request,
            403,
            "Not claimed",
            "That request did not come from this service's own claim page. Open the link from "
            "the email and press Claim there.",
        )
    links = services.claim_links
    if links is None:
        return await _ticket_page(request, services, settings, token)
    try:
        ticket = links.read(token)
    except LinkRefused:
        return await _ticket_page(request, services, settings, token)
    if handoff_id != ticket.handoff_id:
        return _notice(
            request,
            409,
            "This link is for another escalation",
            "The form and the link name different escalations; nothing was claimed.",
        )
    outcome, status = "claimed", 200
    try:
        await services.handoffs.claim(ticket.account_id, ticket.member_id, ticket.handoff_id)
    except AlreadyClaimed:
        outcome, status = "late", 409
    except NotAMember:
        pass  # the page says the recipient was removed
    except (Conflict, Forbidden):
        outcome, status = "refused", 409
    except HandoffError as exc:
        if isinstance(exc, StorageUnavailable):
            return _notice(request, 503, "Not claimed yet", "The store cannot be reached; retry.")
    return await _ticket_page(request, services, settings, token, status=status, outcome=outcome)


async def _form(request: Request) -> dict[str, str]:
    """An urlencoded form's fields, first value of each (the body limit already applies)."""
    try:
        body = (await request.body()).decode("utf-8")
    except UnicodeDecodeError:
        return {}
    return {k: v[0] for k, v in parse_qs(body, max_num_fields=20).items()}


def login_link(public_url: str, code: str) -> str:
    """The address a sign-in code is opened at."""
    return f"{public_url.rstrip('/')}/login/{code}"


LOGIN_TTL = timedelta(minutes=15)
