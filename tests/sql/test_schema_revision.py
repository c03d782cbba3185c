"""The schema's revision as `serve` and `/readyz` read it, and pool options on one-off commands."""

from __future__ import annotations

from pathlib import Path

import pytest

from handoff_sql import SchemaNotCurrent, SqlDatabase, head, require_current_schema, upgrade


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    url: str = request.getfixturevalue("pg_databases").create()
    return url


async def test_an_empty_database_has_no_revision_and_is_refused_naming_db_upgrade(
    empty_url: str,
) -> None:
    async with SqlDatabase(empty_url) as db:
        assert await db.revision() is None
        with pytest.raises(SchemaNotCurrent) as refused:
            await require_current_schema(db)
    assert refused.value.detail == (
        f"the database {db.target.show()} has no handoff schema; run `handoff db upgrade` first"
    )


async def test_upgrade_with_the_pool_options_of_a_server_url_reaches_the_head(
    empty_url: str,
) -> None:
    """One-off commands use no pool; the URL's pool sizing must not stop them."""
    with_pool = f"{empty_url}?pool_size=10&max_overflow=2&pool_timeout=5&pool_pre_ping=true"
    await upgrade(with_pool)
    async with SqlDatabase(with_pool) as db:
        assert await db.revision() == head()
        await require_current_schema(db)  # does not raise
