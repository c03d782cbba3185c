"""Outgoing webhook endpoints of the account (SPEC §14); admins and owners only."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from handoff_app.http.auth import CallerDep, ServicesDep
from handoff_app.http.errors import documented
from handoff_app.http.schemas import ID_PATTERN, WebhookIn, WebhookOut
from handoff_core.model import ID_MAX

router = APIRouter(tags=["webhooks"])

WebhookId = Annotated[str, Path(min_length=1, max_length=ID_MAX, pattern=ID_PATTERN)]


@router.put(
    "/webhooks/{webhook_id}",
    response_model=WebhookOut,
    response_model_exclude_none=True,
    summary="Create or change a webhook endpoint (admin, owner)",
    description="Created: 201, with the signing `secret` shown this once. Changed: 200; the "
    "secret stays. A URL whose host is loopback, private or link-local is refused (422) unless "
    "the server sets HANDOFF_WEBHOOK_ALLOW_PRIVATE=1.",
    responses={201: {"model": WebhookOut}, **documented(401, 403, 413, 422, 503)},
)
async def put_webhook(
    webhook_id: WebhookId,
    body: WebhookIn,
    caller: CallerDep,
    services: ServicesDep,
    response: Response,
) -> WebhookOut:
    done = await services.webhooks.put(
        caller.account_id,
        caller.member_id,
        webhook_id,
        url=body.url,
        events=[e.value for e in body.events],
        format=body.format,
    )
    response.status_code = 201 if done.created else 200
    return WebhookOut.of(done.endpoint, show_secret=done.created)


@router.get(
    "/webhooks",
    response_model=list[WebhookOut],
    response_model_exclude_none=True,
    summary="The account's webhook endpoints (admin, owner)",
    responses=documented(401, 403, 503),
)
async def list_webhooks(caller: CallerDep, services: ServicesDep) -> list[WebhookOut]:
    endpoints = await services.webhooks.endpoints(caller.account_id, caller.member_id)
    return [WebhookOut.of(w) for w in endpoints]


@router.get(
    "/webhooks/{webhook_id}",
    response_model=WebhookOut,
    response_model_exclude_none=True,
    summary="One webhook endpoint (admin, owner; never its secret)",
    responses=documented(401, 403, 404, 422, 503),
)
async def get_webhook(
    webhook_id: WebhookId, caller: CallerDep, services: ServicesDep
) -> WebhookOut:
    return WebhookOut.of(
        await services.webhooks.get(caller.account_id, caller.member_id, webhook_id)
    )


@router.delete(
    "/webhooks/{webhook_id}",
    status_code=204,
    response_class=Response,
    summary="Remove a webhook endpoint (admin, owner); what it had not sent is cancelled",
    responses={204: {"description": "Removed"}, **documented(401, 403, 404, 422, 503)},
)
async def delete_webhook(
    webhook_id: WebhookId, caller: CallerDep, services: ServicesDep
) -> Response:
    await services.webhooks.remove(caller.account_id, caller.member_id, webhook_id)
    return Response(status_code=204)
