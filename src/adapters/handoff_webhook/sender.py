"""The WebhookSender port over httpx: one POST per delivery, signed per Standard Webhooks.

Each endpoint has its own bound on requests in flight, so an endpoint that hangs holds only its
own slots, never those of the others; every request has a timeout. Redirects are not followed
(a redirect could lead to an address the target check refused), so a 3xx is a refusal.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from datetime import UTC, datetime

import httpx
from attrs import frozen
from standardwebhooks.webhooks import Webhook

from handoff_core.errors import ValidationError
from handoff_core.ports import SendOutcome, WebhookSender
from handoff_core.webhooks import WebhookRequest
from handoff_webhook.targets import TargetGuard

log = logging.getLogger("handoff.webhook")

RETRIED_STATUSES = frozenset({408, 429})
REDACTED = "[redacted]"


def redacted_url(url: httpx.URL) -> str:
    """`url` as it may be logged: scheme, host and port, never the path or the query (a Slack or
    Teams webhook URL is itself the secret that lets anyone post)."""
    return str(url.copy_with(path=f"/{REDACTED}", query=None, fragment=None, userinfo=b""))


class RedactRequestUrls(logging.Filter):
    """On httpx's logger: its one INFO line per request (`HTTP Request: POST https://…`) names
    the host only. httpx logs every request of every client in the process on that one logger,
    so attaching this (which the webhook sender does) redacts other clients' lines too."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact the record's URL arguments in place; always keep the record (True)."""
        if isinstance(record.args, tuple):
            record.args = tuple(
                redacted_url(a) if isinstance(a, httpx.URL) else a for a in record.args
            )
        return True


def redact_httpx_log() -> None:
    """Attach RedactRequestUrls to httpx's logger, once per process."""
    logger = logging.getLogger("httpx")
    if not any(isinstance(f, RedactRequestUrls) for f in logger.filters):
        logger.addFilter(RedactRequestUrls())


@frozen
class WebhookSettings:
    """`timeout_seconds` bounds each request (connect, write and reading the reply);
    `per_endpoint` is how many requests one endpoint may have in flight; `allow_private` lets
    webhooks reach loopback and private addresses (HANDOFF_WEBHOOK_ALLOW_PRIVATE=1)."""

    timeout_seconds: float = 10.0
    per_endpoint: int = 4
    allow_private: bool = False
    user_agent: str = "handoff-webhooks/1"


def outcome_of(delivery_id: str, status: int) -> SendOutcome:
    """2xx is sent; 408, 429 and 5xx are retried; any other status is refused for good."""
    if 200 <= status < 300:
        return SendOutcome(delivery_id, ok=True)
    error = f"HTTP {status}"
    if status in RETRIED_STATUSES or status >= 500:
        return SendOutcome(delivery_id, ok=False, error=error)
    return SendOutcome(delivery_id, ok=False, permanent=True, error=error)


class HttpWebhookSender(WebhookSender):
    """Posts webhooks; `close()` closes its connection pool. Making one attaches
    RedactRequestUrls to httpx's logger, so no log line carries a webhook's path or query."""

    def __init__(self, settings: WebhookSettings | None = None) -> None:
        self.settings = settings or WebhookSettings()
        self.guard = TargetGuard(self.settings.allow_private)
        redact_httpx_log()
        self._client: httpx.AsyncClient | None = None
        self._slots: dict[str, asyncio.Semaphore] = {}

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.settings.timeout_seconds),
                follow_redirects=False,
                headers={"user-agent": self.settings.user_agent},
                trust_env=False,
            )
        return self._client

    def _slot(self, endpoint: str) -> asyncio.Semaphore:
        slot = self._slots.get(endpoint)
        if slot is None:
            slot = self._slots[endpoint] = asyncio.Semaphore(self.settings.per_endpoint)
        return slot

    async def send(self, requests: Sequence[WebhookRequest]) -> Sequence[SendOutcome]:
        """POST every request at once, each endpoint at most `per_endpoint` at a time; one
        outcome per request, in order. Never raises for what a request met."""
        return await asyncio.gather(*(self._send(r) for r in requests))

    def signed(self, request: WebhookRequest, at: datetime) -> tuple[bytes, dict[str, str]]:
        """The body and headers of a request: `webhook-id`, `webhook-timestamp` (Unix seconds)
        and `webhook-signature`, computed by the `standardwebhooks` library."""
        body = json.dumps(request.body, ensure_ascii=False, separators=(",", ":"))
        signature = Webhook(request.secret).sign(request.delivery_id, at, body)
        headers = {
            "content-type": "application/json",
            "webhook-id": request.delivery_id,
            "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": signature,
        }
        return body.encode("utf-8"), headers

    async def _send(self, request: WebhookRequest) -> SendOutcome:
        async with self._slot(request.endpoint_key):
            try:
                await self.guard.check(request.url)
            except ValidationError as exc:
                return SendOutcome(request.delivery_id, ok=False, permanent=True, error=str(exc))
            body, headers = self.signed(request, datetime.now(UTC))
            try:
                reply = await self._http().post(request.url, content=body, headers=headers)
            except httpx.TimeoutException:
                error = f"timed out after {self.settings.timeout_seconds:g} s"
                return SendOutcome(request.delivery_id, ok=False, error=error)
            except httpx.HTTPError as exc:
                return SendOutcome(
                    request.delivery_id, ok=False, error=f"{type(exc).__name__}: {exc}"
                )
            outcome = outcome_of(request.delivery_id, reply.status_code)
            if not outcome.ok:
                log.info(
                    "webhook not accepted",
                    extra={"endpoint_id": request.endpoint_id, "status": reply.status_code},
                )
            return outcome

    async def close(self) -> None:
        """Close the connection pool (a later send opens a new one)."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
