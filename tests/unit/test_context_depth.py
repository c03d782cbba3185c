"""A context is refused when it nests deeper than can be served back."""

from __future__ import annotations

import pytest

from handoff_core import ValidationError
from handoff_core.model import CONTEXT_MAX_DEPTH, check_context


def _nested(levels: int) -> dict[str, object]:
    root: dict[str, object] = {}
    current = root
    for _ in range(levels - 1):
        child: dict[str, object] = {}
        current["a"] = child
        current = child
    return root


def test_a_context_at_the_depth_limit_is_kept_whole() -> None:
    context = _nested(CONTEXT_MAX_DEPTH)
    assert check_context(context) == context


@pytest.mark.parametrize("levels", [CONTEXT_MAX_DEPTH + 1, 100_000])
def test_a_deeper_context_is_refused_naming_the_field(levels: int) -> None:
    with pytest.raises(ValidationError) as refused:
        check_context(_nested(levels))
    assert refused.value.field == "context"
    assert "64 levels" in refused.value.detail


def test_lists_count_as_levels_too() -> None:
    context: dict[str, object] = {"a": [[[]]]}
    assert check_context(context) == context
    deep: object = []
    for _ in range(CONTEXT_MAX_DEPTH):
        deep = [deep]
    with pytest.raises(ValidationError):
        check_context({"a": deep})
