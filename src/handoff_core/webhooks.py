"""Outgoing webhooks (SPEC §14): an account's endpoints, the events they carry and the bodies
they are sent with, written once here so the outbox, the sender and the API agree.

An endpoint subscribes to stream event names. Every stream event an account commits becomes one
delivery per subscribed endpoint, on channel `webhook` in the same outbox as email: leased,
retried and recorded the same way. Its `payload` is the event, fixed when it was committed.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterable, Sequence
from datetime import datetime
from enum import StrEnum
from urllib.parse import urlsplit

from attrs import define, frozen

from handoff_core.errors import ValidationError
from handoff_core.model import (
    Channel,
    Delivery,
    JsonObject,
    Member,
    NoticeKind,
    check_id,
)
from handoff_core.notice import inbox_link
from handoff_core.policy import IdFactory
from handoff_core.stream import StreamEvent, StreamEventType

URL_MAX = 2_000
SECRET_PREFIX = "whsec_"


class WebhookFormat(StrEnum):
    """`standard`: the event as JSON, signed per Standard Webhooks. `slack`: a message that a
    Slack (or Teams) incoming webhook shows as it is."""

    STANDARD = "standard"
    SLACK = "slack"


KIND_OF = {
    StreamEventType.ESCALATION_CREATED: NoticeKind.ESCALATION,
    StreamEventType.ESCALATION_REMINDED: NoticeKind.REMINDER,
    StreamEventType.ESCALATION_CLAIMED: NoticeKind.CLOSURE,
    StreamEventType.ESCALATION_WITHDRAWN: NoticeKind.CLOSURE,
}
"""The notice kind of a webhook delivery. A claim cancels what is still pending of the other
kinds; `closure` (the claim or withdrawal itself) goes out after the escalation closed."""


def check_url(value: object) -> str:
    """An absolute http(s) URL with a host and no credentials; raises ValidationError naming
    `url`. Whether its host is a private address is the WebhookTargets port's question."""
    if not isinstance(value, str) or not value.strip():
        raise ValidationError("url", "must be an http(s) URL")
    url = value.strip()
    if len(url) > URL_MAX or not url.isascii() or any(ch.isspace() for ch in url):
        raise ValidationError("url", f"must be an ASCII URL of at most {URL_MAX} characters")
    try:
        parts = urlsplit(url)
        _ = parts.port  # a port that is not a number from 0 to 65535 raises ValueError here
    except ValueError:
        raise ValidationError("url", "is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError("url", "must be an absolute http:// or https:// URL")
    if parts.username is not None or parts.password is not None:
        raise ValidationError("url", "must not carry a user name or password")
    return url


def _events(value: object) -> frozenset[StreamEventType]:
    if isinstance(value, str) or not isinstance(value, list | tuple | set | frozenset):
        raise ValidationError("events", "must be a list of stream event names")
    names = ", ".join(t.value for t in StreamEventType)
    try:
        events = frozenset(StreamEventType(str(v)) for v in value)
    except ValueError:
        raise ValidationError("events", f"must be among {names}") from None
    if not events:
        raise ValidationError("events", f"must name at least one of {names}")
    return events


def _format(value: object) -> WebhookFormat:
    try:
        return WebhookFormat(str(value))
    except ValueError:
        raise ValidationError("format", "must be standard or slack") from None


def new_secret() -> str:
    """A signing secret in the Standard Webhooks shape: `whsec_` and 24 random bytes, base64."""
    return SECRET_PREFIX + base64.b64encode(os.urandom(24)).decode("ascii")


@define
class WebhookEndpoint:
    """Where an account's events are posted. The secret signs `standard` bodies; it is shown
    once, when the endpoint is created."""

    account_id: str
    id: str
    url: str
    events: frozenset[StreamEventType]
    format: WebhookFormat
    secret: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def register(
        cls,
        *,
        account_id: str,
        id: str,
        url: object,
        events: object,
        format: object = WebhookFormat.STANDARD,
        now: datetime,
    ) -> WebhookEndpoint:
        """A new endpoint with a fresh secret; raises ValidationError naming the bad field."""
        return cls(
            account_id=check_id("account_id", account_id),
            id=check_id("id", id),
            url=check_url(url),
            events=_events(events),
            format=_format(format),
            secret=new_secret(),
            created_at=now,
            updated_at=now,
        )

    def change(self, *, url: object, events: object, format: object, now: datetime) -> None:
        """Point it elsewhere or change what it carries; the secret stays."""
        self.url = check_url(url)
        self.events = _events(events)
        self.format = _format(format)
        self.updated_at = now

    def wants(self, event: StreamEventType | str) -> bool:
        """Whether this endpoint subscribes to the stream event named `event`."""
        return str(event) in {e.value for e in self.events}


def payload(event: StreamEvent) -> JsonObject:
    """The body of a `standard` webhook: Standard Webhooks' recommended `{type, timestamp,
    data}`, with the stream's own `data` and the event's stream id."""
    return {
        "type": event.type.value,
        "timestamp": event.data.get("at"),
        "data": {**event.data, "event_id": str(event.seq)},
    }


def deliveries_for(
    endpoints: Iterable[WebhookEndpoint],
    events: Sequence[StreamEvent],
    now: datetime,
    make_id: IdFactory,
) -> list[Delivery]:
    """One webhook delivery per committed stream event per endpoint that subscribes to it."""
    made: list[Delivery] = []
    hooks = list(endpoints)
    for event in events:
        for hook in hooks:
            if hook.account_id != event.account_id or not hook.wants(event.type):
                continue
            made.append(
                Delivery(
                    id=make_id(),
                    account_id=event.account_id,
                    handoff_id=event.handoff_id,
                    recipient_id=hook.id,
                    address=hook.url,
                    channel=Channel.WEBHOOK,
                    kind=KIND_OF[event.type],
                    created_at=now,
                    next_attempt_at=now,
                    round=int(event.data.get("round", 0) or 0),
                    payload=payload(event),
                )
            )
    return made


_HEADLINES = {
    StreamEventType.ESCALATION_CREATED.value: ":rotating_light: Escalation from {who}",
    StreamEventType.ESCALATION_REMINDED.value: ":alarm_clock: Still unclaimed, from {who}",
    StreamEventType.ESCALATION_CLAIMED.value: ":white_check_mark: Claimed by {actor}",
    StreamEventType.ESCALATION_WITHDRAWN.value: ":leftwards_arrow_with_hook: Withdrawn by {actor}",
}


def _mrkdwn(text: str) -> str:
    """Slack's three control characters, escaped as its docs ask."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_message(
    body: JsonObject,
    escalator: Member | None,
    actor: Member | None,
    public_url: str,
) -> JsonObject:
    """A Slack incoming-webhook message for a webhook payload: `text` (the notification and
    fallback) and `blocks` (a section with the summary, who escalated, and a link to claim it).

    A channel has no single recipient, so the link is the escalation inbox (SPEC §12), where
    whoever takes it signs in and claims; the emails carry each recipient's own claim link."""
    data = body.get("data") or {}
    summary = " ".join(str(data.get("problem_summary", "")).split()) or "(no summary)"
    who = escalator.name if escalator is not None else str(data.get("escalated_by", "someone"))
    acted = actor.name if actor is not None else str(data.get("actor_id", "someone"))
    headline = _HEADLINES.get(str(body.get("type")), "{who}").format(who=who, actor=acted)
    if data.get("tier"):
        headline += f" (tier {data['tier']}: nobody has taken it yet)"
    link = inbox_link(public_url)
    text = _mrkdwn(f"{headline}: {summary}")  # Slack reads `text` as mrkdwn too (notifications)
    section = (
        f"*{_mrkdwn(headline)}*\n*Problem:* {_mrkdwn(summary)}\n*Escalated by:* {_mrkdwn(who)}"
    )
    notes = str(data.get("engineer_notes", "") or "")
    if notes:
        section += f"\n*Notes:* {_mrkdwn(notes[:1500])}"
    blocks: list[JsonObject] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": section[:3000]}},
    ]
    if body.get("type") in (
        StreamEventType.ESCALATION_CREATED.value,
        StreamEventType.ESCALATION_REMINDED.value,
    ):
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": f"<{link}|Claim this escalation>"},
            }
        )
    return {"text": text[:3000], "blocks": blocks}


@frozen
class WebhookRequest:
    """One POST for a WebhookSender: `body` is sent as JSON; `standard` and `slack` alike are
    signed with the endpoint's secret, `delivery_id` being the Standard Webhooks `webhook-id`."""

    delivery_id: str
    endpoint_id: str
    url: str
    secret: str
    body: JsonObject
    account_id: str = ""

    @property
    def endpoint_key(self) -> str:
        """Names the endpoint across accounts (its id is unique only within one)."""
        return f"{self.account_id}\x00{self.endpoint_id}"
