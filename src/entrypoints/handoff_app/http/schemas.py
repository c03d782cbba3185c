"""The API's JSON: request bodies checked at the edge, resources named as in SPEC §3.

Bodies are strict (unknown fields are refused, naming them); the core still checks every rule
it owns, so these models only keep out what no store could hold (NUL bytes, lone surrogates).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, field_validator

from handoff_core.model import (
    DEFAULT_MAX_REMINDERS,
    DEFAULT_PUSH_CONFIRM_SECONDS,
    DEFAULT_REMIND_AFTER_SECONDS,
    EMAIL_MAX,
    MAX_REMINDERS_LIMIT,
    MAX_TIERS,
    NAME_MAX,
    NOTES_MAX,
    PUSH_CONFIRM_MAX_SECONDS,
    REMIND_AFTER_MAX_SECONDS,
    REMIND_AFTER_MIN_SECONDS,
    SUMMARY_MAX,
    TIER_AFTER_MAX_SECONDS,
    Channel,
    Delivery,
    DeliveryStatus,
    EscalationPolicy,
    Handoff,
    HandoffStatus,
    Intent,
    Member,
    NoticeKind,
    Role,
    Session,
    SessionStatus,
    TimelineEvent,
)
from handoff_core.services.queries import EscalationStats
from handoff_core.stream import StreamEventType
from handoff_core.webhooks import URL_MAX, WebhookEndpoint, WebhookFormat

ID_PATTERN = r"^[^\s\x00-\x1f\x7f-\x9f/]+$"  # handoff_core.model.check_id, in a URL
KEY_PATTERN = r"^[\x21-\x7e]+$"
JSON_DEPTH_MAX = 64


def _storable(value: Any, where: str = "", depth: int = 0) -> None:
    """Refuse what no JSON store or response can keep: NUL characters, unpaired surrogates, and
    nesting deeper than JSON_DEPTH_MAX (serialisers stop a little past 250 levels)."""
    if depth > JSON_DEPTH_MAX:
        raise ValueError(f"must not nest deeper than {JSON_DEPTH_MAX} levels")
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError(f"{where}must not contain NUL characters".strip())
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"{where}must be valid Unicode text".strip()) from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _storable(key, "keys ", depth + 1)
            _storable(item, where, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _storable(item, where, depth + 1)


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*")
    @classmethod
    def _text_is_storable(cls, value: Any) -> Any:
        _storable(value)
        return value


# --- requests -----------------------------------------------------------------------------------


class MemberIn(Body):
    email: StrictStr = Field(min_length=3, max_length=EMAIL_MAX, examples=["erin@example.com"])
    name: StrictStr = Field(min_length=1, max_length=NAME_MAX)
    role: Role
    active: StrictBool = True


class SessionIn(Body):
    problem_summary: StrictStr = Field(max_length=SUMMARY_MAX)
    context: dict[str, Any] | None = Field(
        default=None, description="Any JSON object, at most 256 KiB serialised"
    )


class SessionPatch(Body):
    problem_summary: StrictStr | None = Field(default=None, max_length=SUMMARY_MAX)
    context: dict[str, Any] | None = None


class HandoffIn(Body):
    intent: Intent
    engineer_notes: StrictStr = Field(default="", max_length=NOTES_MAX)


class TierIn(Body):
    roles: list[Role] = Field(min_length=1)
    after_seconds: StrictInt = Field(default=0, ge=0, le=TIER_AFTER_MAX_SECONDS)


class PolicyIn(Body):
    """Fields left out take their defaults."""

    roles: list[Role] | None = Field(default=None, min_length=1)
    tiers: list[TierIn] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_TIERS,
        description="Who is told when (SPEC §14): the first tier at 0 s, later ones after "
        "more seconds each, if nobody claimed it by then. `roles` is then their union.",
    )
    email_online_too: StrictBool = False
    remind_after_seconds: StrictInt = Field(
        default=DEFAULT_REMIND_AFTER_SECONDS,
        ge=REMIND_AFTER_MIN_SECONDS,
        le=REMIND_AFTER_MAX_SECONDS,
    )
    max_reminders: StrictInt = Field(default=DEFAULT_MAX_REMINDERS, ge=0, le=MAX_REMINDERS_LIMIT)
    push_confirm_seconds: StrictInt = Field(
        default=DEFAULT_PUSH_CONFIRM_SECONDS,
        ge=0,
        le=PUSH_CONFIRM_MAX_SECONDS,
        description="A push not marked seen within this many seconds is emailed as well; 0: never",
    )


class WebhookIn(Body):
    url: StrictStr = Field(
        min_length=1, max_length=URL_MAX, examples=["https://hooks.example.com/handoff"]
    )
    events: list[StreamEventType] = Field(
        min_length=1,
        description="The stream's event names to post",
        examples=[["escalation.created"]],
    )
    format: WebhookFormat = Field(
        default=WebhookFormat.STANDARD,
        description="`standard`: signed Standard Webhooks JSON; `slack`: a Slack/Teams message",
    )


class SeenIn(Body):
    last_event_id: StrictStr = Field(
        min_length=1, max_length=19, description="The `id:` of the last stream event shown"
    )


# --- resources ----------------------------------------------------------------------------------


def utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def utc_or_none(value: datetime | None) -> datetime | None:
    return None if value is None else utc(value)


class MemberOut(BaseModel):
    id: str
    account_id: str
    email: str
    name: str
    role: Role
    active: bool
    deleted_at: datetime | None

    @classmethod
    def of(cls, m: Member) -> MemberOut:
        return cls(
            id=m.id,
            account_id=m.account_id,
            email=m.email,
            name=m.name,
            role=m.role,
            active=m.active,
            deleted_at=utc_or_none(m.deleted_at),
        )


class TierOut(BaseModel):
    roles: list[Role]
    after_seconds: int


class PolicyOut(BaseModel):
    roles: list[Role]
    email_online_too: bool
    remind_after_seconds: int
    max_reminders: int
    push_confirm_seconds: int
    tiers: list[TierOut]

    @classmethod
    def of(cls, p: EscalationPolicy) -> PolicyOut:
        return cls.model_validate(p.to_dict())


class SessionOut(BaseModel):
    id: str
    account_id: str
    owner_id: str
    assignee_id: str
    status: SessionStatus
    problem_summary: str
    context: dict[str, Any]
    handoff_count: int
    escalation_package: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime
    version: int

    @classmethod
    def of(cls, s: Session) -> SessionOut:
        return cls(
            id=s.id,
            account_id=s.account_id,
            owner_id=s.owner_id,
            assignee_id=s.assignee_id,
            status=s.status,
            problem_summary=s.problem_summary,
            context=s.context,
            handoff_count=s.handoff_count,
            escalation_package=s.escalation_package,
            created_at=utc(s.created_at),
            updated_at=utc(s.updated_at),
            version=s.version,
        )


class HandoffOut(BaseModel):
    id: str
    account_id: str
    session_id: str
    intent: Intent
    engineer_notes: str
    created_by: str
    created_at: datetime
    snapshot: dict[str, Any]
    status: HandoffStatus
    claimed_by: str | None
    claimed_at: datetime | None
    closed_at: datetime | None
    policy: PolicyOut | None
    tiers_reached: int = Field(description="How many of the policy's tiers were told so far")

    @classmethod
    def of(cls, h: Handoff) -> HandoffOut:
        return cls(
            id=h.id,
            account_id=h.account_id,
            session_id=h.session_id,
            intent=h.intent,
            engineer_notes=h.engineer_notes,
            created_by=h.created_by,
            created_at=utc(h.created_at),
            snapshot=h.snapshot,
            status=h.status,
            claimed_by=h.claimed_by,
            claimed_at=utc_or_none(h.claimed_at),
            closed_at=utc_or_none(h.closed_at),
            policy=None if h.policy is None else PolicyOut.of(h.policy),
            tiers_reached=h.tiers_reached,
        )


class DeliveryOut(BaseModel):
    id: str
    account_id: str
    handoff_id: str
    recipient_id: str
    channel: Channel
    kind: NoticeKind
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    sent_at: datetime | None
    message_id: str
    seen_at: datetime | None = Field(description="A push: when its recipient marked it seen")

    @classmethod
    def of(cls, d: Delivery) -> DeliveryOut:
        return cls(
            id=d.id,
            account_id=d.account_id,
            handoff_id=d.handoff_id,
            recipient_id=d.recipient_id,
            channel=d.channel,
            kind=d.kind,
            status=d.status,
            attempts=d.attempts,
            next_attempt_at=utc(d.next_attempt_at),
            last_error=d.last_error,
            sent_at=utc_or_none(d.sent_at),
            message_id=d.message_id,
            seen_at=utc_or_none(d.seen_at),
        )


class TimelineEventOut(BaseModel):
    id: int | None
    type: str
    actor_id: str | None
    at: datetime
    handoff_id: str | None
    session_id: str
    data: dict[str, Any]

    @classmethod
    def of(cls, e: TimelineEvent) -> TimelineEventOut:
        return cls(
            id=e.id,
            type=e.type.value,
            actor_id=e.actor_id,
            at=utc(e.at),
            handoff_id=e.handoff_id,
            session_id=e.session_id,
            data=e.data,
        )


class AnalyticsOut(BaseModel):
    escalated: int
    claimed: int
    withdrawn: int
    open: int
    claim_rate: float | None
    time_to_claim_p50_s: float | None
    time_to_claim_p90_s: float | None
    claims_by_member: dict[str, int]
    claims_by_tier: dict[str, int] = Field(
        description='Claims by the tier the escalation had reached when claimed ("1" first)'
    )

    @classmethod
    def of(cls, s: EscalationStats) -> AnalyticsOut:
        return cls(
            escalated=s.escalated,
            claimed=s.claimed,
            withdrawn=s.withdrawn,
            open=s.open,
            claim_rate=s.claim_rate,
            time_to_claim_p50_s=s.time_to_claim_p50_s,
            time_to_claim_p90_s=s.time_to_claim_p90_s,
            claims_by_member=s.claims_by_member,
            claims_by_tier=s.claims_by_tier,
        )


class WebhookOut(BaseModel):
    id: str
    url: str
    events: list[StreamEventType]
    format: WebhookFormat
    created_at: datetime
    updated_at: datetime
    secret: str | None = Field(
        default=None,
        description="The signing secret (`whsec_...`): shown once, in the reply that created it",
    )

    @classmethod
    def of(cls, w: WebhookEndpoint, *, show_secret: bool = False) -> WebhookOut:
        return cls(
            id=w.id,
            url=w.url,
            events=sorted(w.events),
            format=w.format,
            created_at=utc(w.created_at),
            updated_at=utc(w.updated_at),
            secret=w.secret if show_secret else None,
        )


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
