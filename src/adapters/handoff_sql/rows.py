"""Row ↔ domain object conversion: the only place that knows both the columns and the model.

Objects are built with their own constructors from plain values, so a loaded object is a fresh,
detached value: changing it changes nothing until a repository writes it back.
"""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any

from sqlalchemy.engine import RowMapping

from handoff_core.model import (
    Delivery,
    EscalationPolicy,
    EventType,
    Handoff,
    JsonObject,
    Member,
    Session,
    TimelineEvent,
)
from handoff_core.stream import StreamEvent, StreamEventType
from handoff_core.webhooks import WebhookEndpoint, WebhookFormat

Values = dict[str, Any]


def storable_text(text: str | None) -> str | None:
    """Neither database can keep NUL or a lone surrogate in text; outside text (an SMTP reply)
    may carry them, so they are replaced rather than failing the write."""
    if text is None:
        return None
    cleaned = text.replace("\x00", "\ufffd")
    try:
        cleaned.encode("utf-8")
    except UnicodeEncodeError:
        cleaned = cleaned.encode("utf-8", "replace").decode("utf-8")
    return cleaned


def copied(data: JsonObject) -> JsonObject:
    return copy.deepcopy(data)


def member_values(m: Member) -> Values:
    return {
        "account_id": m.account_id,
        "id": m.id,
        "email": m.email,
        "name": m.name,
        "role": m.role,
        "active": m.active,
        "deleted_at": m.deleted_at,
    }


def member_of(row: RowMapping) -> Member:
    return Member(
        id=row["id"],
        account_id=row["account_id"],
        email=row["email"],
        name=row["name"],
        role=row["role"],
        active=bool(row["active"]),
        deleted_at=row["deleted_at"],
    )


def session_values(s: Session) -> Values:
    return {
        "account_id": s.account_id,
        "id": s.id,
        "owner_id": s.owner_id,
        "assignee_id": s.assignee_id,
        "status": s.status,
        "problem_summary": s.problem_summary,
        "context": s.context,
        "handoff_count": s.handoff_count,
        "escalation_package": s.escalation_package,
        "created_at": s.created_at,
        "updated_at": s.updated_at,
        "version": s.version,
    }


def session_of(row: RowMapping) -> Session:
    return Session(
        id=row["id"],
        account_id=row["account_id"],
        owner_id=row["owner_id"],
        assignee_id=row["assignee_id"],
        status=row["status"],
        problem_summary=row["problem_summary"],
        context=row["context"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        handoff_count=row["handoff_count"],
        escalation_package=row["escalation_package"],
        version=row["version"],
    )


def policy_of(raw: Any) -> EscalationPolicy | None:
    return None if raw is None else EscalationPolicy.from_dict(raw)


def handoff_values(h: Handoff) -> Values:
    return {
        "account_id": h.account_id,
        "id": h.id,
        "session_id": h.session_id,
        "intent": h.intent,
        "engineer_notes": h.engineer_notes,
        "created_by": h.created_by,
        "created_at": h.created_at,
        "snapshot": h.snapshot,
        "status": h.status,
        "claimed_by": h.claimed_by,
        "claimed_at": h.claimed_at,
        "closed_at": h.closed_at,
        "policy": None if h.policy is None else h.policy.to_dict(),
        "reminders_sent": h.reminders_sent,
        "next_reminder_at": h.next_reminder_at,
        "tiers_reached": h.tiers_reached,
        "next_tier_at": h.next_tier_at,
        "idempotency_key": h.idempotency_key,
        "request_fingerprint": h.request_fingerprint,
    }


def handoff_of(row: RowMapping) -> Handoff:
    return Handoff(
        id=row["id"],
        account_id=row["account_id"],
        session_id=row["session_id"],
        intent=row["intent"],
        engineer_notes=row["engineer_notes"],
        created_by=row["created_by"],
        created_at=row["created_at"],
        snapshot=row["snapshot"],
        status=row["status"],
        claimed_by=row["claimed_by"],
        claimed_at=row["claimed_at"],
        closed_at=row["closed_at"],
        policy=policy_of(row["policy"]),
        reminders_sent=row["reminders_sent"],
        next_reminder_at=row["next_reminder_at"],
        tiers_reached=row["tiers_reached"],
        next_tier_at=row["next_tier_at"],
        idempotency_key=row["idempotency_key"],
        request_fingerprint=row["request_fingerprint"],
    )


def delivery_outcome(d: Delivery) -> Values:
    """The columns a send attempt changes."""
    return {
        "status": d.status,
        "attempts": d.attempts,
        "last_error": storable_text(d.last_error),
        "sent_at": d.sent_at,
        "next_attempt_at": d.next_attempt_at,
        "confirm_by": d.confirm_by,
    }


def delivery_values(d: Delivery) -> Values:
    return {
        "account_id": d.account_id,
        "id": d.id,
        "handoff_id": d.handoff_id,
        "recipient_id": d.recipient_id,
        "address": d.address,
        "channel": d.channel,
        "kind": d.kind,
        "created_at": d.created_at,
        "round": d.round,
        "leased_by": d.leased_by,
        "leased_until": d.leased_until,
        "stream_seq": d.stream_seq,
        "seen_at": d.seen_at,
        "payload": d.payload,
        **delivery_outcome(d),
    }


def delivery_of(row: RowMapping) -> Delivery:
    return Delivery(
        id=row["id"],
        account_id=row["account_id"],
        handoff_id=row["handoff_id"],
        recipient_id=row["recipient_id"],
        address=row["address"],
        channel=row["channel"],
        kind=row["kind"],
        created_at=row["created_at"],
        next_attempt_at=row["next_attempt_at"],
        status=row["status"],
        attempts=row["attempts"],
        last_error=row["last_error"],
        sent_at=row["sent_at"],
        round=row["round"],
        leased_by=row["leased_by"],
        leased_until=row["leased_until"],
        stream_seq=row["stream_seq"],
        confirm_by=row["confirm_by"],
        seen_at=row["seen_at"],
        payload=row["payload"],
    )


def event_values(e: TimelineEvent) -> Values:
    return {
        "account_id": e.account_id,
        "session_id": e.session_id,
        "handoff_id": e.handoff_id,
        "type": e.type.value,
        "actor_id": e.actor_id,
        "at": e.at,
        "data": e.data,
    }


def event_of(row: RowMapping) -> TimelineEvent:
    return TimelineEvent(
        id=row["id"],
        account_id=row["account_id"],
        session_id=row["session_id"],
        handoff_id=row["handoff_id"],
        type=EventType(row["type"]),
        actor_id=row["actor_id"],
        at=row["at"],
        data=row["data"],
    )


def stream_values(e: StreamEvent) -> Values:
    return {
        "account_id": e.account_id,
        "seq": e.seq,
        "type": e.type.value,
        "handoff_id": e.handoff_id,
        "audience": sorted(e.audience) if e.audience is not None else None,
        "data": e.data,
        "at": datetime.fromisoformat(str(e.data["at"])),
    }


def stream_of(row: RowMapping) -> StreamEvent:
    audience = row["audience"]
    return StreamEvent(
        account_id=row["account_id"],
        seq=int(row["seq"]),
        type=StreamEventType(row["type"]),
        handoff_id=row["handoff_id"],
        audience=frozenset(audience) if audience is not None else None,
        data=row["data"],
    )


def webhook_values(w: WebhookEndpoint) -> Values:
    return {
        "account_id": w.account_id,
        "id": w.id,
        "url": w.url,
        "events": sorted(e.value for e in w.events),
        "format": w.format.value,
        "secret": w.secret,
        "created_at": w.created_at,
        "updated_at": w.updated_at,
    }


def webhook_of(row: RowMapping) -> WebhookEndpoint:
    return WebhookEndpoint(
        account_id=row["account_id"],
        id=row["id"],
        url=row["url"],
        events=frozenset(StreamEventType(e) for e in row["events"]),
        format=WebhookFormat(row["format"]),
        secret=row["secret"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )
