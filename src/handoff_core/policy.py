"""The escalation policy as pure functions: who is told, on which channel, and when again."""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import Callable, Collection, Iterable, Iterator
from datetime import datetime

from handoff_core.model import (
    Channel,
    Delivery,
    EscalationPolicy,
    Handoff,
    Member,
    NoticeKind,
    Role,
)

IdFactory = Callable[[], str]


def new_id() -> str:
    """128 random bits as 32 hex digits: as unique as a uuid4, at a quarter of the cost (ids are
    made per delivery, so planning for a large account makes many)."""
    return os.urandom(16).hex()


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a plan makes its deliveries, if it ran.

    A plan's deliveries form no reference cycles, so the collector has nothing to find in them;
    but tens of thousands of new objects set off its full passes, whose cost grows with
    everything the process holds, so time per member would grow with the account. Measured by B5
    (`python -m bench b5`) at 100,000 members: about 300 ms a plan with it running, 180 ms paused.
    """
    running = gc.isenabled()
    if running:
        gc.disable()
    try:
        yield
    finally:
        if running:
            gc.enable()


def recipients(
    policy: EscalationPolicy,
    members: Iterable[Member],
    escalator_id: str,
    roles: Collection[Role] | None = None,
) -> list[Member]:
    """Current members with a role in the policy (or in `roles`, a part of it), less the
    escalator. Viewers never qualify."""
    roles = policy.roles if roles is None else roles
    return [
        m
        for m in members
        if m.active and m.deleted_at is None and m.role in roles and m.id != escalator_id
    ]


def _due(
    make_id: IdFactory,
    account_id: str,
    handoff_id: str,
    recipient_id: str,
    address: str,
    channel: Channel,
    now: datetime,
    *,
    kind: NoticeKind = NoticeKind.ESCALATION,
    round: int = 0,
) -> Delivery:
    """A new delivery, due at `now`: the one shape every plan makes."""
    return Delivery(
        id=make_id(),
        account_id=account_id,
        handoff_id=handoff_id,
        recipient_id=recipient_id,
        address=address,
        channel=channel,
        kind=kind,
        created_at=now,
        next_attempt_at=now,
        round=round,
    )


def plan(
    handoff: Handoff,
    members: Iterable[Member],
    online: Collection[str],
    policy: EscalationPolicy,
    now: datetime,
    make_id: IdFactory = new_id,
    tier: int = 1,
) -> list[Delivery]:
    """The deliveries that announce an escalation to tier `tier` (1-based; the first is told
    when it is raised): push to those online, email to the rest. A later tier tells only the
    members whose roles no earlier tier held (SPEC §14).

    With `email_online_too` everyone gets email, and those online get a push as well.
    """
    planned: list[Delivery] = []
    account_id, handoff_id = handoff.account_id, handoff.id
    roles = policy.new_roles(tier)
    with collector_paused():
        for member in recipients(policy, members, handoff.created_by, roles):
            channels: tuple[Channel, ...]
            if member.id in online:
                both = policy.email_online_too
                channels = (Channel.PUSH, Channel.EMAIL) if both else (Channel.PUSH,)
            else:
                channels = (Channel.EMAIL,)
            for channel in channels:
                planned.append(
                    _due(make_id, account_id, handoff_id, member.id, member.email, channel, now)
                )
    return planned


def plan_reminders(
    handoff: Handoff,
    members: Iterable[Member],
    round: int,
    now: datetime,
    make_id: IdFactory = new_id,
) -> list[Delivery]:
    """Reminder `round` for an escalation still open: email every recipient again, presence ignored.

    The recipients are judged against the policy copied into the handoff and today's members, so
    someone removed since the escalation is not reminded; of a tiered policy, only the tiers
    reached so far are reminded (SPEC §14).
    """
    policy = handoff.policy
    if policy is None or not handoff.is_open_escalation or round > policy.max_reminders:
        return []
    told = recipients(
        policy, members, handoff.created_by, policy.roles_through(handoff.tiers_reached)
    )
    with collector_paused():
        return [
            _due(
                make_id,
                handoff.account_id,
                handoff.id,
                member.id,
                member.email,
                Channel.EMAIL,
                now,
                kind=NoticeKind.REMINDER,
                round=round,
            )
            for member in told
        ]


def fallback_email(push: Delivery, now: datetime, make_id: IdFactory = new_id) -> Delivery:
    """The email that takes over from a push that did not reach its recipient: none had a live
    stream when it was sent, or nobody marked it seen within the policy's `push_confirm_seconds`
    (SPEC §5, §10). Same recipient, notice and round; due at once."""
    return _due(
        make_id,
        push.account_id,
        push.handoff_id,
        push.recipient_id,
        push.address,
        Channel.EMAIL,
        now,
        kind=push.kind,
        round=push.round,
    )


def still_told(handoff: Handoff, member: Member | None, current: EscalationPolicy) -> bool:
    """Whether a notice of `handoff` may still go to `member`: current (not removed, not
    deactivated), holding a role of the policy copied into the escalation and of the account's
    policy as it is now (a role dropped from it stops being told; SPEC §10)."""
    if member is None or not member.is_current:
        return False
    copied = handoff.policy or current
    return copied.accepts(member) and current.accepts(member)
