from __future__ import annotations

import socket

import pytest

PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


def _pg_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def pg_url() -> str:
    if not _pg_up():
        pytest.skip("PostgreSQL is not reachable at 127.0.0.1:5432")
    return PG_URL
