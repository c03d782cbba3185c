"""handoff's pure core: the model, the rules, the escalation policy, the ports and the use cases.

It imports nothing but the standard library and attrs; adapters plug into its ports.
"""

from handoff_core.errors import (
    AlreadyClaimed,
    Conflict,
    Forbidden,
    HandoffError,
    IdempotencyConflict,
    InvalidTransition,
    NotFound,
    StorageUnavailable,
    ValidationError,
)
from handoff_core.model import (
    Channel,
    Delivery,
    DeliveryStatus,
    EscalationPolicy,
    EventType,
    Handoff,
    HandoffStatus,
    Intent,
    Member,
    NoticeKind,
    Role,
    Session,
    SessionStatus,
    Tier,
    TimelineEvent,
)
from handoff_core.notice import Notice, NoticeBody
from handoff_core.ports import WITHDRAWN, SendOutcome
from handoff_core.retry import RetrySchedule
from handoff_core.services.delivery import DeliveryService, DeliverySettings
from handoff_core.services.handoffs import HandoffService
from handoff_core.services.members import MemberService
from handoff_core.services.queries import EscalationStats, Queries
from handoff_core.services.streams import Replay, StreamService
from handoff_core.services.webhooks import Registered, WebhookService
from handoff_core.stream import StreamEvent, StreamEventType
from handoff_core.webhooks import WebhookEndpoint, WebhookFormat, WebhookRequest

__all__ = [
    "WITHDRAWN",
    "AlreadyClaimed",
    "Channel",
    "Conflict",
    "Delivery",
    "DeliveryService",
    "DeliverySettings",
    "DeliveryStatus",
    "EscalationPolicy",
    "EscalationStats",
    "EventType",
    "Forbidden",
    "Handoff",
    "HandoffError",
    "HandoffService",
    "HandoffStatus",
    "IdempotencyConflict",
    "Intent",
    "InvalidTransition",
    "Member",
    "MemberService",
    "NotFound",
    "Notice",
    "NoticeBody",
    "NoticeKind",
    "Queries",
    "Registered",
    "Replay",
    "RetrySchedule",
    "Role",
    "SendOutcome",
    "Session",
    "SessionStatus",
    "StorageUnavailable",
    "StreamEvent",
    "StreamEventType",
    "StreamService",
    "Tier",
    "TimelineEvent",
    "ValidationError",
    "WebhookEndpoint",
    "WebhookFormat",
    "WebhookRequest",
    "WebhookService",
]
