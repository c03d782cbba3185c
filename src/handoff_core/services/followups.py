"""What the worker raises as time passes: the later tiers and the reminders of escalations nobody
claimed, and email for pushes nobody saw.

Each is taken by one conditional write, so any number of workers raise each exactly once.
"""

from __future__ import annotations

import logging
from collections.abc import Collection

import attrs

from handoff_core.model import (
    Channel,
    EscalationPolicy,
    EventType,
    Handoff,
    Member,
    Role,
    TimelineEvent,
)
from handoff_core.policy import (
    IdFactory,
    fallback_email,
    plan,
    plan_reminders,
    still_told,
)
from handoff_core.ports import Announcer, Clock, Presence, UnitOfWork, UnitOfWorkFactory
from handoff_core.services.common import announce, append_stream
from handoff_core.stream import escalation_created, escalation_reminded

log = logging.getLogger("handoff.delivery")

UNSEEN = "unconfirmed: not marked seen in time; sent by email as well"


class FollowUps:
    """Tiers (SPEC §14), reminders (SPEC §5, §11) and the email after an unconfirmed push
    (SPEC §10). `presence` picks push or email for a tier's members (None: email)."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        clock: Clock,
        announcer: Announcer,
        make_id: IdFactory,
        batch_size: int,
        presence: Presence | None = None,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._announcer = announcer
        self._make_id = make_id
        self._batch_size = batch_size
        self._presence = presence

    async def raise_tiers_due(self) -> int:
        """Tell every tier whose time has come, of escalations still open; how many tiers.

        Each tier is taken by one conditional write (`advance_tier`), so any number of workers
        raise it once; a claim or withdrawal clears the next tier, so none is raised after it.
        Workers paused past several tiers raise them one per pass, in order."""
        now = self._clock.now()
        async with self._uow() as uow:
            due = await uow.handoffs.tiers_due(now, limit=self._batch_size)
        raised = 0
        for handoff in due:
            if handoff.policy is not None and await self._raise_tier(handoff):
                raised += 1
        return raised

    async def _online(self, handoff: Handoff) -> frozenset[str]:
        """Who of the account has a live stream, asked before the unit of work (a pooled
        connection each) as an escalation asks it, and only a hint: if presence cannot answer,
        the tier is emailed."""
        if self._presence is None:
            return frozenset()
        try:
            return await self._presence.online(handoff.account_id)
        except Exception:
            log.exception(
                "presence lookup for account %s failed; emailing tier %d of handoff %s",
                handoff.account_id,
                handoff.tiers_reached + 1,
                handoff.id,
                extra={"account_id": handoff.account_id, "handoff_id": handoff.id},
            )
            return frozenset()

    async def _raise_tier(self, handoff: Handoff) -> bool:
        policy = handoff.policy
        assert policy is not None
        tier = handoff.tiers_reached + 1
        roles = policy.new_roles(tier)
        online = await self._online(handoff)
        now = self._clock.now()
        async with self._uow() as uow:
            next_at = policy.tier_at(handoff.created_at, tier + 1)
            if not await uow.handoffs.advance_tier(handoff.account_id, handoff.id, tier, next_at):
                return False  # another worker raised it, or it was claimed meanwhile
            reached = attrs.evolve(handoff, tiers_reached=tier, next_tier_at=next_at)
            members = await _told_now(uow, reached, roles)
            deliveries = plan(reached, members, online, policy, now, self._make_id, tier=tier)
            told = sorted({d.recipient_id for d in deliveries})
            [event] = await uow.timeline.add_many(
                [
                    TimelineEvent(
                        account_id=handoff.account_id,
                        session_id=handoff.session_id,
                        type=EventType.ESCALATION_TIER_REACHED,
                        at=now,
                        handoff_id=handoff.id,
                        data={
                            "tier": tier,
                            "roles": policy.steps[tier - 1].to_dict()["roles"],
                            "recipients": len(told),
                        },
                    )
                ]
            )
            streamed = await append_stream(
                uow,
                [escalation_created(reached, told, tier=tier)] if told else [],
                now,
                self._make_id,
            )
            seq = streamed[0].seq if streamed else None
            await uow.deliveries.add_many(
                [
                    attrs.evolve(d, stream_seq=seq) if d.channel is Channel.PUSH else d
                    for d in deliveries
                ]
            )
            await uow.commit()
        log.info(
            "escalation %s reached tier %d (%d told)",
            handoff.id,
            tier,
            len(told),
            extra={"handoff_id": handoff.id, "tier": tier, "recipients": len(told)},
        )
        await announce(self._announcer, [event], streamed)
        return True

    async def remind_due(self) -> int:
        """Raise every reminder that is due; how many reminder rounds were raised.

        The next one is scheduled on the policy's spacing from now, so workers that were paused
        past several due times raise one catch-up reminder, not all of them at once."""
        now = self._clock.now()
        async with self._uow() as uow:
            due = await uow.handoffs.reminders_due(now, limit=self._batch_size)
        raised = 0
        for handoff in due:
            round = handoff.reminders_sent + 1
            policy = handoff.policy
            if policy is None:
                continue
            async with self._uow() as uow:
                next_at = policy.next_reminder_after(handoff.created_at, round, now)
                if not await uow.handoffs.advance_reminder(
                    handoff.account_id, handoff.id, round, next_at
                ):
                    continue  # another worker raised it, or it was claimed meanwhile
                members = await _told_now(uow, handoff, policy.roles)
                reminders = plan_reminders(handoff, members, round, now, self._make_id)
                await uow.deliveries.add_many(reminders)
                session = await uow.sessions.get(handoff.account_id, handoff.session_id)
                [event] = await uow.timeline.add_many(
                    [
                        TimelineEvent(
                            account_id=handoff.account_id,
                            session_id=handoff.session_id,
                            type=EventType.ESCALATION_REMINDED,
                            at=now,
                            handoff_id=handoff.id,
                            data={
                                "round": round,
                                "problem_summary": session.problem_summary if session else "",
                            },
                        )
                    ]
                )
                told = sorted({d.recipient_id for d in reminders})
                streamed = await append_stream(
                    uow,
                    [escalation_reminded(handoff, told, round, now)] if told else [],
                    now,
                    self._make_id,
                )
                await uow.commit()
            raised += 1
            await announce(self._announcer, [event], streamed)
        return raised

    async def email_unseen_pushes(self) -> int:
        """Pushes whose `confirm_by` passed unseen, of escalations still open, become
        `unconfirmed` and an email goes as well; how many."""
        now = self._clock.now()
        async with self._uow() as uow:
            unseen = await uow.deliveries.take_unconfirmed(
                now, limit=self._batch_size, reason=UNSEEN
            )
            if not unseen:
                return 0
            await uow.deliveries.add_many([fallback_email(p, now, self._make_id) for p in unseen])
            await uow.commit()
        log.info("%d unseen pushes sent by email", len(unseen), extra={"count": len(unseen)})
        return len(unseen)


async def _told_now(uow: UnitOfWork, handoff: Handoff, roles: Collection[Role]) -> list[Member]:
    """The members of `roles` that a notice of `handoff` may go to now: current, and named by
    both the copied policy and the account's policy as it is (SPEC §10)."""
    current = await uow.policies.get(handoff.account_id) or EscalationPolicy()
    return [
        m
        for m in await uow.members.eligible(handoff.account_id, roles)
        if still_told(handoff, m, current)
    ]
