"""A first run on PostgreSQL as an operator makes it (SPEC §13), with real processes and a real
server: the README's URL works, a database without the schema is refused in one line that names
`handoff db upgrade` (the choice made: PostgreSQL is never migrated by `serve`), and readiness
follows the schema's revision."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from tests.support.cli import HANDOFF, add_member, environment, handoff, one_line
from tests.support.databases import (
    blocking,
    create_database,
    drop_database,
    postgres_url,
    require_postgres,
)
from tests.support.net import free_port
from tests.support.process import serving_process

from handoff_sql import head

pytestmark = pytest.mark.postgres

SECRET = "first-run-secret-of-at-least-32-bytes!"
NO_SCHEMA = "has no handoff schema; run `handoff db upgrade` first"


@pytest.fixture
def database() -> Iterator[str]:
    """A new, empty PostgreSQL database of the test's own (its name)."""
    require_postgres()
    name = blocking(lambda: create_database("handoff_first_run"))
    try:
        yield name
    finally:
        blocking(lambda: drop_database(name))


def settings(url: str, tmp_path: Path) -> dict[str, str]:
    return {
        "HANDOFF_DATABASE_URL": url,
        "HANDOFF_JWT_SECRET": SECRET,
        "HANDOFF_MAILDIR": str(tmp_path / "mail"),
    }


def sql(name: str, statement: str) -> list[asyncpg.Record]:
    async def run() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(postgres_url(name).replace("+asyncpg", ""), timeout=5)
        try:
            return list(await conn.fetch(statement))
        finally:
            await conn.close()

    return blocking(run)


def tables(name: str) -> set[str]:
    rows = sql(name, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    return {r["tablename"] for r in rows}


def test_the_readme_url_with_pool_options_upgrades_then_serves_with_two_processes(
    database: str, tmp_path: Path
) -> None:
    env = settings(postgres_url(database) + "?pool_size=10", tmp_path)
    upgraded = handoff("db", "upgrade", cwd=tmp_path, env=env)
    assert (upgraded.returncode, upgraded.stdout.strip()) == (0, f"schema at revision {head()}")
    assert (
        add_member(
            "acme", "olga", email="o@acme.test", name="Olga", role="owner", cwd=tmp_path, env=env
        ).returncode
        == 0
    )
    token = handoff("token", "--account", "acme", "--member", "olga", cwd=tmp_path, env=env)
    with serving_process(env, tmp_path, "--workers", "2") as served:
        assert httpx.get(f"{served.url}/readyz").json() == {"status": "ok"}
        for _ in range(4):  # whichever process answers
            r = httpx.get(
                f"{served.url}/api/v1/members",
                headers={"Authorization": f"Bearer {token.stdout.strip()}"},
            )
            assert (r.status_code, [m["id"] for m in r.json()]) == (200, ["olga"])
    log = served.stop()
    assert served.returncode == 0, log
    assert log.count("Application startup complete") == 2, log
    assert "Traceback" not in log and "ERROR" not in log, log


@pytest.mark.parametrize(
    "command",
    [
        ["serve"],
        ["serve", "--workers", "2"],
        ["worker", "--once"],
        ["members", "list", "--account", "acme"],
        ["token", "--account", "acme", "--member", "olga"],
    ],
)
def test_every_command_on_a_database_without_the_schema_names_db_upgrade(
    database: str, tmp_path: Path, command: list[str]
) -> None:
    url = postgres_url(database)
    port = ["--port", str(free_port())] if command[0] == "serve" else []
    done = handoff(*command, *port, cwd=tmp_path, env=settings(url, tmp_path))
    assert one_line(done, 1) == f"handoff: the database {url} {NO_SCHEMA}"
    assert tables(database) == set()  # refused, not migrated behind the operator's back


def test_a_database_that_does_not_exist_or_refuses_connections_is_one_line(
    tmp_path: Path,
) -> None:
    require_postgres()
    missing = postgres_url("handoff_no_such_database")
    refused = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/test"
    serve = ["serve", "--port", str(free_port())]
    for command in (serve, ["members", "list", "--account", "acme"], ["db", "upgrade"]):
        done = handoff(*command, cwd=tmp_path, env=settings(missing, tmp_path))
        line = one_line(done, 1)
        assert line.startswith("handoff: storage unavailable: could not use the database "), line
        assert 'database "handoff_no_such_database" does not exist' in line
        done = handoff(*command, cwd=tmp_path, env=settings(refused, tmp_path))
        line = one_line(done, 1)
        assert "Connect call failed" in line or "Connection refused" in line, line


def test_readyz_follows_the_schema_revision_of_the_database(database: str, tmp_path: Path) -> None:
    env = settings(postgres_url(database), tmp_path)
    assert handoff("db", "upgrade", cwd=tmp_path, env=env).returncode == 0
    with serving_process(env, tmp_path) as served:
        assert httpx.get(f"{served.url}/readyz").status_code == 200
        sql(database, "UPDATE alembic_version SET version_num = 'f00d'")
        r = httpx.get(f"{served.url}/readyz")
        assert (r.status_code, r.json()) == (503, {"status": "unavailable"})
        sql(database, f"UPDATE alembic_version SET version_num = '{head()}'")
        assert httpx.get(f"{served.url}/readyz").status_code == 200
    assert served.returncode == 130  # Ctrl-C, as a shell reports it


def test_a_schema_from_a_newer_release_is_refused_in_one_line(
    database: str, tmp_path: Path
) -> None:
    env = settings(postgres_url(database), tmp_path)
    assert handoff("db", "upgrade", cwd=tmp_path, env=env).returncode == 0
    sql(database, "UPDATE alembic_version SET version_num = 'f00d'")
    done = handoff("serve", "--port", str(free_port()), cwd=tmp_path, env=env)
    assert one_line(done, 1).endswith(
        "has schema revision f00d, which this release does not know; "
        "a newer release migrated it: upgrade handoff instead"
    )


def test_two_upgrades_at_once_take_turns_under_the_advisory_lock(
    database: str, tmp_path: Path
) -> None:
    env = environment(settings(postgres_url(database), tmp_path))
    both = [
        subprocess.Popen(
            [*HANDOFF, "db", "upgrade"], env=env, cwd=tmp_path, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]  # fmt: skip
    results = [p.communicate(timeout=60) for p in both]
    assert [p.returncode for p in both] == [0, 0], results
    assert sql(database, "SELECT version_num FROM alembic_version")[0][0] == head()
    assert "members" in tables(database)
