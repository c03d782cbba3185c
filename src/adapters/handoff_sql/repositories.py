"""Members, sessions, handoffs and policies over one unit of work's transaction.

State changes that race (claim, close, the next reminder, a session's version) are each one
conditional UPDATE: the database decides who wins, never a read followed by a write.

The statements on the request path and the worker's path are built once, with bound parameters
(`_MEMBER`, `_SESSION`, ...): building a SQLAlchemy statement and its cache key costs about as
much CPU as running it, and these run for every escalation.
"""

from __future__ import annotations

import functools
from collections.abc import Collection
from datetime import datetime
from typing import Any, NoReturn

import sqlalchemy as sa

from handoff_core.errors import Conflict, IdempotencyConflict
from handoff_core.links import LoginLink
from handoff_core.model import (
    EscalationPolicy,
    Handoff,
    HandoffStatus,
    Intent,
    Member,
    Role,
    Session,
)
from handoff_core.ports import Handoffs, LoginLinks, Members, Policies, Sessions, Webhooks
from handoff_core.webhooks import WebhookEndpoint
from handoff_sql import rows
from handoff_sql.statements import Params, Statements, upsert_insert
from handoff_sql.tables import handoffs, login_links, members, policies, sessions, webhooks


class SqlRepository:
    def __init__(self, uow: Statements) -> None:
        self._uow = uow


_OPEN_ESCALATION = (
    handoffs.c.status == HandoffStatus.OPEN,
    handoffs.c.intent == Intent.ESCALATE,
)


def _members_where(*conditions: Any) -> sa.Select[Any]:
    return (
        sa.select(members)
        .where(members.c.account_id == sa.bindparam("account_id"), *conditions)
        .order_by(members.c.id)
    )


_MEMBER = sa.select(members).where(
    members.c.account_id == sa.bindparam("account_id"), members.c.id == sa.bindparam("member_id")
)
_CURRENT = _members_where(members.c.deleted_at.is_(None))
_ELIGIBLE = _members_where(
    members.c.deleted_at.is_(None),
    members.c.active.is_(True),
    members.c.role.in_(sa.bindparam("roles", expanding=True)),
)
_MEMBERS_BY_ID = _members_where(members.c.id.in_(sa.bindparam("ids", expanding=True)))
_SESSION = sa.select(sessions).where(
    sessions.c.account_id == sa.bindparam("account_id"), sessions.c.id == sa.bindparam("session_id")
)
SESSION_COLUMNS = tuple(
    c.name
    for c in sessions.c
    if c.name not in ("account_id", "id", "owner_id", "created_at", "version")
)
_UPDATE_SESSION = (
    sa.update(sessions)
    .where(
        sessions.c.account_id == sa.bindparam("w_account_id"),
        sessions.c.id == sa.bindparam("w_id"),
        sessions.c.version == sa.bindparam("w_version"),
    )
    .values({name: sa.bindparam(name) for name in (*SESSION_COLUMNS, "version")})
)
_HANDOFF = sa.select(handoffs).where(
    handoffs.c.account_id == sa.bindparam("account_id"), handoffs.c.id == sa.bindparam("handoff_id")
)
_THIS_HANDOFF = (
    handoffs.c.account_id == sa.bindparam("w_account_id"),
    handoffs.c.id == sa.bindparam("w_handoff_id"),
)
_CLAIM = (
    sa.update(handoffs)
    .where(*_THIS_HANDOFF, *_OPEN_ESCALATION)
    .values(
        status=HandoffStatus.CLAIMED,
        claimed_by=sa.bindparam("claimed_by"),
        claimed_at=sa.bindparam("at"),
        closed_at=sa.bindparam("at"),
        next_reminder_at=None,
        next_tier_at=None,
    )
    .returning(handoffs.c.id)
)
_CLOSE = (
    sa.update(handoffs)
    .where(*_THIS_HANDOFF, handoffs.c.status == HandoffStatus.OPEN)
    .values(
        status=sa.bindparam("status"),
        closed_at=sa.bindparam("at"),
        next_reminder_at=None,
        next_tier_at=None,
    )
    .returning(handoffs.c.id)
)
_WEBHOOKS = (
    sa.select(webhooks)
    .where(webhooks.c.account_id == sa.bindparam("account_id"))
    .order_by(webhooks.c.id)
)
_POLICY = sa.select(policies.c.policy).where(policies.c.account_id == sa.bindparam("account_id"))


@functools.cache
def _add_handoff(dialect: str) -> Any:
    return upsert_insert(dialect, handoffs).on_conflict_do_nothing().returning(handoffs.c.id)


class SqlMembers(SqlRepository, Members):
    async def get(self, account_id: str, member_id: str) -> Member | None:
        params = {"account_id": account_id, "member_id": member_id}
        row = (await self._uow.execute(_MEMBER, params)).mappings().first()
        return rows.member_of(row) if row is not None else None

    async def _listed(self, query: sa.Select[Any], **params: Any) -> list[Member]:
        return [rows.member_of(r) for r in (await self._uow.execute(query, params)).mappings()]

    async def current(self, account_id: str) -> list[Member]:
        return await self._listed(_CURRENT, account_id=account_id)

    async def owners_for_update(self, account_id: str) -> list[Member]:
        """SELECT … FOR UPDATE on PostgreSQL (in id order, so two callers never deadlock);
        SQLite's unit of work already holds the only write lock."""
        query = (
            sa.select(members)
            .where(
                members.c.account_id == account_id,
                members.c.deleted_at.is_(None),
                members.c.active.is_(True),
                members.c.role == Role.OWNER,
            )
            .order_by(members.c.id)
            .with_for_update()
        )
        return [rows.member_of(r) for r in (await self._uow.execute(query)).mappings()]

    async def get_many(self, account_id: str, member_ids: Collection[str]) -> list[Member]:
        if not member_ids:
            return []
        return await self._listed(
            _MEMBERS_BY_ID, account_id=account_id, ids=sorted(set(member_ids))
        )

    async def eligible(self, account_id: str, roles: Collection[Role]) -> list[Member]:
        return await self._listed(_ELIGIBLE, account_id=account_id, roles=[Role(r) for r in roles])

    async def save(self, member: Member) -> None:
        values = rows.member_values(member)
        statement = upsert_insert(self._uow.dialect, members).values(values)
        statement = statement.on_conflict_do_update(
            index_elements=[members.c.account_id, members.c.id],
            set_={k: statement.excluded[k] for k in values if k not in ("account_id", "id")},
        )
        await self._uow.execute(statement, doing="save a member")


class SqlSessions(SqlRepository, Sessions):
    async def get(self, account_id: str, session_id: str) -> Session | None:
        params = {"account_id": account_id, "session_id": session_id}
        row = (await self._uow.execute(_SESSION, params)).mappings().first()
        return rows.session_of(row) if row is not None else None

    async def add(self, session: Session) -> None:
        values = {**rows.session_values(session), "version": 1}
        statement = (
            upsert_insert(self._uow.dialect, sessions)
            .values(values)
            .on_conflict_do_nothing()
            .returning(sessions.c.id)
        )
        if (await self._uow.execute(statement, doing="add a session")).first() is None:
            raise Conflict(f"session {session.id} already exists")
        session.version = 1

    async def update(self, session: Session) -> None:
        values = rows.session_values(session)
        params = {name: values[name] for name in SESSION_COLUMNS}
        params |= {
            "version": session.version + 1,
            "w_account_id": session.account_id,
            "w_id": session.id,
            "w_version": session.version,
        }
        result = await self._uow.execute(_UPDATE_SESSION, params, doing="update a session")
        if result.rowcount != 1:
            raise Conflict(f"session {session.id} was changed by someone else; reload and retry")
        session.version += 1


class SqlHandoffs(SqlRepository, Handoffs):
    def _one(self, account_id: str, handoff_id: str) -> tuple[Any, Any]:
        return handoffs.c.account_id == account_id, handoffs.c.id == handoff_id

    async def _first(self, query: sa.Select[Any], params: Params = None) -> Handoff | None:
        row = (await self._uow.execute(query, params)).mappings().first()
        return rows.handoff_of(row) if row is not None else None

    async def _all(self, query: sa.Select[Any]) -> list[Handoff]:
        return [rows.handoff_of(r) for r in (await self._uow.execute(query)).mappings()]

    async def get(self, account_id: str, handoff_id: str) -> Handoff | None:
        return await self._first(_HANDOFF, {"account_id": account_id, "handoff_id": handoff_id})

    async def add(self, handoff: Handoff) -> None:
        """DO NOTHING rather than fail on a duplicate: the transaction stays usable, and a
        concurrent insert of the same key waits for the first and then loses here."""
        statement = _add_handoff(self._uow.dialect)
        values = rows.handoff_values(handoff)
        if (await self._uow.execute(statement, values, doing="add a handoff")).first() is not None:
            return
        await self.refuse(handoff)

    async def refuse(self, handoff: Handoff) -> NoReturn:
        """Why `handoff` was not added: IdempotencyConflict if its key was taken, else Conflict."""
        key = handoff.idempotency_key
        if key is not None and await self.by_idempotency_key(handoff.account_id, key):
            raise IdempotencyConflict("this Idempotency-Key was already used")
        raise Conflict(f"handoff {handoff.id} already exists")

    async def by_idempotency_key(self, account_id: str, key: str) -> Handoff | None:
        return await self._first(
            sa.select(handoffs).where(
                handoffs.c.account_id == account_id, handoffs.c.idempotency_key == key
            )
        )

    async def open_for_session(self, account_id: str, session_id: str) -> Handoff | None:
        return await self._first(
            sa.select(handoffs)
            .where(
                handoffs.c.account_id == account_id,
                handoffs.c.session_id == session_id,
                handoffs.c.status == HandoffStatus.OPEN,
            )
            .order_by(handoffs.c.created_at, handoffs.c.id)
            .limit(1)
        )

    async def for_session(self, account_id: str, session_id: str) -> list[Handoff]:
        return await self._all(
            sa.select(handoffs)
            .where(handoffs.c.account_id == account_id, handoffs.c.session_id == session_id)
            .order_by(handoffs.c.created_at, handoffs.c.id)
        )

    async def _change(self, where: tuple[Any, ...], values: dict[str, Any], doing: str) -> bool:
        statement = sa.update(handoffs).where(*where).values(values).returning(handoffs.c.id)
        return (await self._uow.execute(statement, doing=doing)).first() is not None

    async def claim(self, account_id: str, handoff_id: str, claimer_id: str, at: datetime) -> bool:
        params = {
            "w_account_id": account_id,
            "w_handoff_id": handoff_id,
            "claimed_by": claimer_id,
            "at": at,
        }
        result = await self._uow.execute(_CLAIM, params, doing="claim a handoff")
        return result.first() is not None

    async def close(
        self, account_id: str, handoff_id: str, status: HandoffStatus, at: datetime
    ) -> bool:
        params = {
            "w_account_id": account_id,
            "w_handoff_id": handoff_id,
            "status": HandoffStatus(status),
            "at": at,
        }
        result = await self._uow.execute(_CLOSE, params, doing="close a handoff")
        return result.first() is not None

    async def escalations(
        self,
        account_id: str,
        *,
        statuses: Collection[HandoffStatus] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[Handoff]:
        conditions = [handoffs.c.account_id == account_id, handoffs.c.intent == Intent.ESCALATE]
        if statuses is not None:
            conditions.append(handoffs.c.status.in_([HandoffStatus(s) for s in statuses]))
        if since is not None:
            conditions.append(handoffs.c.created_at >= since)
        if until is not None:
            conditions.append(handoffs.c.created_at < until)
        return await self._all(
            sa.select(handoffs).where(*conditions).order_by(handoffs.c.created_at, handoffs.c.id)
        )

    async def reminders_due(self, now: datetime, limit: int) -> list[Handoff]:
        return await self._all(
            sa.select(handoffs)
            .where(
                handoffs.c.status == HandoffStatus.OPEN,
                handoffs.c.next_reminder_at.is_not(None),
                handoffs.c.next_reminder_at <= now,
            )
            .order_by(handoffs.c.next_reminder_at, handoffs.c.id)
            .limit(limit)
        )

    async def advance_reminder(
        self, account_id: str, handoff_id: str, round: int, next_at: datetime | None
    ) -> bool:
        return await self._change(
            (
                *self._one(account_id, handoff_id),
                handoffs.c.status == HandoffStatus.OPEN,
                handoffs.c.reminders_sent == round - 1,
            ),
            {"reminders_sent": round, "next_reminder_at": next_at},
            "record a reminder",
        )

    async def tiers_due(self, now: datetime, limit: int) -> list[Handoff]:
        return await self._all(
            sa.select(handoffs)
            .where(
                handoffs.c.status == HandoffStatus.OPEN,
                handoffs.c.next_tier_at.is_not(None),
                handoffs.c.next_tier_at <= now,
            )
            .order_by(handoffs.c.next_tier_at, handoffs.c.id)
            .limit(limit)
        )

    async def advance_tier(
        self, account_id: str, handoff_id: str, tier: int, next_at: datetime | None
    ) -> bool:
        return await self._change(
            (
                *self._one(account_id, handoff_id),
                handoffs.c.status == HandoffStatus.OPEN,
                handoffs.c.tiers_reached == tier - 1,
            ),
            {"tiers_reached": tier, "next_tier_at": next_at},
            "record a tier reached",
        )


class SqlWebhooks(SqlRepository, Webhooks):
    async def get(self, account_id: str, endpoint_id: str) -> WebhookEndpoint | None:
        query = sa.select(webhooks).where(
            webhooks.c.account_id == account_id, webhooks.c.id == endpoint_id
        )
        row = (await self._uow.execute(query)).mappings().first()
        return rows.webhook_of(row) if row is not None else None

    async def of_account(self, account_id: str) -> list[WebhookEndpoint]:
        found = await self._uow.execute(_WEBHOOKS, {"account_id": account_id})
        return [rows.webhook_of(r) for r in found.mappings()]

    async def save(self, endpoint: WebhookEndpoint) -> None:
        values = rows.webhook_values(endpoint)
        statement = upsert_insert(self._uow.dialect, webhooks).values(values)
        statement = statement.on_conflict_do_update(
            index_elements=[webhooks.c.account_id, webhooks.c.id],
            set_={k: statement.excluded[k] for k in values if k not in ("account_id", "id")},
        )
        await self._uow.execute(statement, doing="save a webhook endpoint")

    async def delete(self, account_id: str, endpoint_id: str) -> bool:
        statement = (
            sa.delete(webhooks)
            .where(webhooks.c.account_id == account_id, webhooks.c.id == endpoint_id)
            .returning(webhooks.c.id)
        )
        result = await self._uow.execute(statement, doing="remove a webhook endpoint")
        return result.first() is not None


class SqlPolicies(SqlRepository, Policies):
    async def get(self, account_id: str) -> EscalationPolicy | None:
        found = await self._uow.execute(_POLICY, {"account_id": account_id})
        raw = found.scalar_one_or_none()
        return rows.policy_of(raw)

    async def put(self, account_id: str, policy: EscalationPolicy) -> None:
        statement = upsert_insert(self._uow.dialect, policies).values(
            account_id=account_id, policy=policy.to_dict()
        )
        statement = statement.on_conflict_do_update(
            index_elements=[policies.c.account_id], set_={"policy": statement.excluded.policy}
        )
        await self._uow.execute(statement, doing="save the escalation policy")


class SqlLoginLinks(SqlRepository, LoginLinks):
    async def add(self, link: LoginLink) -> None:
        statement = sa.insert(login_links).values(
            code_hash=link.code_hash,
            account_id=link.account_id,
            member_id=link.member_id,
            created_at=link.created_at,
            expires_at=link.expires_at,
            used_at=link.used_at,
        )
        await self._uow.execute(statement, doing="save a sign-in link")

    async def redeem(self, code_hash: str, at: datetime) -> LoginLink | None:
        statement = (
            sa.update(login_links)
            .where(
                login_links.c.code_hash == code_hash,
                login_links.c.used_at.is_(None),
                login_links.c.expires_at > at,
            )
            .values(used_at=at)
            .returning(
                login_links.c.account_id,
                login_links.c.member_id,
                login_links.c.created_at,
                login_links.c.expires_at,
            )
        )
        row = (await self._uow.execute(statement, doing="redeem a sign-in link")).first()
        if row is None:
            return None
        return LoginLink(
            code_hash=code_hash,
            account_id=row.account_id,
            member_id=row.member_id,
            created_at=row.created_at,
            expires_at=row.expires_at,
        )
