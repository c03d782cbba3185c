"""What the worker raises as time passes: reminders of escalations nobody claimed, and email for
pushes nobody saw.

Each is taken by one conditional write, so any number of workers raise each exactly once.
"""

from __future__ import annotations

import logging

from handoff_core.model import EscalationPolicy, EventType, TimelineEvent
from handoff_core.policy import IdFactory, fallback_email, plan_reminders, still_told
from handoff_core.ports import Announcer, Clock, UnitOfWorkFactory
from handoff_core.services.common import announce
from handoff_core.stream import escalation_reminded

log = logging.getLogger("handoff.delivery")

UNSEEN = "unconfirmed: not marked seen in time; sent by email as well"


class FollowUps:
    """Reminders (SPEC §5, §11) and the email after an unconfirmed push (SPEC §10)."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        clock: Clock,
        announcer: Announcer,
        make_id: IdFactory,
        batch_size: int,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._announcer = announcer
        self._make_id = make_id
        self._batch_size = batch_size

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
                current = await uow.policies.get(handoff.account_id) or EscalationPolicy()
                members = [
                    m
                    for m in await uow.members.eligible(handoff.account_id, policy.roles)
                    if still_told(handoff, m, current)
                ]
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
                streamed = await uow.stream.append(
                    [escalation_reminded(handoff, told, round, now)] if told else []
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
        log.info("unseen pushes sent by email", extra={"count": len(unseen)})
        return len(unseen)
