"""Every name a package exports, and each of its public methods, says what it does.

The reference pages (`docs/reference/*.md`) are rendered from these docstrings, so a name without
one is a hole in the docs that nobody would notice from the build alone.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterator
from typing import Any

import pytest

PACKAGES = (
    "handoff_core",
    "handoff_memory",
    "handoff_sql",
    "handoff_mail",
    "handoff_push",
    "handoff_webhook",
    "handoff_app",
)
OURS = tuple(f"{name}." for name in PACKAGES) + PACKAGES


def exported(package: str) -> list[tuple[str, Any]]:
    """The package's `__all__` as (name, object) pairs; a package without one fails here."""
    module = importlib.import_module(package)
    names = getattr(module, "__all__", None)
    assert names is not None, f"{package} has no __all__: its public names are not stated"
    return [(name, getattr(module, name)) for name in names]


def is_ours(obj: object) -> bool:
    module = getattr(obj, "__module__", None) or ""
    return module in PACKAGES or module.startswith(OURS)


def public_methods(cls: type) -> Iterator[tuple[str, Any]]:
    """Public functions and properties a class of ours defines (or inherits from a class of ours).

    Enum members, attrs fields and what comes from the standard library (Exception, Enum, Protocol)
    are not methods of ours and are left out.
    """
    seen: set[str] = set()
    for klass in cls.__mro__:
        if not is_ours(klass):
            continue
        for name, attr in vars(klass).items():
            if name.startswith("_") or name in seen:
                continue
            seen.add(name)
            if isinstance(attr, (staticmethod, classmethod)):
                yield name, attr.__func__
            elif isinstance(attr, property) or inspect.isfunction(attr):
                yield name, attr


def undocumented(package: str) -> list[str]:
    missing: list[str] = []
    for name, obj in exported(package):
        if not callable(obj) and not inspect.isclass(obj):
            continue  # a constant (DEFAULT_URL, API_PREFIX): documented where it is defined
        if not (inspect.getdoc(obj) or "").strip() or _inherits_doc_only(obj):
            missing.append(name)
        if inspect.isclass(obj):
            for method_name, method in public_methods(obj):
                if not (getattr(method, "__doc__", None) or "").strip():
                    missing.append(f"{name}.{method_name}")
    return missing


def _inherits_doc_only(obj: object) -> bool:
    """A class whose only docstring is inherited (Exception's, Enum's) says nothing of its own."""
    return inspect.isclass(obj) and obj.__doc__ is None


@pytest.mark.parametrize("package", PACKAGES)
def test_every_exported_name_and_public_method_has_a_docstring(package: str) -> None:
    missing = undocumented(package)
    assert not missing, f"{package}: {len(missing)} without a docstring: " + ", ".join(missing)


@pytest.mark.parametrize("package", PACKAGES)
def test_every_name_in_all_imports(package: str) -> None:
    module = importlib.import_module(package)
    names = getattr(module, "__all__", None)
    assert names is not None, f"{package} has no __all__: its public names are not stated"
    absent = [name for name in names if not hasattr(module, name)]
    assert not absent, f"{package}.__all__ names what it does not define: {absent}"
    assert len(set(names)) == len(names), f"{package}.__all__ names something twice"
