"""Properties of the escalation policy (SPEC §5) as pure functions, for any team and presence."""

from __future__ import annotations

import gc
from collections import Counter
from datetime import UTC, datetime, timedelta
from itertools import count

import pytest
from hypothesis import given
from hypothesis import strategies as st

from handoff_core import (
    Channel,
    DeliveryStatus,
    EscalationPolicy,
    Handoff,
    HandoffStatus,
    Intent,
    Member,
    NoticeKind,
    Role,
    ValidationError,
)
from handoff_core.policy import plan, plan_reminders, recipients

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
SENIORS = (Role.OWNER, Role.ADMIN, Role.ENGINEER)


@st.composite
def teams(draw: st.DrawFn) -> list[Member]:
    """Members of one account with every mix of role, activity and soft deletion."""
    size = draw(st.integers(min_value=0, max_value=12))
    return [
        Member(
            id=f"m{i}",
            account_id="acme",
            email=f"m{i}@acme.test",
            name=f"M{i}",
            role=draw(st.sampled_from(list(Role))),
            active=draw(st.booleans()),
            deleted_at=draw(st.sampled_from([None, NOW - timedelta(days=1)])),
        )
        for i in range(size)
    ]


policies = st.builds(
    EscalationPolicy,
    roles=st.frozensets(st.sampled_from(SENIORS), min_size=1),
    email_online_too=st.booleans(),
    remind_after_seconds=st.integers(min_value=1, max_value=30 * 24 * 3600),
    max_reminders=st.integers(min_value=0, max_value=50),
    push_confirm_seconds=st.integers(min_value=0, max_value=24 * 3600),
)


def escalation(escalator: str, policy: EscalationPolicy, status: HandoffStatus) -> Handoff:
    return Handoff(
        id="h1",
        account_id="acme",
        session_id="s1",
        intent=Intent.ESCALATE,
        engineer_notes="",
        created_by=escalator,
        created_at=NOW,
        snapshot={},
        status=status,
        policy=policy,
    )


def eligible(member: Member, policy: EscalationPolicy, escalator: str) -> bool:
    """SPEC §5 "Who", written out independently of the code under test."""
    return (
        member.active
        and member.deleted_at is None
        and member.role is not Role.VIEWER
        and member.role in policy.roles
        and member.id != escalator
    )


def ids() -> count[int]:
    return count(1)


@st.composite
def scenes(draw: st.DrawFn) -> tuple[list[Member], EscalationPolicy, str, frozenset[str]]:
    team = draw(teams())
    policy = draw(policies)
    names = [m.id for m in team] + ["outsider"]
    escalator = draw(st.sampled_from(names))
    online = draw(st.frozensets(st.sampled_from(names)))
    return team, policy, escalator, online


@given(scenes())
def test_recipients_are_exactly_the_eligible_seniors_but_the_escalator(
    scene: tuple[list[Member], EscalationPolicy, str, frozenset[str]],
) -> None:
    team, policy, escalator, _ = scene

    chosen = recipients(policy, team, escalator)

    assert [m.id for m in chosen] == [m.id for m in team if eligible(m, policy, escalator)]
    assert all(m.role is not Role.VIEWER for m in chosen)


@given(scenes())
def test_push_and_email_split_exactly_by_presence(
    scene: tuple[list[Member], EscalationPolicy, str, frozenset[str]],
) -> None:
    team, policy, escalator, online = scene
    numbers = ids()

    planned = plan(
        escalation(escalator, policy, HandoffStatus.OPEN),
        team,
        online,
        policy,
        NOW,
        lambda: f"d{next(numbers)}",
    )

    expected: set[tuple[str, Channel]] = set()
    for m in team:
        if not eligible(m, policy, escalator):
            continue
        if m.id not in online or policy.email_online_too:
            expected.add((m.id, Channel.EMAIL))
        if m.id in online:
            expected.add((m.id, Channel.PUSH))
    pairs = [(d.recipient_id, d.channel) for d in planned]
    assert Counter(pairs) == Counter(expected)  # each pair exactly once
    by_id = {m.id: m for m in team}
    for d in planned:
        assert d.account_id == "acme" and d.handoff_id == "h1"
        assert d.kind is NoticeKind.ESCALATION and d.status is DeliveryStatus.PENDING
        assert d.attempts == 0 and d.next_attempt_at == NOW
        assert d.address == by_id[d.recipient_id].email
    assert len({d.id for d in planned}) == len(planned)


@given(scenes(), st.integers(min_value=1, max_value=60))
def test_reminders_email_every_recipient_until_the_last_round(
    scene: tuple[list[Member], EscalationPolicy, str, frozenset[str]], round: int
) -> None:
    team, policy, escalator, _ = scene
    handoff = escalation(escalator, policy, HandoffStatus.OPEN)

    planned = plan_reminders(handoff, team, round, NOW)

    if round > policy.max_reminders:
        assert planned == []
        assert policy.reminder_at(NOW, round) is None
    else:
        wanted = [m.id for m in team if eligible(m, policy, escalator)]
        assert [d.recipient_id for d in planned] == wanted
        assert {(d.channel, d.kind, d.round) for d in planned} <= {
            (Channel.EMAIL, NoticeKind.REMINDER, round)
        }
        due = policy.reminder_at(NOW, round)
        assert due == NOW + timedelta(seconds=policy.remind_after_seconds * round)


@given(
    scenes(),
    st.sampled_from([HandoffStatus.CLAIMED, HandoffStatus.WITHDRAWN, HandoffStatus.RESUMED]),
    st.integers(min_value=1, max_value=5),
)
def test_no_reminder_for_a_closed_escalation_or_a_park(
    scene: tuple[list[Member], EscalationPolicy, str, frozenset[str]],
    closed: HandoffStatus,
    round: int,
) -> None:
    team, policy, escalator, _ = scene
    assert plan_reminders(escalation(escalator, policy, closed), team, round, NOW) == []
    park = escalation(escalator, policy, HandoffStatus.OPEN)
    park.intent = Intent.PARK
    assert plan_reminders(park, team, round, NOW) == []


@given(policies)
def test_a_policy_round_trips_through_its_dict(policy: EscalationPolicy) -> None:
    raw = policy.to_dict()
    assert set(raw) == {
        "roles",
        "email_online_too",
        "remind_after_seconds",
        "max_reminders",
        "push_confirm_seconds",
        "tiers",
    }
    assert EscalationPolicy.from_dict(raw) == policy


BAD_VALUES: dict[str, list[object]] = {
    "roles": ["engineer", [], ["viewer"], ["owner", "viewer"], ["boss"], 5, None, {"a": 1}],
    "email_online_too": ["yes", 1, 0, None, [True]],
    "remind_after_seconds": [0, -1, 30 * 24 * 3600 + 1, "600", 1.5, True, None],
    "max_reminders": [-1, 51, "2", 2.0, False, None],
    "push_confirm_seconds": [-1, 24 * 3600 + 1, "30", 1.5, True, None],
}


@st.composite
def bad_policies(draw: st.DrawFn) -> tuple[object, str]:
    """A valid policy dict with exactly one field spoiled, and the field's name."""
    raw = draw(policies).to_dict()
    kind = draw(st.sampled_from([*BAD_VALUES, "unknown", "not a dict"]))
    if kind == "not a dict":
        return draw(st.sampled_from([None, [], "policy", 3, [("roles", ["admin"])]])), "policy"
    if kind == "unknown":
        name = draw(st.text(min_size=1, max_size=10).filter(lambda k: k not in raw))
        return {**raw, name: draw(st.integers())}, name
    return {**raw, kind: draw(st.sampled_from(BAD_VALUES[kind]))}, kind


@given(bad_policies())
def test_from_dict_refuses_bad_input_naming_the_field(case: tuple[object, str]) -> None:
    raw, field = case
    try:
        EscalationPolicy.from_dict(raw)
    except ValidationError as error:
        assert error.field == field
    else:
        raise AssertionError(f"{raw!r} was accepted")


@given(team=teams(), collecting=st.booleans(), fail_at=st.integers(min_value=0, max_value=3))
def test_planning_leaves_the_garbage_collector_as_it_found_it(
    team: list[Member], collecting: bool, fail_at: int
) -> None:
    """A plan pauses the cyclic collector while it makes deliveries (B5: time per member stays
    flat) and always puts it back as it was: running or not, and when making an id fails."""
    was = gc.isenabled()
    made = count()

    def make_id() -> str:
        n = next(made)
        if n == fail_at:
            raise RuntimeError("no ids left")
        assert not gc.isenabled()  # paused while the deliveries are made
        return f"d{n}"

    policy = EscalationPolicy()
    handoff = escalation("nobody", policy, HandoffStatus.OPEN)
    told = len(recipients(policy, team, "nobody"))
    (gc.enable if collecting else gc.disable)()
    try:
        if fail_at < told:
            with pytest.raises(RuntimeError, match="no ids left"):
                plan(handoff, team, set(), policy, NOW, make_id)
        else:
            assert len(plan(handoff, team, set(), policy, NOW, make_id)) == told
        assert gc.isenabled() is collecting
    finally:
        (gc.enable if was else gc.disable)()
