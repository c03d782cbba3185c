"""Sign-in links keep the same promises on every store: kept by hash, redeemed once, in time."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from handoff_core.errors import Conflict, NotAMember, NotFound, ValidationError
from handoff_core.links import LoginLink, hash_login_code
from handoff_core.model import Role
from handoff_core.ports import UnitOfWorkFactory
from handoff_core.services.members import MemberService
from handoff_core.services.signin import SignInService

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.at = T0

    def now(self) -> datetime:
        return self.at


def link(code: str = "code-1", minutes: int = 15) -> LoginLink:
    return LoginLink(
        code_hash=hash_login_code(code),
        account_id="acme",
        member_id="alice",
        created_at=T0,
        expires_at=T0 + timedelta(minutes=minutes),
    )


async def add(db: UnitOfWorkFactory, *links: LoginLink) -> None:
    async with db() as uow:
        for one in links:
            await uow.login_links.add(one)
        await uow.commit()


async def redeem(db: UnitOfWorkFactory, code: str, at: datetime) -> LoginLink | None:
    async with db() as uow:
        found = await uow.login_links.redeem(hash_login_code(code), at)
        await uow.commit()
    return found


async def test_a_link_is_redeemed_once_and_only_before_it_expires(db: UnitOfWorkFactory) -> None:
    await add(db, link("once"), link("late", minutes=1))
    first = await redeem(db, "once", T0 + timedelta(minutes=5))
    assert first is not None and (first.account_id, first.member_id) == ("acme", "alice")
    assert first.expires_at == T0 + timedelta(minutes=15)
    assert await redeem(db, "once", T0 + timedelta(minutes=6)) is None
    assert await redeem(db, "late", T0 + timedelta(minutes=1)) is None  # expiry is exclusive
    assert await redeem(db, "unknown", T0) is None


async def test_a_redeem_rolled_back_leaves_the_link_unused(db: UnitOfWorkFactory) -> None:
    await add(db, link("kept"))
    async with db() as uow:
        assert await uow.login_links.redeem(hash_login_code("kept"), T0) is not None
    assert await redeem(db, "kept", T0) is not None


async def test_two_redeeming_at_once_sign_in_one(db: UnitOfWorkFactory) -> None:
    await add(db, link("race"))
    results = await asyncio.gather(*(redeem(db, "race", T0) for _ in range(4)))
    assert sum(r is not None for r in results) == 1


async def test_the_same_code_cannot_be_stored_twice(db: UnitOfWorkFactory) -> None:
    await add(db, link("twice"))
    with pytest.raises(Conflict):
        await add(db, link("twice"))


async def test_the_service_signs_in_a_current_member_once(db: UnitOfWorkFactory, make: Any) -> None:
    await make.member("acme", "alice", Role.ENGINEER)
    clock = Clock()
    signin = SignInService(db, clock)
    code = await signin.issue("acme", "alice", timedelta(minutes=10))
    async with db() as uow:  # the store keeps the hash, never the code
        assert await uow.login_links.redeem(code, T0) is None
    member = await signin.redeem(code)
    assert (member.account_id, member.id) == ("acme", "alice")
    with pytest.raises(NotFound):
        await signin.redeem(code)

    later = await signin.issue("acme", "alice", timedelta(minutes=10))
    clock.at = T0 + timedelta(minutes=10)
    with pytest.raises(NotFound):
        await signin.redeem(later)

    removed = await signin.issue("acme", "alice", timedelta(minutes=10))
    await MemberService(db, clock).remove("acme", "alice")
    with pytest.raises(NotAMember):
        await signin.redeem(removed)
    with pytest.raises(NotAMember):
        await signin.issue("acme", "alice", timedelta(minutes=10))
    with pytest.raises(ValidationError):
        await signin.issue("acme", "alice", timedelta(days=8))
