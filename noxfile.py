"""The project's checks: `nox` runs tests, lint and typecheck; `nox -s bench` the benchmarks."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True

PYTHON = "3.11"
LINTED = ("src", "tests", "tools", "noxfile.py", "bench", "docs/examples")


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The whole suite. pytest's exit 5 (no tests ran) fails the session like any other."""
    session.install("-e", ".[dev]")
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    session.install("-e", ".[dev]")
    session.run("ruff", "check", *LINTED)
    session.run("ruff", "format", "--check", *LINTED)
    session.run("python", "tools/check_core_imports.py", "src/handoff_core")
    session.run("lint-imports")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    session.install("-e", ".[dev]")
    session.run("mypy", "src/handoff_core", "src/adapters", "src/entrypoints")


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    session.install("-e", ".[dev]")
    session.run("python", "-m", "bench", *session.posargs)
