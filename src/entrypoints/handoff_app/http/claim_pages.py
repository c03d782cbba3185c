"""Claim from the email (SPEC §11): the page a claim link opens, and its Claim button.

Opening the link (GET) shows the escalation and changes nothing, so mail scanners that fetch
links claim nothing; only the button's POST claims, as the link's recipient, and only from this
service's own page (Origin check and a CSRF token bound to the link).
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse, Response

from handoff_app.container import Services
from handoff_app.http import browser, views
from handoff_app.http.auth import ServicesDep, SettingsDep
from handoff_app.settings import Settings
from handoff_core.errors import (
    AlreadyClaimed,
    Conflict,
    Forbidden,
    NotAMember,
    NotFound,
    StorageUnavailable,
)
from handoff_core.links import ClaimTicket, LinkRefused
from handoff_core.model import Handoff, HandoffStatus, Member

router = APIRouter(include_in_schema=False)

TOKEN_MAX = 4096


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
        return views.notice(
            request, 404, "Claim links are off", "This service issues no claim links."
        )
    try:
        ticket = links.read(token)
    except LinkRefused as refused:
        code, title, message = LINK_WORDS[refused.reason]
        return views.notice(request, code, title, message)
    try:
        member = await services.members.get(ticket.account_id, ticket.member_id)
        if member is None or not member.is_current:
            return views.notice(
                request,
                403,
                "This link's recipient was removed",
                "The link was sent to a member who is no longer active in this account, so it "
                "cannot claim anything.",
            )
        handoff = await services.queries.handoff(ticket.account_id, member.id, ticket.handoff_id)
        names = views.names_of(await services.members.members(ticket.account_id))
    except NotAMember:
        return views.notice(
            request,
            403,
            "This link's recipient was removed",
            "The link was sent to a member who is no longer active in this account.",
        )
    except NotFound:
        return views.notice(
            request,
            404,
            "This escalation is gone",
            "The escalation this link names does not exist.",
        )
    except StorageUnavailable:
        return views.notice(
            request, 503, "Try again shortly", "The store cannot be reached just now."
        )
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
    messages, context = views.conversation(handoff.snapshot)
    can_claim = handoff.status is HandoffStatus.OPEN and member.is_senior
    why_not = ""
    if handoff.status is HandoffStatus.OPEN and not member.is_senior:
        why_not = "Your role can read escalations but not claim them."
    elif handoff.status is HandoffStatus.OPEN and handoff.created_by == member.id:
        can_claim, why_not = False, "You raised this escalation, so someone else has to take it."
    return views.page(
        request,
        "claim.html",
        status,
        member=member,
        handoff=handoff,
        card=views.card(handoff, names),
        claimer=names.get(handoff.claimed_by or "", handoff.claimed_by or ""),
        claimed_when=views.when(handoff.claimed_at),
        closed_when=views.when(handoff.closed_at),
        messages=messages,
        context=context,
        can_claim=can_claim,
        why_not=why_not,
        outcome=outcome,
        expires=views.when(ticket.expires_at),
        csrf=browser.csrf_token(settings, token, "claim"),
    )


@router.get("/claim/{token}", response_class=HTMLResponse)
async def claim_page(
    request: Request,
    token: Annotated[str, Path(max_length=TOKEN_MAX)],
    services: ServicesDep,
    settings: SettingsDep,
) -> Response:
    """Shows the escalation a claim link names; changes nothing (mail scanners open links)."""
    return await _ticket_page(request, services, settings, token)


@router.post("/claim/{token}", response_class=HTMLResponse)
async def claim_by_link(
    request: Request,
    token: Annotated[str, Path(max_length=TOKEN_MAX)],
    services: ServicesDep,
    settings: SettingsDep,
) -> Response:
    """The Claim button: claims as the link's recipient, from this service's own page only."""
    form = await _form(request)
    csrf, handoff_id = form.get("csrf", ""), form.get("handoff_id", "")
    if not browser.same_origin(request, settings) or not browser.csrf_matches(
        settings, token, csrf, "claim"
    ):
        return views.notice(
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
        return views.notice(
            request,
            409,
            "This link is for another escalation",
            "The form and the link name different escalations; nothing was claimed.",
        )
    outcome: str | None = "claimed"
    status = 200
    try:
        await services.handoffs.claim(ticket.account_id, ticket.member_id, ticket.handoff_id)
    except StorageUnavailable:
        return views.notice(request, 503, "Not claimed yet", "The store cannot be reached; retry.")
    except AlreadyClaimed:
        outcome, status = "late", 409
    except (NotAMember, NotFound):
        outcome = None  # the page that follows says the recipient or the escalation is gone
    except (Conflict, Forbidden):
        outcome, status = "refused", 409
    return await _ticket_page(request, services, settings, token, status=status, outcome=outcome)


async def _form(request: Request) -> dict[str, str]:
    """An urlencoded form's fields, first value of each; empty for anything else (the body
    limit already applies)."""
    try:
        fields = parse_qs((await request.body()).decode("utf-8"), max_num_fields=20)
    except ValueError:  # not UTF-8, or more fields than any form of ours has
        return {}
    return {k: v[0] for k, v in fields.items()}
