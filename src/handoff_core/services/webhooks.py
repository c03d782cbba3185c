"""An account's outgoing webhook endpoints (SPEC §14): registered by admins and owners."""

from __future__ import annotations

from attrs import frozen

from handoff_core.errors import NotFound, ValidationError
from handoff_core.model import check_id
from handoff_core.ports import Clock, UnitOfWorkFactory, WebhookTargets
from handoff_core.services.common import acting_member
from handoff_core.webhooks import WebhookEndpoint, WebhookFormat, check_url


@frozen
class Registered:
    """What `put` did: the endpoint as stored, and whether it was new (only then may its
    secret be shown: once)."""

    endpoint: WebhookEndpoint
    created: bool


class WebhookService:
    """Create, change, list and remove webhook endpoints. Every method takes the acting member,
    who must be a current admin or owner of the account."""

    def __init__(
        self, uow: UnitOfWorkFactory, clock: Clock, targets: WebhookTargets | None
    ) -> None:
        """`targets` vets each URL (`handoff_webhook.TargetGuard`); None refuses every one."""
        self._uow = uow
        self._clock = clock
        self._targets = targets

    async def put(
        self,
        account_id: str,
        actor_id: str,
        endpoint_id: str,
        *,
        url: object,
        events: object,
        format: object = WebhookFormat.STANDARD,
    ) -> Registered:
        """Create the endpoint, or change its url, events and format (its secret stays).

        Raises NotAMember, Forbidden (not an admin or owner), ValidationError (naming `url`,
        `events` or `format`; a URL whose host is loopback, private or link-local included)."""
        check_id("id", endpoint_id)
        checked = check_url(url)
        async with self._uow() as uow:
            (await acting_member(uow, account_id, actor_id)).require_manager()
        if self._targets is None:
            raise ValidationError(
                "url", "no webhook target check is wired (handoff_webhook.TargetGuard)"
            )
        await self._targets.check(checked)  # resolves the host: outside any transaction
        now = self._clock.now()
        async with self._uow() as uow:
            (await acting_member(uow, account_id, actor_id)).require_manager()
            endpoint = await uow.webhooks.get(account_id, endpoint_id)
            created = endpoint is None
            if endpoint is None:
                endpoint = WebhookEndpoint.register(
                    account_id=account_id,
                    id=endpoint_id,
                    url=checked,
                    events=events,
                    format=format,
                    now=now,
                )
            else:
                endpoint.change(url=checked, events=events, format=format, now=now)
            await uow.webhooks.save(endpoint)
            await uow.commit()
        return Registered(endpoint=endpoint, created=created)

    async def get(self, account_id: str, actor_id: str, endpoint_id: str) -> WebhookEndpoint:
        """Raises NotAMember, Forbidden, NotFound."""
        async with self._uow() as uow:
            (await acting_member(uow, account_id, actor_id)).require_manager()
            endpoint = await uow.webhooks.get(account_id, endpoint_id)
        if endpoint is None:
            raise NotFound(f"webhook {endpoint_id} not found")
        return endpoint

    async def endpoints(self, account_id: str, actor_id: str) -> list[WebhookEndpoint]:
        """Every endpoint of the account, by id. Raises NotAMember, Forbidden."""
        async with self._uow() as uow:
            (await acting_member(uow, account_id, actor_id)).require_manager()
            return await uow.webhooks.of_account(account_id)

    async def remove(self, account_id: str, actor_id: str, endpoint_id: str) -> None:
        """Forget the endpoint; its unsent deliveries are cancelled when they come due.
        Raises NotAMember, Forbidden, NotFound."""
        async with self._uow() as uow:
            (await acting_member(uow, account_id, actor_id)).require_manager()
            if not await uow.webhooks.delete(account_id, endpoint_id):
                raise NotFound(f"webhook {endpoint_id} not found")
            await uow.commit()
