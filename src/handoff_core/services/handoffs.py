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
    NotAMember,
    NotFound,
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
    JsonObject,
    Member,
    NoticeKind,
    Session,
    TimelineEvent,
    check_text,
)
from handoff_core.policy import IdFactory, new_id, plan
from handoff_core.ports import (
    Announcer,
    Clock,
    NewEscalation,
    Presence,
    UnitOfWork,
    UnitOfWorkFactory,
)
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
from handoff_core.webhooks import WebhookEndpoint

IDEMPOTENCY_KEY_MAX = 200


class NobodyOnline:
    """Presence when no live push exists: everyone is reached by email."""

    async def online(self, account_id: str, member_ids: Any = None) -> frozenset[str]:
        """Nobody."""
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


def _current(members: Sequence[Member], actor_id: str) -> Member:
    """`acting_member` over the account's current members, already read."""
    for member in members:
        if member.id == actor_id and member.is_current:
            return member
    raise NotAMember(f"{actor_id} is not an active member of this account")


async def _replayed(uow: UnitOfWork, account_id: str, key: str, fingerprint: str) -> Handoff | None:
    """The handoff an Idempotency-Key already made, if the same request made it; raises
    IdempotencyConflict if a different one did."""
    first = await uow.handoffs.by_idempotency_key(account_id, key)
    if first is not None and first.request_fingerprint != fingerprint:
        raise IdempotencyConflict("this Idempotency-Key was already used for a different request")
    return first


def _keyed(handoff: Handoff, key: str | None, fingerprint: str) -> None:
    handoff.idempotency_key = key
    handoff.request_fingerprint = fingerprint if key is not None else None


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

    async def _online(self, account_id: str) -> frozenset[str]:
        """Who of the account has a live stream, asked before the escalation's unit of work: from
        inside it, presence (its own read) would take a second pooled connection while the first
        is held, and a full pool would wait on itself. The unit of work decides who is reached;
        presence only picks the channel, and if it cannot answer everyone gets email rather than
        the escalation failing."""
        if isinstance(self._presence, NobodyOnline):
            return frozenset()
        try:
            return await self._presence.online(account_id)
        except Exception:
            log.exception(
                "presence lookup for account %s failed; emailing everyone",
                account_id,
                extra={"account_id": account_id},
            )
            return frozenset()

    async def _commit(
        self,
        uow: UnitOfWork,
        events: list[TimelineEvent],
        stream: Sequence[StreamEvent] = (),
        *,
        deliveries: Sequence[Delivery] = (),
        endpoints: Sequence[WebhookEndpoint] | None = None,
    ) -> list[TimelineEvent]:
        """Write the events, then the stream events last (they hold the account's sequence until
        commit), then the deliveries that point at them; commit, and announce what committed.
        `endpoints`: the account's webhook endpoints if already read."""
        stored = await uow.timeline.add_many(events)
        streamed = await append_stream(
            uow, stream, self._clock.now(), self._make_id, endpoints=endpoints
        )
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
        self,
        account_id: str,
        actor_id: str,
        problem_summary: str,
        context: JsonObject | None = None,
    ) -> Session:
        """Start a session owned by and assigned to `actor_id` (SPEC §3).

        `problem_summary` is at most 500 characters; `context` any JSON object of at most 256 KiB
        serialised and 64 levels deep (None: empty). Raises NotAMember for an actor who is not a
        current member, Forbidden for a viewer, ValidationError naming the field."""
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
        problem_summary: str | None = None,
        context: JsonObject | None = None,
    ) -> Session:
        """Replace the summary and/or the context of a session not yet resolved; None keeps a
        field. By its assignee or an admin/owner. Raises NotFound, NotAMember, Forbidden,
        InvalidTransition (resolved), ValidationError naming the field, Conflict if it was
        written meanwhile."""
        now = self._clock.now()
        async with self._uow() as uow:
            actor = await acting_member(uow, account_id, actor_id)
            session = await existing_session(uow, account_id, session_id)
            session.revise(actor, now, problem_summary=problem_summary, context=context)
            await uow.sessions.update(session)
            await uow.commit()
            return session

    async def resolve(self, account_id: str, actor_id: str, session_id: str) -> Session:
        """Active → resolved, for good (SPEC §4.6), by the assignee or an admin/owner. Raises
        NotFound, NotAMember, Forbidden, InvalidTransition."""
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
        intent: Intent | str,
        engineer_notes: str = "",
        *,
        idempotency_key: str | None = None,
    ) -> Handoff:
        """Park or escalate an active session (SPEC §4.1, §4.3), by its assignee or an
        admin/owner.

        An escalation snapshots the session, writes its escalation package, plans its deliveries
        by the account's policy (push to those online, email to the rest) and its stream event,
        all in one transaction; the deliveries go out after commit. `engineer_notes` is at most
        4,000 characters. A repeated `idempotency_key` (at most 200 characters, unique per
        account) returns the first handoff unchanged.

        Raises NotFound (session), NotAMember, Forbidden (not the assignee, or a viewer),
        InvalidTransition (the session is not active), ValidationError naming the field, and
        IdempotencyConflict (the key was used for another request)."""
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
        engineer_notes: str = "",
        *,
        idempotency_key: str | None = None,
    ) -> Handoff:
        """`hand_off(..., Intent.PARK, ...)`: a private pause; nobody is told."""
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
        engineer_notes: str = "",
        *,
        idempotency_key: str | None = None,
    ) -> Handoff:
        """`hand_off(..., Intent.ESCALATE, ...)`: every eligible senior is told."""
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
        if intent is Intent.ESCALATE:
            return await self._escalate(account_id, actor_id, session_id, notes, key, fingerprint)
        now = self._clock.now()
        async with self._uow() as uow:
            actor = await acting_member(uow, account_id, actor_id)
            if key is not None:
                first = await _replayed(uow, account_id, key, fingerprint)
                if first is not None:
                    return first
            session = await existing_session(uow, account_id, session_id)
            handoff = session.park(actor, handoff_id=self._make_id(), notes=notes, now=now)
            event = _event(
                EventType.SESSION_PARKED, session, handoff, actor.id, now, engineer_notes=notes
            )
            _keyed(handoff, key, fingerprint)
            await uow.handoffs.add(handoff)
            await uow.sessions.update(session)
            await self._commit(uow, [event])
            return handoff

    async def _escalate(
        self,
        account_id: str,
        actor_id: str,
        session_id: str,
        notes: str,
        key: str | None,
        fingerprint: str,
    ) -> Handoff:
        """The same checks in the same order as a park, on what `Escalations.inputs` read in
        one call; the writes are one `Escalations.add` unless the account has webhook endpoints
        (their deliveries are planned from the numbered stream event, part by part)."""
        now = self._clock.now()
        online = await self._online(account_id)
        async with self._uow() as uow:
            inputs = await uow.escalations.inputs(account_id, session_id)
            actor = _current(inputs.members, actor_id)
            if key is not None:
                first = await _replayed(uow, account_id, key, fingerprint)
                if first is not None:
                    return first
            if inputs.session is None:
                raise NotFound(f"session {session_id} not found")
            session = inputs.session
            policy = inputs.policy or EscalationPolicy()
            handoff = session.escalate(
                actor, handoff_id=self._make_id(), notes=notes, policy=policy, now=now
            )
            candidates = [m for m in inputs.members if m.active and m.role in policy.roles]
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
            _keyed(handoff, key, fingerprint)
            notice = escalation_created(handoff, sorted({d.recipient_id for d in deliveries}))
            if inputs.endpoints:
                await uow.handoffs.add(handoff)
                await uow.sessions.update(session)
                await self._commit(
                    uow, [event], [notice], deliveries=deliveries, endpoints=inputs.endpoints
                )
                return handoff
            escalation = NewEscalation(handoff, session, event, notice, deliveries)
            stored, streamed = await uow.escalations.add(escalation)
            await uow.commit()
            await announce(self._announcer, [stored], [streamed])
            return handoff

    async def resume(self, account_id: str, actor_id: str, session_id: str) -> Session:
        """Paused → active (SPEC §4.2), by whoever parked it or an admin/owner; the park is
        closed as resumed. Raises NotFound, NotAMember, Forbidden, InvalidTransition."""
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

        On success the session is active again under the claimer, and every unsent notice of
        the escalation is cancelled (SPEC §11). Raises NotFound, NotAMember, Forbidden (a viewer,
        or the escalator), InvalidTransition (a park, or closed) and AlreadyClaimed(by=winner).
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
        """The escalator or an admin/owner takes back an open escalation (SPEC §4.5): the
        session is active again and every unsent notice is cancelled. Raises NotFound,
        NotAMember, Forbidden, InvalidTransition."""
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
