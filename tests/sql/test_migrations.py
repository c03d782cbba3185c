"""The shipped migrations build exactly the schema the models describe, on both databases."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from handoff_sql import (
    SqlDatabase,
    current,
    downgrade,
    ensure_schema,
    head,
    schema_differences,
    upgrade,
)
from handoff_sql.tables import metadata

TABLES = {
    "members",
    "sessions",
    "handoffs",
    "deliveries",
    "timeline",
    "policies",
    "webhooks",
    "presence",
    "stream_heads",
    "stream_events",
    "login_links",
}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database with nothing in it yet."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    url: str = request.getfixturevalue("pg_databases").create()
    return url


async def _tables(url: str) -> set[str]:
    db = SqlDatabase(url)
    try:
        async with db.engine.connect() as conn:
            names = await conn.run_sync(lambda c: sa.inspect(c).get_table_names())
    finally:
        await db.close()
    return set(names) - {"alembic_version", "sqlite_sequence"}


async def _indexes(url: str) -> dict[str, list[list[Any]]]:
    db = SqlDatabase(url)

    def read(conn: sa.Connection) -> dict[str, list[list[Any]]]:
        inspector = sa.inspect(conn)
        return {t: [i["column_names"] for i in inspector.get_indexes(t)] for t in TABLES}

    try:
        async with db.engine.connect() as conn:
            return await conn.run_sync(read)
    finally:
        await db.close()


async def test_the_migrations_create_every_table_and_agree_with_the_models(
    empty_url: str,
) -> None:
    assert await current(empty_url) is None
    assert await schema_differences(empty_url) != []  # the check sees a missing schema
    await upgrade(empty_url)
    assert await current(empty_url) == head()
    assert await _tables(empty_url) == TABLES == {t.name for t in metadata.sorted_tables}
    assert await schema_differences(empty_url) == []


async def test_the_comparison_notices_a_missing_index(empty_url: str) -> None:
    await upgrade(empty_url)
    db = SqlDatabase(empty_url)
    async with db.engine.begin() as conn:
        await conn.execute(sa.text("DROP INDEX ix_deliveries_status_next_attempt_at"))
    await db.close()
    differences = await schema_differences(empty_url)
    assert [d[0] for d in differences] == ["add_index"]


async def test_foreign_keys_are_indexed_and_keys_lead_with_the_account(empty_url: str) -> None:
    await upgrade(empty_url)
    indexes = await _indexes(empty_url)
    for table in metadata.sorted_tables:
        for fk in table.foreign_key_constraints:
            columns = [c.name for c in fk.columns]
            covered = [table.primary_key.columns.keys(), *indexes[table.name]]
            covered += [
                [c.name for c in u.columns]
                for u in table.constraints
                if isinstance(u, sa.UniqueConstraint)
            ]
            assert any(cols[: len(columns)] == columns for cols in covered), (table.name, columns)
        keys = table.primary_key.columns.keys()
        assert keys[0] == "account_id" or table.name in {"timeline", "presence", "login_links"}, (
            table.name
        )


async def test_upgrading_twice_changes_nothing_and_downgrade_removes_it_all(
    empty_url: str,
) -> None:
    await upgrade(empty_url)
    await upgrade(empty_url)
    assert await schema_differences(empty_url) == []
    await downgrade(empty_url, "base")
    assert await _tables(empty_url) == set()
    assert await current(empty_url) is None


async def test_ensure_schema_makes_a_new_sqlite_database_in_a_new_folder(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'new' / 'deeper' / 'handoff.db'}"
    await ensure_schema(url)
    await ensure_schema(url)
    assert (tmp_path / "new" / "deeper" / "handoff.db").exists()
    assert await current(url) == head()
    assert await _tables(url) == TABLES


def test_the_migrations_ship_inside_the_package() -> None:
    import handoff_sql

    package = Path(handoff_sql.__file__).parent
    assert (package / "migrations" / "env.py").is_file()
    assert list((package / "migrations" / "versions").glob("r*_*.py"))
