"""A rolled-back escalation leaves nothing and sends nothing (SPEC §5, Durable outbox): its
deliveries are rows of its own transaction, so when the commit is lost or the session's version
check fails there is no handoff, no delivery, no timeline event, and no worker pass or dispatch
puts anything on the wire."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Self

import asyncpg
import pytest
import sqlalchemy as sa
from tests.worker.harness import (
    ACCOUNT,
    ESCALATOR,
    SinkServer,
    Store,
    add_team,
)

from handoff_app.container import SystemClock
from handoff_core import (
    Conflict,
    DeliveryService,
    HandoffService,
    Session,
    StorageUnavailable,
)
from handoff_core.model import TimelineEvent
from handoff_core.policy import new_id
from handoff_core.ports import EscalationInputs, Escalations, NewEscalation, Sessions
from handoff_core.stream import StreamEvent
from handoff_mail import SmtpSender, SmtpSettings
from handoff_sql import SqlDatabase, SqlUnitOfWork
from handoff_sql.tables import deliveries, handoffs, timeline

SENIORS = 3
Hook = Callable[[SqlUnitOfWork], Awaitable[None]]


class SessionsWithARival:
    """Sessions whose `get` lets a rival write the session right after it was read."""

    def __init__(self, inner: Sessions, rival: Callable[[], Awaitable[None]]) -> None:
        self._inner = inner
        self._rival = rival

    async def get(self, account_id: str, session_id: str) -> Session | None:
        found = await self._inner.get(account_id, session_id)
        await self._rival()
        return found

    async def add(self, session: Session) -> None:
        await self._inner.add(session)

    async def update(self, session: Session) -> None:
        await self._inner.update(session)


class EscalationsWithARival:
    """Escalations whose `inputs` let a rival write the session right after they were read."""

    def __init__(self, inner: Escalations, rival: Callable[[], Awaitable[None]]) -> None:
        self._inner = inner
        self._rival = rival

    async def inputs(self, account_id: str, session_id: str) -> EscalationInputs:
        found = await self._inner.inputs(account_id, session_id)
        await self._rival()
        return found

    async def add(self, escalation: NewEscalation) -> tuple[TimelineEvent, StreamEvent]:
        return await self._inner.add(escalation)


class Sabotaged:
    """A real SqlUnitOfWork with one thing made to go wrong: `before_commit` runs just before
    the commit (and may break the connection), `fail_commit` makes the commit raise as a
    connection lost on the way would, `rival` writes the session behind the unit's back."""

    def __init__(
        self,
        db: SqlDatabase,
        *,
        before_commit: Hook | None = None,
        fail_commit: bool = False,
        rival: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._uow = db()
        self._before_commit = before_commit
        self._fail_commit = fail_commit
        self.members = self._uow.members
        self.sessions: Any = (
            SessionsWithARival(self._uow.sessions, rival) if rival else self._uow.sessions
        )
        self.handoffs = self._uow.handoffs
        self.deliveries = self._uow.deliveries
        self.timeline = self._uow.timeline
        self.policies = self._uow.policies
        self.stream = self._uow.stream
        self.webhooks = self._uow.webhooks
        self.escalations: Any = (
            EscalationsWithARival(self._uow.escalations, rival) if rival else self._uow.escalations
        )

    async def __aenter__(self) -> Self:
        await self._uow.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._uow.__aexit__(exc_type, exc, tb)

    async def commit(self) -> None:
        if self._before_commit is not None:
            await self._before_commit(self._uow)
        if self._fail_commit:
            raise StorageUnavailable("storage unavailable: lost the connection during commit")
        await self._uow.commit()

    async def rollback(self) -> None:
        await self._uow.rollback()


def _terminate_own_backend(url: str) -> Hook:
    """Cut the unit of work's PostgreSQL connection from the server side, as a failover or a
    network drop would, so that its COMMIT meets a dead connection."""

    async def hook(uow: SqlUnitOfWork) -> None:
        pid = (await uow.execute(sa.text("SELECT pg_backend_pid()"))).scalar_one()
        admin = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"), timeout=5)
        try:
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
        finally:
            await admin.close()

    return hook


async def _nothing_left_and_nothing_sent(
    url: str, store: Store, sink: SinkServer, session_id: str, minted: list[str]
) -> None:
    assert await store.count(handoffs) == 0
    assert await store.count(deliveries) == 0
    assert await store.count(timeline, session_id=session_id) == 1  # session.created only
    row = await store.session_row(session_id)
    assert (row["status"], row["handoff_count"], row["escalation_package"]) == ("active", 0, None)

    db = SqlDatabase(url)
    mail = SmtpSender(SmtpSettings.from_url(sink.url))
    try:
        delivery = DeliveryService(db, SystemClock(), mail)
        assert await delivery.run_once() == 0
        for some_id in minted:  # whichever of them was the handoff's id
            assert await delivery.dispatch(ACCOUNT, some_id) == 0
        assert sink.sink.count() == 0
        # The control: the same session escalated without sabotage does reach the sink.
        handoff = await HandoffService(db, SystemClock()).escalate(ACCOUNT, ESCALATOR, session_id)
        assert await delivery.dispatch(ACCOUNT, handoff.id) == SENIORS
    finally:
        await mail.close()
        await db.close()
    assert sink.sink.count() == SENIORS


def _minting(minted: list[str]) -> Callable[[], str]:
    def make_id() -> str:
        minted.append(new_id())
        return minted[-1]

    return make_id


@pytest.fixture
async def scene(
    database_url: str, start_sink: Callable[..., SinkServer], open_store: Callable[[str], Store]
) -> tuple[str, SinkServer, Store, str]:
    """A team with SENIORS offline seniors, an active session, and an SMTP sink waiting."""
    await add_team(database_url, SENIORS)
    db = SqlDatabase(database_url)
    try:
        session = await HandoffService(db, SystemClock()).start_session(ACCOUNT, ESCALATOR, "VPN")
    finally:
        await db.close()
    return database_url, start_sink(), open_store(database_url), session.id


async def test_a_commit_that_fails_leaves_no_trace_and_sends_nothing(
    scene: tuple[str, SinkServer, Store, str],
) -> None:
    url, sink, store, session_id = scene
    before = await store.session_row(session_id)
    minted: list[str] = []
    db = SqlDatabase(url)
    try:
        service = HandoffService(
            lambda: Sabotaged(db, fail_commit=True), SystemClock(), make_id=_minting(minted)
        )
        with pytest.raises(StorageUnavailable):
            await service.escalate(ACCOUNT, ESCALATOR, session_id, "please help")
    finally:
        await db.close()
    assert len(minted) == 1 + SENIORS, "the escalation got as far as planning its deliveries"
    assert await store.session_row(session_id) == before
    await _nothing_left_and_nothing_sent(url, store, sink, session_id, minted)


@pytest.mark.postgres
async def test_a_connection_lost_at_commit_leaves_no_trace_and_sends_nothing(
    postgres_url: str, start_sink: Callable[..., SinkServer], open_store: Callable[[str], Store]
) -> None:
    await add_team(postgres_url, SENIORS)
    db = SqlDatabase(postgres_url)
    minted: list[str] = []
    try:
        session = await HandoffService(db, SystemClock()).start_session(ACCOUNT, ESCALATOR, "VPN")
        store = open_store(postgres_url)
        before = await store.session_row(session.id)
        service = HandoffService(
            lambda: Sabotaged(db, before_commit=_terminate_own_backend(postgres_url)),
            SystemClock(),
            make_id=_minting(minted),
        )
        with pytest.raises(StorageUnavailable) as lost:
            await service.escalate(ACCOUNT, ESCALATOR, session.id, "please help")
    finally:
        await db.close()
    assert "commit" in lost.value.detail
    assert len(minted) == 1 + SENIORS
    assert await store.session_row(session.id) == before
    await _nothing_left_and_nothing_sent(postgres_url, store, start_sink(), session.id, minted)


@pytest.mark.postgres
async def test_a_concurrent_edit_of_the_session_rolls_the_escalation_back(
    postgres_url: str, start_sink: Callable[..., SinkServer], open_store: Callable[[str], Store]
) -> None:
    await add_team(postgres_url, SENIORS)
    db, rival_db = SqlDatabase(postgres_url), SqlDatabase(postgres_url)
    minted: list[str] = []
    try:
        session = await HandoffService(db, SystemClock()).start_session(ACCOUNT, ESCALATOR, "VPN")

        async def rival() -> None:
            # Another request edits the session, on its own connection, and commits first.
            await HandoffService(rival_db, SystemClock()).revise_session(
                ACCOUNT, ESCALATOR, session.id, problem_summary="VPN and DNS"
            )

        service = HandoffService(
            lambda: Sabotaged(db, rival=rival), SystemClock(), make_id=_minting(minted)
        )
        with pytest.raises(Conflict):
            await service.escalate(ACCOUNT, ESCALATOR, session.id, "please help")
    finally:
        await db.close()
        await rival_db.close()
    assert len(minted) == 1 + SENIORS
    store = open_store(postgres_url)
    row = await store.session_row(session.id)
    assert (row["problem_summary"], row["version"]) == ("VPN and DNS", session.version + 1)
    await _nothing_left_and_nothing_sent(postgres_url, store, start_sink(), session.id, minted)
