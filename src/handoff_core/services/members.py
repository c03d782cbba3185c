"""The account's members, mirrored in by the host product, and its escalation policy."""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping

import attrs

from handoff_core.errors import Conflict, NotFound, ValidationError
from handoff_core.model import EscalationPolicy, Member, Role
from handoff_core.ports import Clock, UnitOfWork, UnitOfWorkFactory
from handoff_core.services.common import acting_member

AddressCheck = Callable[[str], str]
"""Whether an email address can be sent to: takes the address as given (one line, trimmed),
returns the form to store, raises `ValidationError("email", why)` when nothing could send to it.
`handoff_mail.check_address` is the full one (email-validator); `check_address_shape` the
default."""

_ATEXT = frozenset(string.ascii_letters + string.digits + "!#$%&'*+-/=?^_`{|}~")
_ADDRESS_MAX = 254  # RFC 5321: a path of 256 octets, less its angle brackets
_LOCAL_MAX = 64
_LABEL_MAX = 63


def _local_part_ok(local: str) -> bool:
    if not local or len(local.encode()) > _LOCAL_MAX:
        return False
    if local.startswith(".") or local.endswith(".") or ".." in local:
        return False
    return all(ch in _ATEXT or ch == "." or (not ch.isascii() and ch.isalnum()) for ch in local)


def _domain_ok(domain: str) -> bool:
    for label in domain.split("."):
        if not label or len(label) > _LABEL_MAX or label[0] == "-" or label[-1] == "-":
            return False
        if not all(ch == "-" or ch.isalnum() for ch in label):
            return False
    return True


def check_address_shape(address: str) -> str:
    """The default `AddressCheck`, standard library only and deliberately strict: one
    `local@domain` whose local part is an RFC 5322 dot-atom (non-ASCII letters allowed) and whose
    domain is dot-separated labels of letters, digits and inner hyphens, within RFC 5321's
    lengths. Quoted local parts and IP literals are refused. Returns the address unchanged."""
    local, at, domain = address.rpartition("@")
    if (
        not at
        or len(address.encode()) > _ADDRESS_MAX
        or not _local_part_ok(local)
        or not _domain_ok(domain)
    ):
        raise ValidationError("email", f"{address!r} is not an address mail can be sent to")
    return address


async def _keep_an_owner(uow: UnitOfWork, account_id: str, member_id: str, doing: str) -> None:
    """Refuse a change over the API that would leave the account without a current owner. The
    host's own sync (no actor) is trusted to know better: it is how an owner is replaced."""
    owners = {m.id for m in await uow.members.owners_for_update(account_id)}
    if owners == {member_id}:
        raise Conflict(
            f"{member_id} is the account's last owner: make another member owner before you "
            f"{doing} them"
        )


class MemberService:
    """Without an `actor_id` a call is the host's own sync, trusted as such; with one, the actor
    must be an admin or owner to change anything.

    `check_address` decides which email addresses are accepted (see `AddressCheck`); the
    application passes email-validator's, the default is `check_address_shape`.
    """

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        clock: Clock,
        *,
        check_address: AddressCheck = check_address_shape,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._check_address = check_address

    async def upsert(
        self,
        account_id: str,
        member_id: str,
        *,
        email: str,
        name: str,
        role: Role | str,
        active: bool = True,
        actor_id: str | None = None,
    ) -> Member:
        """Create or update a member; a soft-deleted member put again comes back.

        The email is stored as given (trimmed) once the address check accepts it. Raises
        ValidationError naming the field at fault (`email` for an address nothing could send
        to), NotAMember/Forbidden (the actor is not a current admin or owner) and Conflict (an
        actor would demote or deactivate the account's last owner: nobody could manage the
        account any more).
        """
        member = Member.register(
            account_id=account_id, id=member_id, email=email, name=name, role=role, active=active
        )
        member = attrs.evolve(member, email=self._check_address(member.email))
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
        """Every member of the account not removed, by id; with `actor_id`, as that member asks
        (raises NotAMember if they are not current)."""
        async with self._uow() as uow:
            if actor_id is not None:
                await acting_member(uow, account_id, actor_id)
            return await uow.members.current(account_id)

    async def get(self, account_id: str, member_id: str) -> Member | None:
        """The member as stored, deleted or not (authentication looks members up this way)."""
        async with self._uow() as uow:
            return await uow.members.get(account_id, member_id)

    async def policy(self, account_id: str, actor_id: str | None = None) -> EscalationPolicy:
        """The account's escalation policy (the default when none was set); with `actor_id`, as
        that member asks (raises NotAMember if they are not current)."""
        async with self._uow() as uow:
            if actor_id is not None:
                await acting_member(uow, account_id, actor_id)
            return await uow.policies.get(account_id) or EscalationPolicy()

    async def set_policy(
        self,
        account_id: str,
        raw: EscalationPolicy | Mapping[str, object],
        *,
        actor_id: str | None = None,
    ) -> EscalationPolicy:
        """Replace the account's policy (SPEC §5; the API's JSON shape or a policy); escalations
        already raised keep the one they copied. Raises ValidationError naming the field, and
        NotAMember/Forbidden when `actor_id` is not a current admin or owner."""
        policy = raw if isinstance(raw, EscalationPolicy) else EscalationPolicy.from_dict(raw)
        async with self._uow() as uow:
            if actor_id is not None:
                (await acting_member(uow, account_id, actor_id)).require_manager()
            await uow.policies.put(account_id, policy)
            await uow.commit()
        return policy
