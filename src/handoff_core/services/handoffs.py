"""Sessions and their handoffs: start, edit, park, resume, escalate, claim, withdraw, resolve."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import attrs

from handoff_core.errors import (
    AlreadyClaimed,
    Conflict,
    IdempotencyConflict,
    InvalidTransition,
    ValidationError,
)
from handoff_core.model import (
    NOTES_MAX,
    Channel,
    Delivery,
    EscalationPolicy,
    EventType,
    Handoff,
    HandoffStatus,
    Intent,
    NoticeKind,
    Session,
    TimelineEvent,
    check_text,
)
from handoff_core.policy import IdFactory, new_id, plan
from handoff_core.ports import Announcer, Clock, Presence, UnitOfWork, UnitOfWorkFactory
from handoff_core.services.common import (
    SilentAnnouncer,
    acting_member,
    announce,
    append_stream,
    existing_handoff,
    existing_session,
    log,
)
from handoff_core.stream import (
    StreamEvent,
    escalation_claimed,
    escalation_created,
    escalation_withdrawn,
)

IDEMPOTENCY_KEY_MAX = 200


class NobodyOnline:
    """Presence when no live push exists: everyone is reached by email."""

    async def online(self, account_id: str, member_ids: Any) -> frozenset[str]:
        return frozenset()


def _fingerprint(session_id: str, intent: Intent, notes: str, actor_id: str) -> str:
    raw = json.dumps([session_id, intent.value, notes, actor_id], ensure_ascii=False)
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def _event(
    type: EventType,
    session: Session,
    handoff: Handoff | None,
    actor_id: str | None,
    at: Any,
    **data: Any,
) -> TimelineEvent:
    return TimelineEvent(
        account_id=session.account_id,
        session_id=session.id,
        type=type,
        at=at,
        handoff_id=handoff.id if handoff is not None else None,
        actor_id=actor_id,
        data=data,
    )


class HandoffService:
    """The rules of SPEC §4, each in one unit of work; the announcer hears only of commits."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        clock: Clock,
        *,
        presence: Presence | None = None,
        announcer: Announcer | None = None,
        make_id: IdFactory = new_id,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._presence: Presence = presence or NobodyOnline()
        self._announcer: Announcer = announcer or SilentAnnouncer()
        self._make_id = make_id

    async def _online(self, account_id: str, member_ids: list[str]) -> frozenset[str]:
        """Presence is only a hint for the channel: if it cannot answer, everyone gets email
        rather than the escalation failing."""
        try:
            return await self._presence.online(account_id, member_ids)
        except Exception:
            log.exception(
                "presence lookup failed; emailing everyone", extra={"account_id": account_id}
            )
            return frozenset()

    async def _online_eligible(self, account_id: str, actor_id: str) -> frozenset[str]:
        """Who an escalation would reach that has a live stream, asked before its unit of work:
        from inside it, presence (its own read) would take a second pooled connection while the
        first is held, and a full pool would wait on itself. The unit of work still decides who
        is reached; anyone eligible only since then is emailed."""
        if isinstance(self._presence, NobodyOnline):
            return frozenset()
        async with self._uow() as uow:
            policy = await uow.policies.get(account_id) or EscalationPolicy()
            eligible = await uow.members.eligible(account_id, policy.roles)
        return await self._online(account_id, [m.id for m in eligible if m.id != actor_id])

    async def _commit(
        self,
        uow: UnitOfWork,
        events: list[TimelineEvent],
        stream: Sequence[StreamEvent] = (),
        *,
        deliveries: Sequence[Delivery] = (),
    ) -> list[TimelineEvent]:
        """Write the events, then the stream events last (they hold the account's sequence until
        commit), then the deliveries that point at them; commit, and announce what committed."""
        stored = await uow.timeline.add_many(events)
        streamed = await append_stream(uow, stream, self._clock.now(), self._make_id)
        if deliveries:
            seq = streamed[0].seq if streamed else None
            await uow.deliveries.add_many(
                [
                    attrs.evolve(d, stream_seq=seq) if d.channel is Channel.PUSH else d
                    for d in deliveries
                ]
            )
        await uow.commit()
        await announce(self._announcer, stored, streamed)
        return stored

    # --- sessions ---------------------------------------------------------------------------

    async def start_session(
        self, account_id: str, actor_id: str, problem_summary: object, context: object = None
    ) -> Session:
        now = self._clock.now()
        async with self._uow() as uow:
            actor = await acting_member(uow, account_id, actor_id)
            session = Session.start(
                id=self._make_id(),
                owner=actor,
                problem_summary=problem_summary,
                context=context,
                now=now,
            )
            await uow.sessions.add(session)
            await self._commit(
                uow, [_event(EventType.SESSION_CREATED, session, None, actor.id, now)]
            )
            return session

    async def revise_session(
        self,
        account_id: str,
        actor_id: str,
        session_id: str,
        *,
        problem_summary: object = None,
        context: object = None,
    ) -> Session:
        now = self._clock.now()
        async with self._uow() as uow:
            actor = await acting_member(uow, account_id, actor_id)
            session = await existing_session(uow, account_id, session_id)
            session.revise(actor, now, problem_summary=problem_summary, context=context)
            await uow.sessions.update(session)
            await uow.commit()
            return session

    async def resolve(self, account_id: str, actor_id: str, session_id: str) -> Session:
        now = self._clock.now()
        async with self._uow() as uow:
            actor = await acting_member(uow, account_id, actor_id)
            session = await existing_session(uow, account_id, session_id)
            session.resolve(actor, now)
            await uow.sessions.update(session)
            await self._commit(
                uow, [_event(EventType.SESSION_RESOLVED, session, None, actor.id, now)]
            )
            return session

    # --- handing off ------------------------------------------------------------------------

    async def hand_off(
        self,
        account_id: str,
        actor_id: str,
        session_id: str,
        intent: object,
        engineer_notes: object = "",
        *,
        idempotency_key: str | None = None,
    ) -> Handoff:
        """Park or escalate. A repeated `idempotency_key` returns the first handoff unchanged."""
        try:
            chosen = Intent(str(intent))
        except ValueError:
            raise ValidationError("intent", "must be park or escalate") from None
        notes = check_text("engineer_notes", engineer_notes, max_len=NOTES_MAX)
        if idempotency_key is not None:
            check_text(
                "idempotency_key", idempotency_key, max_len=IDEMPOTENCY_KEY_MAX, required=True
            )
        fingerprint = _fingerprint(session_id, chosen, notes, actor_id)
        try:
            return await self._hand_off(
                account_id, actor_id, session_id, chosen, notes, idempotency_key, fingerprint
            )
        except Conflict:
            if idempotency_key is None:
                raise
            # A concurrent request with the same key got there first: it either won the insert
            # race on the key, or committed between our key lookup and our read of the session
            # (which then looked already handed off). Its handoff is the answer.
            async with self._uow() as uow:
                first = await uow.handoffs.by_idempotency_key(account_id, idempotency_key)
            if first is None:
                raise
            if first.request_fingerprint != fingerprint:
                raise IdempotencyConflict(
                    "this Idempotency-Key was already used for a different request"
                ) from None
            return first

    async def park(
        self,
        account_id: str,
        actor_id: str,
        session_id: str,
        engineer_notes: object = "",
        *,
        idempotency_key: str | None = None,
    ) -> Handoff:
        return await self.hand_off(
            account_id,
            actor_id,
            session_id,
            Intent.PARK,
            engineer_notes,
            idempotency_key=idempotency_key,
        )

    async def escalate(
        self,
        account_id: str,
        actor_id: str,
        session_id: str,
        engineer_notes: object = "",
        *,
        idempotency_key: str | None = None,
    ) -> Handoff:
        return await self.hand_off(
            account_id,
            actor_id,
            session_id,
            Intent.ESCALATE,
            engineer_notes,
            idempotency_key=idempotency_key,
        )

    async def _hand_off(
        self,
        account_id: str,
        actor_id: str,
        session_id: str,
        intent: Intent,
        notes: str,
        key: str | None,
        fingerprint: str,
    ) -> Handoff:
        now = self._clock.now()
        escalating = intent is Intent.ESCALATE
        online = await self._online_eligible(account_id, actor_id) if escalating else frozenset()
        async with self._uow() as uow:
            actor = await acting_member(uow, account_id, actor_id)
            if key is not None:
                first = await uow.handoffs.by_idempotency_key(account_id, key)
                if first is not None:
                    if first.request_fingerprint != fingerprint:
                        raise IdempotencyConflict(
                            "this Idempotency-Key was already used for a different request"
                        )
                    return first
            session = await existing_session(uow, account_id, session_id)
            handoff_id = self._make_id()
            if intent is Intent.PARK:
                handoff = session.park(actor, handoff_id=handoff_id, notes=notes, now=now)
                event = _event(
                    EventType.SESSION_PARKED, session, handoff, actor.id, now, engineer_notes=notes
                )
            else:
                policy = await uow.policies.get(account_id) or EscalationPolicy()
                handoff = session.escalate(
                    actor, handoff_id=handoff_id, notes=notes, policy=policy, now=now
                )
                candidates = await uow.members.eligible(account_id, policy.roles)
                deliveries = plan(handoff, candidates, online, policy, now, self._make_id)
                event = _event(
                    EventType.SESSION_ESCALATED,
                    session,
                    handoff,
                    actor.id,
                    now,
                    problem_summary=session.problem_summary,
                    engineer_notes=notes,
                    recipients=len({d.recipient_id for d in deliveries}),
                )
            handoff.idempotency_key = key
            handoff.request_fingerprint = fingerprint if key is not None else None
            await uow.handoffs.add(handoff)
            await uow.sessions.update(session)
            if intent is Intent.ESCALATE:
                told = sorted({d.recipient_id for d in deliveries})
                await self._commit(
                    uow, [event], [escalation_created(handoff, told)], deliveries=deliveries
                )
            else:
                await self._commit(uow, [event])
            return handoff

    async def resume(self, account_id: str, actor_id: str, session_id: str) -> Session:
        now = self._clock.now()
        async with self._uow() as uow:
            actor = await acting_member(uow, account_id, actor_id)
            session = await existing_session(uow, account_id, session_id)
            parked = await uow.handoffs.open_for_session(account_id, session_id)
            if parked is None or parked.intent is not Intent.PARK:
                raise InvalidTransition(
                    f"cannot resume a session that is {session.status}; it must be paused"
                )
            session.resume(actor, parked, now)
            if not await uow.handoffs.close(account_id, parked.id, HandoffStatus.RESUMED, now):
                raise InvalidTransition("the park was closed meanwhile")
            await uow.sessions.update(session)
            await self._commit(
                uow, [_event(EventType.SESSION_RESUMED, session, parked, actor.id, now)]
            )
            return session

    async def claim(self, account_id: str, actor_id: str, handoff_id: str) -> Handoff:
        """Exactly one of any number of concurrent claimers wins; the others learn who did.

        The conditional write comes first, so a loser (most claimers, in a race) costs a write
        that matches nothing and a read that says why. The write matches only an open escalation
        of the account; whether this member may claim it is then checked on what it was, and a
        refused claim rolls back with the unit of work. Viewers never write.
        """
        now = self._clock.now()
        async with self._uow() as uow:
            actor = await acting_member(uow, account_id, actor_id)
            claims = uow.handoffs.claim
            won = actor.is_senior and await claims(account_id, handoff_id, actor.id, now)
            current = await existing_handoff(uow, account_id, handoff_id)
            if not won:
                current.check_claim(actor)  # a viewer, a park, the escalator, closed, or taken
                raise AlreadyClaimed(current.claimed_by or "someone else")
            # The open escalation the write started from, claimed by the model's own rules (the
            # escalator is refused here, and the write with them).
            handoff = attrs.evolve(
                current,
                status=HandoffStatus.OPEN,
                claimed_by=None,
                claimed_at=None,
                closed_at=None,
            )
            handoff.claim(actor, now)
            session = await existing_session(uow, account_id, handoff.session_id)
            session.hand_to(actor, now)
            await uow.sessions.update(session)
            # Nobody is asked to take what was taken (SPEC §11): no unsent notice goes.
            await uow.deliveries.cancel_pending(account_id, handoff_id, tuple(NoticeKind), now)
            await self._commit(
                uow,
                [
                    _event(
                        EventType.ESCALATION_CLAIMED,
                        session,
                        handoff,
                        actor.id,
                        now,
                        problem_summary=session.problem_summary,
                        time_to_claim_s=(now - handoff.created_at).total_seconds(),
                    ),
                ],
                [escalation_claimed(handoff, actor.id, now)],
            )
            return handoff

    async def withdraw(self, account_id: str, actor_id: str, handoff_id: str) -> Handoff:
        now = self._clock.now()
        async with self._uow() as uow:
            actor = await acting_member(uow, account_id, actor_id)
            handoff = await existing_handoff(uow, account_id, handoff_id)
            handoff.check_withdraw(actor)
            if not await uow.handoffs.close(account_id, handoff_id, HandoffStatus.WITHDRAWN, now):
                current = await existing_handoff(uow, account_id, handoff_id)
                current.require_open("withdraw")
                raise InvalidTransition("the escalation was closed meanwhile")
            handoff.close(HandoffStatus.WITHDRAWN, now)
            session = await existing_session(uow, account_id, handoff.session_id)
            session.take_back(now)
            await uow.sessions.update(session)
            await uow.deliveries.cancel_pending(account_id, handoff_id, tuple(NoticeKind), now)
            await self._commit(
                uow,
                [
                    _event(
                        EventType.ESCALATION_WITHDRAWN,
                        session,
                        handoff,
                        actor.id,
                        now,
                        problem_summary=session.problem_summary,
                    ),
                ],
                [escalation_withdrawn(handoff, actor.id, now)],
            )
            return handoff
