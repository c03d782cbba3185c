"""The PostgreSQL the LISTEN/NOTIFY tests publish through: the server's `test` database (they
write no rows); skipped, with the reason, only when nothing answers at 127.0.0.1:5432."""

from __future__ import annotations

import pytest
from tests.support.databases import postgres_url, require_postgres


@pytest.fixture
def pg_url() -> str:
    require_postgres()
    return postgres_url("test")
