"""The account's members, mirrored in by the host product, and its escalation policy."""

from __future__ import annotations

from handoff_core.errors import Conflict, NotFound
from handoff_core.model import EscalationPolicy, Member, Role
from handoff_core.ports import Clock, UnitOfWork, UnitOfWorkFactory
from handoff_core.services.common import acting_member


async def _keep_an_owner(uow: UnitOfWork, account_id: str, member_id: str, doing: str) -> None:
    """Refuse a change over the API that would leave the account without a current owner. The
    host's own sync (no actor) is trusted to know better: it is how an owner is replaced."""
    owners = {
        m.id for m in await uow.members.current(account_id) if m.is_current and m.role == Role.OWNER
    }
    if owners == {member_id}:
        raise Conflict(
            f"{member_id} is the account's last owner: make another member owner before you "
            f"{doing} them"
        )


class MemberService:
    """Without an `actor_id` a call is the host's own sync, trusted as such; with one, the actor
    must be an admin or owner to change anything."""

    def __init__(self, uow: UnitOfWorkFactory, clock: Clock) -> None:
        self._uow = uow
        self._clock = clock

    async def upsert(
        self,
        account_id: str,
        member_id: str,
        *,
        email: object,
        name: object,
        role: object,
        active: object = True,
        actor_id: str | None = None,
    ) -> Member:
        """Create or update a member; a soft-deleted member put again comes back.

        Raises ValidationError (a field is not valid), NotAMember/Forbidden (the actor is not a
        current admin or owner) and Conflict (an actor would demote or deactivate the account's
        last owner: nobody could manage the account any more).
        """
        member = Member.register(
            account_id=account_id, id=member_id, email=email, name=name, role=role, active=active
        )
        async with self._uow() as uow:
            if actor_id is not None:
                (await acting_member(uow, account_id, actor_id)).require_manager()
                if not (member.is_current and member.role == Role.OWNER):
                    await _keep_an_owner(uow, account_id, member_id, "demote or deactivate")
            await uow.members.save(member)
            await uow.commit()
        return member

    async def remove(self, account_id: str, member_id: str, *, actor_id: str | None = None) -> None:
        """Soft delete: the member keeps their history but is never notified or let in again.

        Raises NotFound (no such member), NotAMember/Forbidden (the actor is not a current admin
        or owner) and Conflict (an actor would remove the account's last owner).
        """
        async with self._uow() as uow:
            if actor_id is not None:
                (await acting_member(uow, account_id, actor_id)).require_manager()
            member = await uow.members.get(account_id, member_id)
            if member is None or member.deleted_at is not None:
                raise NotFound(f"member {member_id} not found")
            if actor_id is not None:
                await _keep_an_owner(uow, account_id, member_id, "remove")
            member.soft_delete(self._clock.now())
            await uow.members.save(member)
            await uow.commit()

    async def members(self, account_id: str, actor_id: str | None = None) -> list[Member]:
        async with self._uow() as uow:
            if actor_id is not None:
                await acting_member(uow, account_id, actor_id)
            return await uow.members.current(account_id)

    async def get(self, account_id: str, member_id: str) -> Member | None:
        """The member as stored, deleted or not (authentication looks members up this way)."""
        async with self._uow() as uow:
            return await uow.members.get(account_id, member_id)

    async def policy(self, account_id: str, actor_id: str | None = None) -> EscalationPolicy:
        async with self._uow() as uow:
            if actor_id is not None:
                await acting_member(uow, account_id, actor_id)
            return await uow.policies.get(account_id) or EscalationPolicy()

    async def set_policy(
        self, account_id: str, raw: object, *, actor_id: str | None = None
    ) -> EscalationPolicy:
        """Replace the account's policy; escalations already raised keep the one they copied."""
        policy = raw if isinstance(raw, EscalationPolicy) else EscalationPolicy.from_dict(raw)
        async with self._uow() as uow:
            if actor_id is not None:
                (await acting_member(uow, account_id, actor_id)).require_manager()
            await uow.policies.put(account_id, policy)
            await uow.commit()
        return policy
