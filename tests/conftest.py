from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from tests.pg import PgTestServer, with_database


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgTestServer]:
    server = PgTestServer()
    yield server
    server.close()


@pytest.fixture
def db_url(pg_server: PgTestServer) -> Iterator[str]:
    """A fresh, migrated database for this test only."""
    name = pg_server.create_database()
    yield with_database(pg_server.admin_url, name)
    pg_server.drop_database(name)


@pytest.fixture
async def pool(db_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(db_url, min_size=1, max_size=5)
    yield pool
    await pool.close()
