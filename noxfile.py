"""The project's checks: `nox` runs tests, lint, typecheck and docs; `nox -s bench` benchmarks."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typecheck", "docs"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True

PYTHON = "3.11"
LINTED = ("src", "tests", "tools", "noxfile.py", "bench", "docs/examples", "docs/hooks")


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
    session.run("mypy", "src/handoff_core", "src/adapters", "src/entrypoints", "docs/hooks")


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    session.install("-e", ".[dev]")
    session.run("python", "-m", "bench", *session.posargs)


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """Build the guide and API reference into site/; any warning (a broken reference, a missing
    page or snippet) fails the build. docs/hooks/openapi.py writes docs/openapi.json from the app
    first, so the HTTP API page shows what the code serves."""
    session.install("-e", ".[docs]")
    quiet = {"NO_MKDOCS_2_WARNING": "1"}  # Material's banner about its successor, not a warning
    session.run("mkdocs", "build", "--strict", "--clean", *session.posargs, env=quiet)
