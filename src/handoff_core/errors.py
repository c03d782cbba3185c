"""The refusals of the domain. The HTTP layer maps each class to a status code in one place."""

from __future__ import annotations


class HandoffError(Exception):
    """Base of every refusal the library makes on purpose."""

    code = "error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFound(HandoffError):
    """Absent, or in another account: the caller cannot tell which."""

    code = "not_found"


class Forbidden(HandoffError):
    """The member exists and may read, but may not do this."""

    code = "forbidden"


class NotAMember(Forbidden):
    """The acting member is unknown, inactive or removed in the account: not let in at all."""

    code = "not_a_member"


class Conflict(HandoffError):
    """The state of things does not allow this now."""

    code = "conflict"


class InvalidTransition(Conflict):
    """The object is not in a state this action starts from."""

    code = "invalid_transition"


class AlreadyClaimed(Conflict):
    """Somebody else won the claim; `by` names them."""

    code = "already_claimed"

    def __init__(self, by: str) -> None:
        super().__init__(f"this escalation was already claimed by {by}")
        self.by = by


class IdempotencyConflict(Conflict):
    """An idempotency key was reused with a different request."""

    code = "idempotency_conflict"


class ValidationError(HandoffError):
    """A value breaks a limit of the model; `field` names it."""

    code = "validation_error"

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field


class StorageUnavailable(HandoffError):
    """The store could not be reached; nothing was written."""

    code = "storage_unavailable"
