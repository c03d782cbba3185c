"""The domain's nouns: members, sessions, handoffs, deliveries and the timeline.

Entities are mutable attrs classes changed only through their own methods; the rules of SPEC §4
live in those methods, so a refusal is raised before anything changes.
"""

from __future__ import annotations

import copy
import json
import unicodedata
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from attrs import define, field, frozen

from handoff_core.errors import AlreadyClaimed, Forbidden, InvalidTransition, ValidationError

SUMMARY_MAX = 500
NOTES_MAX = 4_000
CONTEXT_MAX_BYTES = 256 * 1024
CONTEXT_MAX_DEPTH = 64
NAME_MAX = 200
EMAIL_MAX = 320
ID_MAX = 128

JsonObject = dict[str, Any]


class Role(StrEnum):
    """A member's role in an account (SPEC §3). Seniors are owner, admin and engineer;
    viewers only read."""

    OWNER = "owner"
    ADMIN = "admin"
    ENGINEER = "engineer"
    VIEWER = "viewer"


SENIOR_ROLES = frozenset({Role.OWNER, Role.ADMIN, Role.ENGINEER})
MANAGER_ROLES = frozenset({Role.OWNER, Role.ADMIN})


class SessionStatus(StrEnum):
    """Where a session stands: active, paused (parked), escalated, or resolved (for good)."""

    ACTIVE = "active"
    PAUSED = "paused"
    ESCALATED = "escalated"
    RESOLVED = "resolved"


class Intent(StrEnum):
    """What a handoff does: park (a private pause) or escalate (tell the seniors)."""

    PARK = "park"
    ESCALATE = "escalate"


class HandoffStatus(StrEnum):
    """A handoff's state: open, then claimed, resumed (a park) or withdrawn."""

    OPEN = "open"
    CLAIMED = "claimed"
    RESUMED = "resumed"
    WITHDRAWN = "withdrawn"


class Channel(StrEnum):
    """How a notice reaches its recipient."""

    EMAIL = "email"
    PUSH = "push"
    WEBHOOK = "webhook"


class NoticeKind(StrEnum):
    """Which notice a delivery carries: the escalation itself, or a reminder."""

    ESCALATION = "escalation"
    REMINDER = "reminder"
    CLOSURE = "closure"  # webhooks only: the escalation was claimed or withdrawn


class DeliveryStatus(StrEnum):
    """A delivery's record: pending (due or waiting to retry), sent, failed (refused for
    good), dead (out of retries), cancelled (with the reason), unconfirmed (a push nobody
    marked seen; an email followed)."""

    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"
    DEAD = "dead"
    CANCELLED = "cancelled"
    UNCONFIRMED = "unconfirmed"  # a push nobody marked seen in time; an email went as well


class EventType(StrEnum):
    """The types of the audit timeline (SPEC §3)."""

    SESSION_CREATED = "session.created"
    SESSION_PARKED = "session.parked"
    SESSION_RESUMED = "session.resumed"
    SESSION_ESCALATED = "session.escalated"
    ESCALATION_CLAIMED = "escalation.claimed"
    ESCALATION_WITHDRAWN = "escalation.withdrawn"
    ESCALATION_REMINDED = "escalation.reminded"
    ESCALATION_TIER_REACHED = "escalation.tier_reached"
    SESSION_RESOLVED = "session.resolved"
    DELIVERY_SENT = "delivery.sent"
    DELIVERY_FAILED = "delivery.failed"
    DELIVERY_DEAD = "delivery.dead"


# --- validation helpers -------------------------------------------------------------------------


def check_text(field_name: str, value: object, *, max_len: int, required: bool = False) -> str:
    if not isinstance(value, str):
        raise ValidationError(field_name, "must be a string")
    if required and not value.strip():
        raise ValidationError(field_name, "must not be empty")
    if len(value) > max_len:
        raise ValidationError(field_name, f"must be at most {max_len} characters")
    if "\x00" in value:  # PostgreSQL text cannot hold NUL
        raise ValidationError(field_name, "must not contain NUL characters")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValidationError(field_name, "must be valid Unicode (no surrogates)") from None
    return value


UNSEEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})  # control, format, surrogate, …


def check_name(field_name: str, value: object, *, max_len: int) -> str:
    """A person's or a thing's name as people read it: required, at most `max_len` characters,
    on one line with no control characters (it goes into email headers and pages)."""
    text = check_text(field_name, value, max_len=max_len, required=True)
    if any(unicodedata.category(ch) == "Cc" for ch in text):
        raise ValidationError(field_name, "must be one line, without control characters")
    return text


def check_id(field_name: str, value: object) -> str:
    """The one id rule of the library, the CLI and the HTTP API: 1 to 128 characters, none of
    them whitespace, a control character or `/`, and not `.` or `..`, so that every id can be
    written as one segment of a URL path (`/members/{id}`) and reach its own resource."""
    text = check_text(field_name, value, max_len=ID_MAX, required=True)
    if text != text.strip() or any(ch.isspace() for ch in text):
        raise ValidationError(field_name, "must not contain whitespace")
    if any(ch < " " or "\x7f" <= ch <= "\x9f" for ch in text):
        raise ValidationError(field_name, "must not contain control characters")
    if any(ch == "\ufffd" or unicodedata.category(ch) in UNSEEN_CATEGORIES for ch in text):
        raise ValidationError(
            field_name,
            "must not contain invisible or undecodable characters (format marks such as U+202E "
            "or U+FEFF, U+FFFD for bytes that were not UTF-8)",
        )
    if "/" in text:
        raise ValidationError(field_name, "must not contain '/' (ids are URL path segments)")
    if text in (".", ".."):
        raise ValidationError(field_name, "must not be '.' or '..' (ids are URL path segments)")
    return text


def _nesting(value: object) -> int:
    """How deep containers nest, counted without recursion (a hostile value may be very deep)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            if depth > CONTEXT_MAX_DEPTH:
                return depth
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return deepest


def check_context(value: object) -> JsonObject:
    """A JSON object of at most 256 KiB and 64 levels, returned as an independent copy.

    The depth limit keeps every stored context readable back: JSON encoders give up a little
    past 250 levels, and a context that could be saved but not served would be lost to its owner.
    """
    if not isinstance(value, dict):
        raise ValidationError("context", "must be a JSON object")
    if _nesting(value) > CONTEXT_MAX_DEPTH:
        raise ValidationError("context", f"must not nest deeper than {CONTEXT_MAX_DEPTH} levels")
    try:
        encoded = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise ValidationError("context", f"must be JSON-serialisable ({exc})") from None
    except RecursionError:
        raise ValidationError("context", "is nested too deeply") from None
    try:
        size = len(encoded.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValidationError("context", "must be valid Unicode (no lone surrogates)") from None
    if size > CONTEXT_MAX_BYTES:
        raise ValidationError("context", f"must serialise to at most {CONTEXT_MAX_BYTES} bytes")
    result: JsonObject = json.loads(encoded)
    return result


def check_email(value: object) -> str:
    text = check_text("email", value, max_len=EMAIL_MAX, required=True).strip()
    local, at, domain = text.rpartition("@")
    if not at or not local or not domain or any(ch.isspace() for ch in text):
        raise ValidationError("email", "must be an address like name@example.com")
    return text


# --- members ------------------------------------------------------------------------------------


@define
class Member:
    """A user of an account as the library sees it; the host product owns the real user."""

    id: str
    account_id: str
    email: str
    name: str
    role: Role
    active: bool = True
    deleted_at: datetime | None = None

    @classmethod
    def register(
        cls,
        *,
        account_id: str,
        id: str,
        email: object,
        name: object,
        role: object,
        active: object = True,
    ) -> Member:
        """A member from values as a host product sends them, each checked: ids (at most 128
        characters, no whitespace, control characters or `/`), email, name (at most 200
        characters), role. Raises ValidationError naming the field."""
        return cls(
            id=check_id("id", id),
            account_id=check_id("account_id", account_id),
            email=check_email(email),
            name=check_name("name", name, max_len=NAME_MAX),
            role=_role(role),
            active=_bool("active", active),
        )

    @property
    def is_current(self) -> bool:
        """Active and not soft-deleted: a member who can act at all."""
        return self.active and self.deleted_at is None

    @property
    def is_senior(self) -> bool:
        """Owner, admin or engineer: may act and be told of escalations."""
        return self.role in SENIOR_ROLES

    @property
    def is_manager(self) -> bool:
        """Owner or admin: may manage members and the policy."""
        return self.role in MANAGER_ROLES

    def require_can_act(self) -> None:
        """Raise Forbidden unless the member is current and senior (viewers only read)."""
        if not self.is_current:
            raise Forbidden(f"member {self.id} is inactive or removed")
        if not self.is_senior:
            raise Forbidden(f"member {self.id} is a viewer and can only read")

    def require_manager(self) -> None:
        """Raise Forbidden unless the member is a current admin or owner."""
        self.require_can_act()
        if not self.is_manager:
            raise Forbidden(f"only an admin or owner may do this; {self.id} is {self.role}")

    def soft_delete(self, now: datetime) -> None:
        """Removed from `now` on: keeps its history, is never told or let in again."""
        if self.deleted_at is None:
            self.deleted_at = now


def _role(value: object) -> Role:
    try:
        return Role(str(value))
    except ValueError:
        allowed = ", ".join(r.value for r in Role)
        raise ValidationError("role", f"must be one of {allowed}") from None


def _bool(field_name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ValidationError(field_name, "must be true or false")
    return value


# --- sessions -----------------------------------------------------------------------------------


@define
class Session:
    """An AI troubleshooting session and the handoffs that pass it between engineers."""

    id: str
    account_id: str
    owner_id: str
    assignee_id: str
    status: SessionStatus
    problem_summary: str
    context: JsonObject
    created_at: datetime
    updated_at: datetime
    handoff_count: int = 0
    escalation_package: JsonObject | None = None
    version: int = 0

    @classmethod
    def start(
        cls, *, id: str, owner: Member, problem_summary: object, context: object, now: datetime
    ) -> Session:
        """A new active session owned by and assigned to `owner` (a current senior). Raises
        Forbidden, ValidationError naming the field (summary, context)."""
        owner.require_can_act()
        return cls(
            id=id,
            account_id=owner.account_id,
            owner_id=owner.id,
            assignee_id=owner.id,
            status=SessionStatus.ACTIVE,
            problem_summary=check_text(
                "problem_summary", problem_summary, max_len=SUMMARY_MAX, required=True
            ),
            context=check_context({} if context is None else context),
            created_at=now,
            updated_at=now,
        )

    def _require_worker(self, actor: Member, doing: str) -> None:
        actor.require_can_act()
        if actor.id != self.assignee_id and not actor.is_manager:
            raise Forbidden(f"only the assignee or an admin/owner may {doing} this session")

    def _require_status(self, expected: SessionStatus, doing: str) -> None:
        if self.status is not expected:
            raise InvalidTransition(
                f"cannot {doing} a session that is {self.status}; it must be {expected}"
            )

    def revise(
        self,
        actor: Member,
        now: datetime,
        *,
        problem_summary: object = None,
        context: object = None,
    ) -> None:
        """Replace the summary and/or context (None keeps it); never of a resolved session."""
        self._require_worker(actor, "edit")
        if self.status is SessionStatus.RESOLVED:
            raise InvalidTransition("a resolved session cannot be edited")
        summary = (
            None
            if problem_summary is None
            else check_text("problem_summary", problem_summary, max_len=SUMMARY_MAX, required=True)
        )
        new_context = None if context is None else check_context(context)
        if summary is not None:
            self.problem_summary = summary
        if new_context is not None:
            self.context = new_context
        self.updated_at = now

    def snapshot(self) -> JsonObject:
        """A frozen copy of the session as it stands, kept in the handoff."""
        return {
            "problem_summary": self.problem_summary,
            "context": copy.deepcopy(self.context),
            "status": self.status.value,
            "assignee_id": self.assignee_id,
            "handoff_count": self.handoff_count,
        }

    def park(self, actor: Member, *, handoff_id: str, notes: object, now: datetime) -> Handoff:
        """Active → paused by `actor` (SPEC §4.1); the handoff it returns holds the snapshot."""
        self._require_worker(actor, "park")
        self._require_status(SessionStatus.ACTIVE, "park")
        handoff = Handoff.raise_for(
            self, id=handoff_id, intent=Intent.PARK, actor=actor, notes=notes, now=now
        )
        self.status = SessionStatus.PAUSED
        self.handoff_count += 1
        self.updated_at = now
        return handoff

    def resume(self, actor: Member, parked: Handoff, now: datetime) -> None:
        """Paused → active (SPEC §4.2), closing the park as resumed."""
        actor.require_can_act()
        self._require_status(SessionStatus.PAUSED, "resume")
        if actor.id != parked.created_by and not actor.is_manager:
            raise Forbidden("only whoever parked the session or an admin/owner may resume it")
        parked.close(HandoffStatus.RESUMED, now)
        self.status = SessionStatus.ACTIVE
        self.updated_at = now

    def escalate(
        self,
        actor: Member,
        *,
        handoff_id: str,
        notes: object,
        policy: EscalationPolicy,
        now: datetime,
    ) -> Handoff:
        """Active → escalated by `actor` (SPEC §4.3): the handoff it returns holds the snapshot
        and a copy of `policy`, and the session keeps its escalation package."""
        self._require_worker(actor, "escalate")
        self._require_status(SessionStatus.ACTIVE, "escalate")
        handoff = Handoff.raise_for(
            self,
            id=handoff_id,
            intent=Intent.ESCALATE,
            actor=actor,
            notes=notes,
            now=now,
            policy=policy,
        )
        self.status = SessionStatus.ESCALATED
        self.handoff_count += 1
        self.escalation_package = {
            "handoff_id": handoff.id,
            "snapshot": copy.deepcopy(handoff.snapshot),
            "engineer_notes": handoff.engineer_notes,
            "escalated_by": actor.id,
            "escalated_at": now.isoformat(),
        }
        self.updated_at = now
        return handoff

    def hand_to(self, claimer: Member, now: datetime) -> None:
        """The claimer won the escalation: the session is theirs and active again."""
        self._require_status(SessionStatus.ESCALATED, "claim")
        self.status = SessionStatus.ACTIVE
        self.assignee_id = claimer.id
        self.updated_at = now

    def take_back(self, now: datetime) -> None:
        """The escalation was withdrawn: the session is active again under its assignee."""
        self._require_status(SessionStatus.ESCALATED, "withdraw")
        self.status = SessionStatus.ACTIVE
        self.updated_at = now

    def resolve(self, actor: Member, now: datetime) -> None:
        """Active → resolved, for good (SPEC §4.6)."""
        self._require_worker(actor, "resolve")
        self._require_status(SessionStatus.ACTIVE, "resolve")
        self.status = SessionStatus.RESOLVED
        self.updated_at = now


# --- escalation policy --------------------------------------------------------------------------

DEFAULT_REMIND_AFTER_SECONDS = 600
DEFAULT_MAX_REMINDERS = 2
MAX_REMINDERS_LIMIT = 50
REMIND_AFTER_MIN_SECONDS = 1
REMIND_AFTER_MAX_SECONDS = 30 * 24 * 3600
DEFAULT_PUSH_CONFIRM_SECONDS = 30
PUSH_CONFIRM_MAX_SECONDS = 24 * 3600


def _policy_roles(value: object) -> frozenset[Role]:
    if isinstance(value, str) or not isinstance(value, list | tuple | set | frozenset):
        raise ValidationError("roles", "must be a list of roles")
    try:
        roles = frozenset(_role(item) for item in value)
    except ValidationError as exc:  # name the policy's field, not the member's
        raise ValidationError("roles", exc.detail.removeprefix("role: ")) from None
    if Role.VIEWER in roles:
        raise ValidationError("roles", "viewers are never notified of escalations")
    if not roles:
        raise ValidationError("roles", "must name at least one role")
    return roles


def _bounded_int(field_name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(field_name, "must be an integer")
    if not low <= value <= high:
        raise ValidationError(field_name, f"must be between {low} and {high}")
    return value


MAX_TIERS = 5
TIER_AFTER_MAX_SECONDS = 7 * 24 * 3600
_ROLE_ORDER = (Role.OWNER, Role.ADMIN, Role.ENGINEER)


def _ordered(roles: frozenset[Role]) -> list[str]:
    return [r.value for r in _ROLE_ORDER if r in roles]


@frozen
class Tier:
    """One step of an escalation (SPEC §14): members of `roles` are told `after_seconds` after
    it was raised, if nobody has claimed it by then."""

    roles: frozenset[Role]
    after_seconds: int = 0

    def to_dict(self) -> JsonObject:
        """The API's shape: `{"roles": [...], "after_seconds": N}`, roles in a stable order."""
        return {"roles": _ordered(self.roles), "after_seconds": self.after_seconds}


def _tiers(value: object) -> tuple[Tier, ...]:
    """The API's `tiers`: 1 to MAX_TIERS of `{"roles": [...], "after_seconds": N}`, the first
    at 0 s, strictly ascending."""
    if not isinstance(value, list | tuple):
        raise ValidationError("tiers", "must be a list of {roles, after_seconds}")
    if not 1 <= len(value) <= MAX_TIERS:
        raise ValidationError("tiers", f"must hold between 1 and {MAX_TIERS} tiers")
    tiers: list[Tier] = []
    for index, raw in enumerate(value):
        where = f"tiers[{index}]"
        if isinstance(raw, Tier):
            raw = raw.to_dict()
        if not isinstance(raw, dict) or set(raw) - {"roles", "after_seconds"} or "roles" not in raw:
            raise ValidationError(where, "must be an object with roles and after_seconds")
        try:
            roles = _policy_roles(raw["roles"])
        except ValidationError as exc:
            raise ValidationError(where, exc.detail) from None
        after = _bounded_int(where, raw.get("after_seconds", 0), 0, TIER_AFTER_MAX_SECONDS)
        if index == 0 and after != 0:
            raise ValidationError(where, "the first tier must be at after_seconds 0")
        if tiers and after <= tiers[-1].after_seconds:
            raise ValidationError(where, "after_seconds must be greater than the tier before")
        tiers.append(Tier(roles=roles, after_seconds=after))
    return tuple(tiers)


@frozen
class EscalationPolicy:
    """Who hears of an escalation, on which channel, and how often they are reminded.

    Copied into each escalation when it is raised, so editing an account's policy never changes
    an escalation already in flight. `tiers` is empty for the plain policy (everyone of `roles`
    at once); with tiers, `roles` is the union of theirs (SPEC §14).
    """

    roles: frozenset[Role] = SENIOR_ROLES
    email_online_too: bool = False
    remind_after_seconds: int = DEFAULT_REMIND_AFTER_SECONDS
    max_reminders: int = DEFAULT_MAX_REMINDERS
    push_confirm_seconds: int = DEFAULT_PUSH_CONFIRM_SECONDS
    tiers: tuple[Tier, ...] = ()

    @classmethod
    def from_dict(cls, raw: object) -> EscalationPolicy:
        """Parse the API's shape; absent fields keep their defaults, unknown ones are refused.

        `tiers` and `roles` may both be given only if `roles` is the union of the tiers' roles;
        one tier at 0 s is the same policy as `roles` alone. Raises ValidationError."""
        if not isinstance(raw, dict):
            raise ValidationError("policy", "must be a JSON object")
        known = {
            "roles",
            "email_online_too",
            "remind_after_seconds",
            "max_reminders",
            "push_confirm_seconds",
            "tiers",
        }
        for key in raw:
            if key not in known:
                raise ValidationError(str(key), "is not a policy field")
        default = cls()
        roles = _policy_roles(raw["roles"]) if "roles" in raw else default.roles
        tiers: tuple[Tier, ...] = ()
        if raw.get("tiers") is not None:
            tiers = _tiers(raw["tiers"])
            union = frozenset().union(*(t.roles for t in tiers))
            if "roles" in raw and roles != union:
                raise ValidationError(
                    "roles", "must be the union of the tiers' roles, or be left out"
                )
            roles = union
            if len(tiers) == 1:
                tiers = ()
        return cls(
            roles=roles,
            email_online_too=_bool("email_online_too", raw.get("email_online_too", False)),
            remind_after_seconds=_bounded_int(
                "remind_after_seconds",
                raw.get("remind_after_seconds", default.remind_after_seconds),
                REMIND_AFTER_MIN_SECONDS,
                REMIND_AFTER_MAX_SECONDS,
            ),
            max_reminders=_bounded_int(
                "max_reminders",
                raw.get("max_reminders", default.max_reminders),
                0,
                MAX_REMINDERS_LIMIT,
            ),
            push_confirm_seconds=_bounded_int(
                "push_confirm_seconds",
                raw.get("push_confirm_seconds", default.push_confirm_seconds),
                0,
                PUSH_CONFIRM_MAX_SECONDS,
            ),
            tiers=tiers,
        )

    @property
    def steps(self) -> tuple[Tier, ...]:
        """The tiers in force: the listed ones, or one tier of `roles` at 0 s."""
        return self.tiers or (Tier(roles=self.roles, after_seconds=0),)

    def new_roles(self, tier: int) -> frozenset[Role]:
        """The roles tier `tier` (1-based) tells that no earlier tier told."""
        steps = self.steps
        earlier = frozenset().union(*(t.roles for t in steps[: tier - 1]))
        return steps[tier - 1].roles - earlier

    def roles_through(self, tier: int) -> frozenset[Role]:
        """The roles told once tiers 1 … `tier` were reached: who reminders go to."""
        return frozenset().union(*(t.roles for t in self.steps[:tier]))

    def tier_at(self, raised_at: datetime, tier: int) -> datetime | None:
        """When tier `tier` (1-based) is due, or None when the policy has no such tier."""
        steps = self.steps
        if not 1 <= tier <= len(steps):
            return None
        return raised_at + timedelta(seconds=steps[tier - 1].after_seconds)

    def to_dict(self) -> JsonObject:
        """The API's shape of the policy (roles in a stable order; `tiers` as in force)."""
        return {
            "roles": _ordered(self.roles),
            "email_online_too": self.email_online_too,
            "remind_after_seconds": self.remind_after_seconds,
            "max_reminders": self.max_reminders,
            "push_confirm_seconds": self.push_confirm_seconds,
            "tiers": [t.to_dict() for t in self.steps],
        }

    def reminder_at(self, raised_at: datetime, round: int) -> datetime | None:
        """When reminder number `round` (1-based) is due, or None when there is none."""
        if round > self.max_reminders:
            return None
        return raised_at + timedelta(seconds=self.remind_after_seconds * round)

    def next_reminder_after(
        self, raised_at: datetime, round: int, now: datetime
    ) -> datetime | None:
        """When the reminder after `round` is due, raised at `now`: on its schedule, but never
        sooner than one full `remind_after_seconds` from now. So workers that were paused past
        several due times raise one catch-up reminder, then keep the normal spacing (SPEC §11).
        """
        scheduled = self.reminder_at(raised_at, round + 1)
        if scheduled is None:
            return None
        return max(scheduled, now + timedelta(seconds=self.remind_after_seconds))

    def accepts(self, member: Member) -> bool:
        """Whether this policy would tell `member` now: current, and holding one of its roles."""
        return member.is_current and member.role in self.roles


# --- handoffs -----------------------------------------------------------------------------------


@define
class Handoff:
    """One park or escalation of a session, with the snapshot taken when it was raised."""

    id: str
    account_id: str
    session_id: str
    intent: Intent
    engineer_notes: str
    created_by: str
    created_at: datetime
    snapshot: JsonObject
    status: HandoffStatus = HandoffStatus.OPEN
    claimed_by: str | None = None
    claimed_at: datetime | None = None
    closed_at: datetime | None = None
    policy: EscalationPolicy | None = None
    reminders_sent: int = 0
    next_reminder_at: datetime | None = None
    tiers_reached: int = 1  # an escalation's first tier is told when it is raised
    next_tier_at: datetime | None = None
    idempotency_key: str | None = None
    request_fingerprint: str | None = None

    @classmethod
    def raise_for(
        cls,
        session: Session,
        *,
        id: str,
        intent: Intent,
        actor: Member,
        notes: object,
        now: datetime,
        policy: EscalationPolicy | None = None,
    ) -> Handoff:
        """An open handoff of `session` with its snapshot taken now; an escalation keeps a copy
        of `policy` and its first reminder time. Raises ValidationError("engineer_notes")."""
        handoff = cls(
            id=id,
            account_id=session.account_id,
            session_id=session.id,
            intent=intent,
            engineer_notes=check_text("engineer_notes", notes, max_len=NOTES_MAX),
            created_by=actor.id,
            created_at=now,
            snapshot=session.snapshot(),
            policy=policy,
        )
        if policy is not None and intent is Intent.ESCALATE:
            handoff.next_reminder_at = policy.reminder_at(now, 1)
            handoff.next_tier_at = policy.tier_at(now, 2)
        return handoff

    @property
    def is_open_escalation(self) -> bool:
        """An escalation nobody has claimed or withdrawn yet."""
        return self.intent is Intent.ESCALATE and self.status is HandoffStatus.OPEN

    def check_claim(self, claimer: Member) -> None:
        """Refuse a claim that can never succeed; the store's conditional update decides races."""
        claimer.require_can_act()
        if self.intent is not Intent.ESCALATE:
            raise InvalidTransition("only an escalation can be claimed; this handoff is a park")
        if claimer.id == self.created_by:
            raise Forbidden("the escalator cannot claim their own escalation")
        self.require_open("claim")

    def require_open(self, doing: str) -> None:
        """Raise InvalidTransition unless the handoff is open."""
        if self.status is HandoffStatus.CLAIMED and self.claimed_by is not None:
            raise AlreadyClaimed(self.claimed_by)
        if self.status is not HandoffStatus.OPEN:
            raise InvalidTransition(f"cannot {doing} a handoff that is {self.status}")

    def check_withdraw(self, actor: Member) -> None:
        """Raise unless `actor` may withdraw it now: Forbidden, InvalidTransition."""
        actor.require_can_act()
        if self.intent is not Intent.ESCALATE:
            raise InvalidTransition("only an escalation can be withdrawn; resume a park instead")
        if actor.id != self.created_by and not actor.is_manager:
            raise Forbidden("only the escalator or an admin/owner may withdraw an escalation")
        self.require_open("withdraw")

    def claim(self, claimer: Member, now: datetime) -> None:
        """Open escalation → claimed by `claimer` (SPEC §4.4); raises as `check_claim`."""
        self.check_claim(claimer)
        self.status = HandoffStatus.CLAIMED
        self.claimed_by = claimer.id
        self.claimed_at = now
        self.closed_at = now
        self.next_reminder_at = None
        self.next_tier_at = None

    def close(self, status: HandoffStatus, now: datetime) -> None:
        """Open → `status` (resumed or withdrawn); raises InvalidTransition if closed."""
        self.require_open(f"close as {status}")
        self.status = status
        self.closed_at = now
        self.next_reminder_at = None
        self.next_tier_at = None


# --- deliveries ---------------------------------------------------------------------------------


@define
class Delivery:
    """One notice to one recipient on one channel; the outbox row and its record."""

    id: str
    account_id: str
    handoff_id: str
    recipient_id: str
    address: str
    channel: Channel
    kind: NoticeKind
    created_at: datetime
    next_attempt_at: datetime
    status: DeliveryStatus = DeliveryStatus.PENDING
    attempts: int = 0
    last_error: str | None = None
    sent_at: datetime | None = None
    round: int = 0
    leased_by: str | None = None
    leased_until: datetime | None = None
    stream_seq: int | None = None  # a push: the id of its event on the recipient's stream
    confirm_by: datetime | None = None  # a push sent: seen by then, or an email goes as well
    seen_at: datetime | None = None
    payload: JsonObject | None = None  # a webhook: the event it carries (SPEC §14)

    @property
    def message_id(self) -> str:
        """Stable across retries, so a receiver can drop a duplicate of an at-least-once send."""
        return f"<{self.id}@handoff>"

    def _attempted(self, status: DeliveryStatus, error: str | None) -> None:
        self.attempts += 1
        self.status = status
        self.last_error = error
        self.leased_until = None

    def mark_sent(self, now: datetime) -> None:
        """Accepted by the relay (or handed to a stream) at `now`; one attempt more."""
        self._attempted(DeliveryStatus.SENT, None)
        self.sent_at = now

    def mark_refused(self, error: str) -> None:
        """A permanent refusal (SMTP 5xx): trying again would only be refused again."""
        self._attempted(DeliveryStatus.FAILED, error)

    def mark_deferred(self, error: str, retry_at: datetime | None) -> None:
        """A failure worth retrying at `retry_at`; with no retry left the delivery is dead."""
        if retry_at is None:
            self._attempted(DeliveryStatus.DEAD, error)
        else:
            self._attempted(DeliveryStatus.PENDING, error)
            self.next_attempt_at = retry_at

    def mark_pushed(self, now: datetime, confirm_seconds: int) -> None:
        """Handed to the recipient's live stream; with `confirm_seconds` > 0 it must be marked
        seen by then, or an email follows (SPEC §10)."""
        self.mark_sent(now)
        self.confirm_by = now + timedelta(seconds=confirm_seconds) if confirm_seconds else None

    def mark_cancelled(self, reason: str) -> None:
        """Not sent and never will be (not attempted, or an attempt that failed after its
        escalation closed): cancelled with the reason why."""
        self.status = DeliveryStatus.CANCELLED
        self.last_error = reason
        self.leased_until = None


# --- timeline -----------------------------------------------------------------------------------


@frozen
class TimelineEvent:
    """What happened, by whom, when. `id` is given by the store and grows within an account."""

    account_id: str
    session_id: str
    type: EventType
    at: datetime
    handoff_id: str | None = None
    actor_id: str | None = None
    data: JsonObject = field(factory=dict)
    id: int | None = None
