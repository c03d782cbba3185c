"""What is loaded equals what was saved: generated sessions, handoffs and their deliveries,
unicode and nested context up to the 256 KiB limit, through SQLite and PostgreSQL (whose
deliveries go in as one array per column)."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handoff_core.errors import ValidationError
from handoff_core.model import (
    CONTEXT_MAX_BYTES,
    SENIOR_ROLES,
    Channel,
    Delivery,
    DeliveryStatus,
    EscalationPolicy,
    Handoff,
    HandoffStatus,
    Intent,
    NoticeKind,
    Session,
    SessionStatus,
    check_context,
)
from handoff_sql import SqlDatabase

# Text a database column can hold (the core refuses NUL and lone surrogates in text fields).
column_text = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"))
# Inside JSON, NUL is escaped and so allowed.
json_text = st.text(st.characters(exclude_categories=("Cs",)))
ids = st.text(
    st.characters(min_codepoint=33, max_codepoint=0x2FFF, exclude_categories=("Cs",)),
    min_size=1,
    max_size=40,
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | json_text
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(json_text, inner, max_size=5),
    max_leaves=40,
)
# A long run of one character reaches the size limit without making hypothesis build it.
blobs = st.builds(
    lambda ch, n: ch * n,
    st.characters(exclude_categories=("Cs",)),
    st.integers(min_value=0, max_value=CONTEXT_MAX_BYTES // 4),
)
zones = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))]
)
moments = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1), timezones=zones
)
small = st.integers(min_value=0, max_value=2**31 - 1)


@st.composite
def contexts(draw: st.DrawFn) -> dict[str, Any]:
    context = draw(st.dictionaries(json_text, json_values, max_size=6))
    if draw(st.booleans()):
        context["blob"] = draw(blobs)
    try:
        return check_context(context)
    except ValidationError:
        return {"too_big_replaced": True}


@st.composite
def sessions_and_handoffs(draw: st.DrawFn) -> tuple[Session, Handoff]:
    account = uuid.uuid4().hex
    session = Session(
        id=draw(ids),
        account_id=account,
        owner_id=draw(ids),
        assignee_id=draw(ids),
        status=draw(st.sampled_from(SessionStatus)),
        problem_summary=draw(column_text.filter(lambda t: len(t) <= 500)),
        context=draw(contexts()),
        created_at=draw(moments),
        updated_at=draw(moments),
        handoff_count=draw(small),
        escalation_package=draw(st.none() | st.dictionaries(json_text, json_values, max_size=4)),
    )
    policy = draw(
        st.none()
        | st.builds(
            EscalationPolicy,
            roles=st.frozensets(st.sampled_from(sorted(SENIOR_ROLES)), min_size=1),
            email_online_too=st.booleans(),
            remind_after_seconds=st.integers(min_value=1, max_value=30 * 24 * 3600),
            max_reminders=st.integers(min_value=0, max_value=50),
        )
    )
    handoff = Handoff(
        id=draw(ids),
        account_id=account,
        session_id=session.id,
        intent=draw(st.sampled_from(Intent)),
        engineer_notes=draw(column_text),
        created_by=draw(ids),
        created_at=draw(moments),
        snapshot=session.snapshot(),
        status=draw(st.sampled_from(HandoffStatus)),
        claimed_by=draw(st.none() | ids),
        claimed_at=draw(st.none() | moments),
        closed_at=draw(st.none() | moments),
        policy=policy,
        reminders_sent=draw(small),
        next_reminder_at=draw(st.none() | moments),
        idempotency_key=draw(st.none() | column_text),
        request_fingerprint=draw(st.none() | column_text),
    )
    return session, handoff


@st.composite
def deliveries_of(draw: st.DrawFn, handoff: Handoff) -> list[Delivery]:
    """Deliveries of `handoff` with every column drawn, distinct ids."""
    found = draw(st.lists(ids, max_size=25, unique=True))
    return [
        Delivery(
            id=delivery_id,
            account_id=handoff.account_id,
            handoff_id=handoff.id,
            recipient_id=draw(ids),
            address=draw(column_text),
            channel=draw(st.sampled_from(Channel)),
            kind=draw(st.sampled_from(NoticeKind)),
            created_at=draw(moments),
            next_attempt_at=draw(moments),
            status=draw(st.sampled_from(DeliveryStatus)),
            attempts=draw(small),
            last_error=draw(st.none() | column_text),
            sent_at=draw(st.none() | moments),
            round=draw(small),
            leased_by=draw(st.none() | column_text),
            leased_until=draw(st.none() | moments),
            stream_seq=draw(st.none() | st.integers(min_value=0, max_value=2**63 - 1)),
            confirm_by=draw(st.none() | moments),
            seen_at=draw(st.none() | moments),
            payload=draw(st.none() | st.dictionaries(json_text, json_values, max_size=4)),
        )
        for delivery_id in found
    ]


@st.composite
def saved_together(draw: st.DrawFn) -> tuple[Session, Handoff, list[Delivery]]:
    session, handoff = draw(sessions_and_handoffs())
    return session, handoff, draw(deliveries_of(handoff))


def _utc_times(obj: Session | Handoff | Delivery) -> bool:
    names = ("created_at", "updated_at", "claimed_at", "closed_at", "next_attempt_at", "sent_at",
             "leased_until", "confirm_by", "seen_at")  # fmt: skip
    times = [getattr(obj, n, None) for n in names]
    return all(t.utcoffset() == timedelta(0) for t in times if isinstance(t, datetime))


def test_what_is_loaded_equals_what_was_saved(sql_url: str) -> None:
    with asyncio.Runner() as runner:
        db = SqlDatabase(sql_url)

        async def round_trip(session: Session, handoff: Handoff, sent: list[Delivery]) -> None:
            async with db() as uow:
                await uow.sessions.add(session)
                await uow.handoffs.add(handoff)
                await uow.deliveries.add_many(sent)
                await uow.commit()
            async with db() as uow:
                loaded_session = await uow.sessions.get(session.account_id, session.id)
                loaded_handoff = await uow.handoffs.get(handoff.account_id, handoff.id)
                loaded = await uow.deliveries.for_handoff(handoff.account_id, handoff.id)
            assert sorted(loaded, key=lambda d: d.id) == sorted(sent, key=lambda d: d.id)
            assert all(_utc_times(d) for d in loaded)
            assert [json.dumps(d.payload) for d in sorted(loaded, key=lambda d: d.id)] == [
                json.dumps(d.payload) for d in sorted(sent, key=lambda d: d.id)
            ]
            assert loaded_session == session
            assert loaded_handoff == handoff
            assert loaded_session is not None and loaded_handoff is not None
            assert _utc_times(loaded_session) and _utc_times(loaded_handoff)
            # Same documents, same JSON: no number or key rewritten on the way.
            assert json.dumps(loaded_session.context) == json.dumps(session.context)

        @settings(
            max_examples=50,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(saved_together())
        def check(saved: tuple[Session, Handoff, list[Delivery]]) -> None:
            runner.run(round_trip(*saved))

        try:
            check()
        finally:
            runner.run(db.close())
