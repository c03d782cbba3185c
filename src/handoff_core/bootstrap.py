"""One wiring of the use cases over any adapters: the service and every test harness call `wire`.

With the fakes of `handoff_memory`, for instance:
`library = wire(MemoryDatabase(), ManualClock(), RecordingMailSender(), hub=RecordingPushHub())`,
then `await library.handoffs.escalate(...)`.

Like cosmicpython's `bootstrap`, it takes real adapters or fakes alike and builds the same graph.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from attrs import frozen

from handoff_core.model import EventType, TimelineEvent
from handoff_core.policy import IdFactory, new_id
from handoff_core.ports import (
    Announcer,
    Clock,
    Dispatcher,
    MailSender,
    Presence,
    PushHub,
    UnitOfWorkFactory,
    WebhookSender,
    WebhookTargets,
)
from handoff_core.services.common import SilentAnnouncer, StreamAnnouncer
from handoff_core.services.delivery import DeliveryService, DeliverySettings
from handoff_core.services.handoffs import HandoffService
from handoff_core.services.members import AddressCheck, MemberService, check_address_shape
from handoff_core.services.queries import Queries
from handoff_core.services.streams import StreamService
from handoff_core.services.webhooks import WebhookService
from handoff_core.stream import StreamEvent


@frozen
class Library:
    """The use cases of SPEC §4-§5, §10 and §14, wired over one set of adapters."""

    handoffs: HandoffService
    members: MemberService
    queries: Queries
    streams: StreamService
    delivery: DeliveryService
    webhooks: WebhookService


class DispatchingAnnouncer:
    """After a commit: each escalation's deliveries are handed to the dispatcher at once, then
    the stream events go on (to the push hub)."""

    def __init__(self, inner: Announcer, dispatcher: Dispatcher) -> None:
        self._inner = inner
        self._dispatcher = dispatcher

    async def committed(
        self, events: Sequence[TimelineEvent], stream: Sequence[StreamEvent] = ()
    ) -> None:
        for event in events:
            if event.type is EventType.SESSION_ESCALATED and event.handoff_id is not None:
                self._dispatcher.kick(event.account_id, event.handoff_id)
        await self._inner.committed(events, stream)


def wire(
    uow: UnitOfWorkFactory,
    clock: Clock,
    mail: MailSender,
    *,
    presence: Presence | None = None,
    hub: PushHub | None = None,
    dispatcher: Callable[[DeliveryService], Dispatcher] | None = None,
    settings: DeliverySettings | None = None,
    check_address: AddressCheck = check_address_shape,
    make_id: IdFactory = new_id,
    delivery_type: type[DeliveryService] = DeliveryService,
    webhooks: WebhookSender | None = None,
    targets: WebhookTargets | None = None,
) -> Library:
    """The use cases over these adapters.

    `presence` picks push or email (None: everyone is emailed); `hub` receives every committed
    stream event (None: nobody listens live); `dispatcher`, given the delivery service, returns
    what sends an escalation's deliveries right after its commit (None: the worker sends them on
    its next pass). `make_id` makes every new id (a counter makes tests replayable).
    `webhooks` posts the `webhook` channel and `targets` vets endpoint URLs (SPEC §14; both
    from `handoff_webhook`): without `targets` no endpoint can be registered.
    """
    published: Announcer = StreamAnnouncer(hub) if hub is not None else SilentAnnouncer()
    delivery = delivery_type(
        uow,
        clock,
        mail,
        presence=presence,
        announcer=published,
        settings=settings,
        make_id=make_id,
        webhooks=webhooks,
    )
    on_commit = (
        published if dispatcher is None else DispatchingAnnouncer(published, dispatcher(delivery))
    )
    return Library(
        handoffs=HandoffService(
            uow, clock, presence=presence, announcer=on_commit, make_id=make_id
        ),
        members=MemberService(uow, clock, check_address=check_address),
        queries=Queries(uow),
        streams=StreamService(uow, clock),
        delivery=delivery,
        webhooks=WebhookService(uow, clock, targets),
    )
