"""The composition root: the one place that knows every adapter. `open_adapters` opens them from
the settings (and owns their lifecycles), `wire_services` wires the service over any adapters
through the core's one wiring, `handoff_core.bootstrap.wire`."""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from attrs import define

from handoff_app.live import BackgroundDispatch, LiveHub, LivePresence, LogSource, StreamGuard
from handoff_app.metrics import HeartbeatDelivery
from handoff_app.settings import Settings
from handoff_core.bootstrap import wire
from handoff_core.errors import HandoffError
from handoff_core.figures import StoreFigures
from handoff_core.links import ClaimLinks
from handoff_core.ports import Clock, MailSender, UnitOfWorkFactory, WebhookSender, WebhookTargets
from handoff_core.retry import RetrySchedule
from handoff_core.services.delivery import DeliveryService, DeliverySettings
from handoff_core.services.handoffs import HandoffService
from handoff_core.services.members import MemberService
from handoff_core.services.queries import Queries
from handoff_core.services.streams import StreamService
from handoff_core.services.webhooks import WebhookService

if TYPE_CHECKING:
    from handoff_sql import SqlDatabase

log = logging.getLogger("handoff.app")


class SystemClock:
    """The wall clock, in UTC."""

    def now(self) -> datetime:
        """Now, timezone-aware UTC."""
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
    settings: Settings, *, create: bool = True
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
    if db.target.is_sqlite and not create:
        _require_sqlite_file(db)
    elif db.target.is_sqlite:
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


def _require_sqlite_file(db: SqlDatabase) -> None:
    """For a command that only reads: a SQLite file that is missing or empty has no schema, and
    opening it would leave a new database behind; say so instead of writing anything."""
    from handoff_sql import SchemaNotCurrent
    from handoff_sql.migrate import schema_problem

    path = Path(os.path.expanduser(db.target.url.database or ""))
    if not path.exists():
        raise SchemaNotCurrent(
            f"the database {db.where} does not exist; run `handoff db upgrade` first"
        )
    if path.is_file() and path.stat().st_size == 0:
        problem = schema_problem(db.where, None)
        assert problem is not None
        raise problem


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


@define
class Adapters:
    """What the services run on, opened from the settings: the store, the clock, mail, live
    push and presence, outgoing webhooks and their target check, and what closes them (newest
    last)."""

    uow: UnitOfWorkFactory
    clock: Clock
    mail: MailSender
    hub: LiveHub
    presence: LivePresence
    ready: Callable[[], Awaitable[bool]]
    closers: list[Callable[[], Awaitable[None]]]
    webhooks: WebhookSender | None = None
    targets: WebhookTargets | None = None


async def open_adapters(
    settings: Settings, *, clock: Clock | None = None, create_store: bool = True
) -> Adapters:
    """Open what needs opening (the database, the push hub, the SMTP pool) for `settings`.
    Raises StorageUnavailable (and SchemaNotCurrent on PostgreSQL) when the store cannot serve.

    An empty SQLite database is given its schema, unless `create_store` is False (a command that
    only reads): then a SQLite file that does not exist yet is refused with SchemaNotCurrent
    and nothing is created."""
    from handoff_push import InProcessPresence
    from handoff_webhook import HttpWebhookSender, WebhookSettings

    uow, db_presence, ready, closers = await _store(settings, create=create_store)
    hub = await _hub(settings, uow)
    closers.append(hub.close)
    mail, close_mail = _mail_sender(settings)
    if close_mail is not None:
        closers.append(close_mail)
    hooks = HttpWebhookSender(
        WebhookSettings(
            timeout_seconds=settings.webhook_timeout_seconds,
            per_endpoint=settings.webhook_per_endpoint,
            allow_private=settings.webhook_allow_private,
        )
    )
    closers.append(hooks.close)
    return Adapters(
        uow=uow,
        clock=clock or SystemClock(),
        mail=mail,
        hub=hub,
        presence=db_presence or InProcessPresence(),
        ready=ready,
        closers=closers,
        webhooks=hooks,
        targets=hooks.guard,
    )


def wire_services(settings: Settings, adapters: Adapters) -> Services:
    """The service over `adapters`: the core's one wiring (`handoff_core.bootstrap.wire`), with
    background dispatch after each escalation, the stream guard and the store's figures."""
    from handoff_mail import check_address

    claim_links = claim_links_of(settings, adapters.clock)
    made: dict[str, BackgroundDispatch] = {}

    def dispatcher(delivery: DeliveryService) -> BackgroundDispatch:
        made["dispatch"] = BackgroundDispatch(delivery, max(1, settings.dispatch_concurrency))
        return made["dispatch"]

    library = wire(
        adapters.uow,
        adapters.clock,
        adapters.mail,
        presence=adapters.presence,
        hub=adapters.hub,
        dispatcher=dispatcher if settings.dispatch_concurrency else None,
        check_address=check_address,
        delivery_type=HeartbeatDelivery,
        webhooks=adapters.webhooks,
        targets=adapters.targets,
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
    )
    return Services(
        settings=settings,
        clock=adapters.clock,
        uow=adapters.uow,
        handoffs=library.handoffs,
        members=library.members,
        queries=library.queries,
        streams=library.streams,
        delivery=library.delivery,
        webhooks=library.webhooks,
        dispatch=made.get("dispatch") or BackgroundDispatch(library.delivery, 1),
        hub=adapters.hub,
        guard=StreamGuard(adapters.hub, adapters.uow),
        presence=adapters.presence,
        claim_links=claim_links,
        ready=adapters.ready,
        closers=adapters.closers,
        figures=_figures(settings, adapters.uow, adapters.clock),
    )


async def build_services(
    settings: Settings, *, clock: Clock | None = None, create_store: bool = True
) -> Services:
    """`wire_services` over `open_adapters`: what the HTTP API, the worker and the CLI run.
    `create_store=False`: see `open_adapters`."""
    return wire_services(
        settings, await open_adapters(settings, clock=clock, create_store=create_store)
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
