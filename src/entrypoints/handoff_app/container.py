"""The composition root: the one place that knows every adapter and wires them from settings."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import punq
from attrs import define

from handoff_app.live import (
    BackgroundDispatch,
    LiveHub,
    LivePresence,
    LogSource,
    ServiceAnnouncer,
    StreamGuard,
)
from handoff_app.metrics import HeartbeatDelivery
from handoff_app.settings import Settings
from handoff_core.errors import HandoffError
from handoff_core.figures import StoreFigures
from handoff_core.links import ClaimLinks
from handoff_core.ports import Clock, MailSender, UnitOfWorkFactory
from handoff_core.retry import RetrySchedule
from handoff_core.services.delivery import DeliveryService, DeliverySettings
from handoff_core.services.handoffs import HandoffService
from handoff_core.services.members import MemberService
from handoff_core.services.queries import Queries
from handoff_core.services.streams import StreamService
from handoff_core.services.webhooks import WebhookService

log = logging.getLogger("handoff.app")


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


@define
class Services:
    """Everything the HTTP API, the worker and the CLI use, built once per process."""

    settings: Settings
    clock: Clock
    uow: UnitOfWorkFactory
    handoffs: HandoffService
    members: MemberService
    queries: Queries
    streams: StreamService
    delivery: DeliveryService
    webhooks: WebhookService
    dispatch: BackgroundDispatch
    hub: LiveHub
    guard: StreamGuard
    presence: LivePresence
    claim_links: ClaimLinks | None
    ready: Callable[[], Awaitable[bool]]
    closers: list[Callable[[], Awaitable[None]]]
    figures: Callable[[], Awaitable[StoreFigures]]

    async def close(self) -> None:
        """Stop the stream guard and background sends, then close what was opened, newest
        first; an error closing one is logged and the rest still close."""
        await self.guard.close()
        await self.dispatch.drain()
        for close in reversed(self.closers):
            try:
                await close()
            except Exception:
                log.exception("error while closing")


def _mail_sender(settings: Settings) -> tuple[MailSender, Callable[[], Awaitable[None]] | None]:
    from handoff_mail import MaildirSender, SmtpSender, SmtpSettings

    if settings.smtp_url:
        smtp = SmtpSender(SmtpSettings.from_url(settings.smtp_url, mail_from=settings.mail_from))
        return smtp, smtp.close
    return MaildirSender(settings.maildir, mail_from=settings.mail_from), None


async def _store(
    settings: Settings,
) -> tuple[
    UnitOfWorkFactory,
    LivePresence | None,
    Callable[[], Awaitable[bool]],
    list[Callable[[], Awaitable[None]]],
]:
    if settings.is_memory:
        from handoff_memory import MemoryDatabase

        async def always() -> bool:
            return True

        return MemoryDatabase(), None, always, []
    from handoff_sql import SqlDatabase, ensure_schema, head, require_current_schema

    db = SqlDatabase(settings.database_url)
    if db.target.is_sqlite:
        await ensure_schema(settings.database_url)  # an embedded database makes itself
    await db.start()
    try:
        await require_current_schema(db)  # PostgreSQL is upgraded by `handoff db upgrade` only
    except BaseException:
        await db.close()
        raise

    async def ready() -> bool:
        """The database answers and its schema is this package's."""
        try:
            return await db.revision() == head()
        except HandoffError:
            return False

    presence = db.presence() if settings.push_mode == "pg" else None
    return db, presence, ready, [db.close]


async def _hub(settings: Settings, uow: UnitOfWorkFactory) -> LiveHub:
    from handoff_push import InProcessHub

    source = LogSource(uow)
    if settings.push_mode == "pg":
        from handoff_push import PgNotifyHub

        hub = PgNotifyHub(settings.database_url, source)
        await hub.start()
        return hub
    return InProcessHub(source)


def claim_links_of(settings: Settings, clock: Clock) -> ClaimLinks | None:
    """The claim links of every email, when there is a secret to sign them with."""
    if not settings.link_key:
        return None
    ttl = timedelta(seconds=settings.claim_link_ttl_seconds)
    return ClaimLinks(settings.link_key, settings.public_url, clock, ttl)


async def build_services(settings: Settings, *, clock: Clock | None = None) -> Services:
    """Open what needs opening (database, hub) and wire the services with punq."""
    from handoff_mail import check_address
    from handoff_push import InProcessPresence

    uow, db_presence, ready, closers = await _store(settings)
    hub = await _hub(settings, uow)
    closers.append(hub.close)
    presence: LivePresence = db_presence or InProcessPresence()
    mail, close_mail = _mail_sender(settings)
    if close_mail is not None:
        closers.append(close_mail)
    from handoff_webhook import HttpWebhookSender, WebhookSettings

    hooks = HttpWebhookSender(
        WebhookSettings(
            timeout_seconds=settings.webhook_timeout_seconds,
            per_endpoint=settings.webhook_per_endpoint,
            allow_private=settings.webhook_allow_private,
        )
    )
    closers.append(hooks.close)

    container = punq.Container()
    container.register(Settings, instance=settings)
    container.register(Clock, instance=clock or SystemClock())
    the_clock = container.resolve(Clock)
    claim_links = claim_links_of(settings, the_clock)
    announcer = ServiceAnnouncer(hub, None)
    delivery = HeartbeatDelivery(
        uow,
        the_clock,
        mail,
        presence=presence,
        announcer=announcer,
        settings=DeliverySettings(
            public_url=settings.public_url,
            lease_seconds=settings.worker_lease_seconds,
            batch_size=settings.worker_batch,
            claim_links=claim_links,
            retry=RetrySchedule(
                base_seconds=settings.retry_base_seconds,
                cap_seconds=settings.retry_cap_seconds,
                attempts=settings.retry_attempts,
            ),
        ),
        webhooks=hooks,
    )
    dispatch = BackgroundDispatch(delivery, settings.dispatch_concurrency)
    announcer.attach(dispatch)
    container.register(DeliveryService, instance=delivery)
    container.register(
        HandoffService,
        factory=lambda: HandoffService(uow, the_clock, presence=presence, announcer=announcer),
    )
    container.register(
        MemberService, factory=lambda: MemberService(uow, the_clock, check_address=check_address)
    )
    container.register(Queries, factory=lambda: Queries(uow))
    container.register(WebhookService, factory=lambda: WebhookService(uow, the_clock, hooks.guard))
    return Services(
        settings=settings,
        clock=the_clock,
        uow=uow,
        handoffs=container.resolve(HandoffService),
        members=container.resolve(MemberService),
        queries=container.resolve(Queries),
        streams=StreamService(uow, the_clock),
        delivery=delivery,
        webhooks=container.resolve(WebhookService),
        dispatch=dispatch,
        hub=hub,
        guard=StreamGuard(hub, uow),
        presence=presence,
        claim_links=claim_links,
        ready=ready,
        closers=closers,
        figures=_figures(settings, uow, the_clock),
    )


def _figures(
    settings: Settings, uow: UnitOfWorkFactory, clock: Clock
) -> Callable[[], Awaitable[StoreFigures]]:
    """The store's reading for /metrics, from whichever store `uow` is."""
    from handoff_memory import MemoryDatabase

    if isinstance(uow, MemoryDatabase):
        from handoff_memory.figures import store_figures as memory_figures

        memory = uow
        return lambda: memory_figures(memory)
    from handoff_sql import SqlDatabase
    from handoff_sql.figures import store_figures as sql_figures

    assert isinstance(uow, SqlDatabase)
    database, kept = uow, settings.push_mode == "pg"
    return lambda: sql_figures(database, clock.now(), presence_kept=kept)
