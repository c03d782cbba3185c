"""When a failed delivery is tried again: exponential backoff with full jitter."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import timedelta

from attrs import field, frozen

from handoff_core.errors import ValidationError


def _positive(instance: object, attribute: object, value: float) -> None:
    if not value > 0:
        raise ValidationError(getattr(attribute, "name", "retry"), "must be greater than 0")


@frozen
class RetrySchedule:
    """Defaults from SPEC §5: base 30 s, cap 1 h, 8 attempts in all."""

    base_seconds: float = field(default=30.0, validator=_positive)
    cap_seconds: float = field(default=3600.0, validator=_positive)
    attempts: int = field(default=8, validator=_positive)
    uniform: Callable[[float, float], float] = field(default=random.uniform, eq=False, repr=False)

    def exhausted(self, attempts_made: int) -> bool:
        """Whether `attempts_made` attempts are all there are (the delivery is then dead)."""
        return attempts_made >= self.attempts

    def delay(self, attempts_made: int) -> timedelta:
        """Full jitter: anywhere between zero and the capped exponential step."""
        step = min(self.cap_seconds, self.base_seconds * 2 ** max(attempts_made - 1, 0))
        return timedelta(seconds=self.uniform(0.0, step))
