"""Sign-in by a one-time link: the CLI or the host product issues it, the inbox page redeems it."""

from __future__ import annotations

from datetime import timedelta

from handoff_core.errors import NotAMember, NotFound, ValidationError
from handoff_core.links import LoginLink, hash_login_code, new_login_code
from handoff_core.model import Member
from handoff_core.ports import Clock, UnitOfWorkFactory

LOGIN_TTL_MAX = timedelta(days=7)


class SignInService:
    """Issues and redeems one-time sign-in links for current members of an account."""

    def __init__(self, uow: UnitOfWorkFactory, clock: Clock) -> None:
        self._uow = uow
        self._clock = clock

    async def issue(self, account_id: str, member_id: str, ttl: timedelta) -> str:
        """A fresh one-time code for `member_id`, good for `ttl` (at most 7 days).

        Raises NotAMember for a member unknown, inactive or removed in the account, and
        ValidationError (`ttl`) for a ttl that is not positive or too long."""
        if not timedelta(0) < ttl <= LOGIN_TTL_MAX:
            raise ValidationError("ttl", "must be more than 0 seconds and at most 7 days")
        code = new_login_code()
        now = self._clock.now()
        async with self._uow() as uow:
            member = await uow.members.get(account_id, member_id)
            if member is None or not member.is_current:
                raise NotAMember(f"{member_id} is not an active member of account {account_id}")
            await uow.login_links.add(
                LoginLink(
                    code_hash=hash_login_code(code),
                    account_id=account_id,
                    member_id=member_id,
                    created_at=now,
                    expires_at=now + ttl,
                )
            )
            await uow.commit()
        return code

    async def redeem(self, code: str) -> Member:
        """The member a code signs in, once. Raises NotFound for a code unknown, already used
        or expired (the same answer for each), NotAMember if the member is no longer current."""
        async with self._uow() as uow:
            link = await uow.login_links.redeem(hash_login_code(code), self._clock.now())
            if link is None:
                raise NotFound("this sign-in link is unknown, already used or expired")
            member = await uow.members.get(link.account_id, link.member_id)
            await uow.commit()  # used, whatever follows: a link is spent once opened
        if member is None or not member.is_current:
            raise NotAMember(f"{link.member_id} is no longer an active member")
        return member
