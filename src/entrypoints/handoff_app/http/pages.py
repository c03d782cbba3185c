"""The escalation inbox (SPEC §12) and sign-in by a one-time link.

Server-rendered with Jinja2 and one small script of our own (`static/inbox.js`), which keeps the
queue live over the stream; no CDN, nothing but this service's own origin. A GET changes nothing
but a sign-in link, which is spent when opened.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse, Response

from handoff_app.container import Services
from handoff_app.http import browser, views
from handoff_app.http.auth import ServicesDep, SettingsDep, mint_token, read_token
from handoff_app.http.errors import ApiRefusal
from handoff_app.settings import Settings
from handoff_core.errors import NotAMember, NotFound, StorageUnavailable
from handoff_core.model import Member
from handoff_core.services.signin import SignInService

log = logging.getLogger("handoff.pages")

router = APIRouter(include_in_schema=False)

CODE_MAX = 200


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


@router.get("/", response_class=HTMLResponse)
@router.get("/inbox", response_class=HTMLResponse)
async def inbox(request: Request, services: ServicesDep, settings: SettingsDep) -> Response:
    """The signed-in senior's inbox (the open queue, oldest first; its script keeps it live), the
    sign-in page (401) for anyone else, or a plain word for a viewer (403)."""
    try:
        member = await _signed_in(request, settings, services)
        if member is None:
            return views.page(request, "signin.html", 401)
        if not member.is_senior:
            return views.notice(
                request,
                403,
                "The inbox is for seniors",
                f"{member.name}, your role ({member.role.value}) can read escalations but not "
                "claim them, so there is no inbox for you here.",
            )
        queue = await services.queries.queue(member.account_id, member.id, "open")
        names = views.names_of(await services.members.members(member.account_id))
    except StorageUnavailable:
        return views.notice(
            request, 503, "Try again shortly", "The store cannot be reached just now."
        )
    cookie = browser.session_token(request) or ""
    return views.page(
        request,
        "inbox.html",
        member=member,
        cards=[views.card(h, names) for h in queue],
        boot={
            "member_id": member.id,
            "names": names,
            "csrf": browser.csrf_token(settings, cookie),
            "api": f"{browser.base_path(request)}/api/v1",
        },
    )


@router.get("/login/{code}", response_class=HTMLResponse)
async def login_page(request: Request, code: Annotated[str, Path(max_length=CODE_MAX)]) -> Response:
    """The sign-in link's page: a button that spends the link. Opening the link (a GET, as mail
    scanners and chat previews do) spends nothing."""
    return views.page(request, "sign_in_link.html", code=code)


@router.post("/login/{code}", response_class=HTMLResponse)
async def login(
    request: Request,
    code: Annotated[str, Path(max_length=CODE_MAX)],
    services: ServicesDep,
    settings: SettingsDep,
) -> Response:
    """Spend a one-time sign-in link (from its own page's button only): set the session cookie,
    then go to the inbox.

    The inbox is reached by a page of ours rather than a redirect, so the SameSite=Strict cookie
    goes with it."""
    if not browser.same_origin(request, settings):
        return views.notice(request, 403, "Not signed in", "That request came from another site.")
    try:
        member = await SignInService(services.uow, services.clock).redeem(code)
    except NotFound:
        return views.notice(
            request,
            410,
            "This sign-in link no longer works",
            "Sign-in links work once and expire. Ask for a new one "
            "(handoff login-link --account A --member ID).",
        )
    except NotAMember:
        return views.notice(
            request, 403, "You can no longer sign in", "Your membership is inactive or removed."
        )
    except StorageUnavailable:
        return views.notice(
            request, 503, "Try again shortly", "The store cannot be reached just now."
        )
    token = mint_token(
        settings, member.account_id, member.id, browser.SESSION_SECONDS, now=services.clock.now()
    )
    response = views.page(request, "signed_in.html", member=member)
    browser.set_session_cookie(response, request, token)
    log.info("signed in", extra={"account_id": member.account_id, "member_id": member.id})
    return response


@router.post("/logout", response_class=HTMLResponse)
async def logout(request: Request, settings: SettingsDep) -> Response:
    """Clear the session cookie (from this service's own page only)."""
    if not browser.same_origin(request, settings):
        return views.notice(request, 403, "Not signed out", "That request came from another site.")
    response = views.notice(request, 200, "Signed out", "You are signed out of the inbox.")
    browser.clear_session_cookie(response, request)
    return response


def login_link(public_url: str, code: str) -> str:
    """The address a sign-in code is opened at."""
    return f"{public_url.rstrip('/')}/login/{code}"
