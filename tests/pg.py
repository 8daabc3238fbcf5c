"""Which Postgres the tests use, and a fresh migrated database per test.

Order: TWOWAY_TEST_DATABASE_URL; else the system server at 127.0.0.1:5432 when reachable;
else an embedded server. TWOWAY_TEST_DB=embedded forces the embedded one (CI runs both).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from stasis_app.store.database import start_embedded
from stasis_app.store.migrations import migrate

SYSTEM_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


async def _reachable(url: str) -> bool:
    try:
        conn = await asyncpg.connect(url, timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await conn.close()
    return True


class PgTestServer:
    """A Postgres server with a migrated template database to clone per test."""

    def __init__(self) -> None:
        self._embedded: Any = None
        self.admin_url = self._pick()
        self.template = f"twoway_tmpl_{uuid.uuid4().hex[:8]}"
        asyncio.run(self._make_template())

    def _pick(self) -> str:
        if os.environ.get("TWOWAY_TEST_DB") != "embedded":
            given = os.environ.get("TWOWAY_TEST_DATABASE_URL")
            if given:
                return given
            if asyncio.run(_reachable(SYSTEM_URL)):
                return SYSTEM_URL
        data_dir = Path(tempfile.mkdtemp(prefix="twoway-test-pg-"))
        url, self._embedded = start_embedded(data_dir)
        return url

    @property
    def kind(self) -> str:
        return "embedded" if self._embedded is not None else "server"

    async def _make_template(self) -> None:
        admin = await asyncpg.connect(self.admin_url)
        try:
            await admin.execute(f'CREATE DATABASE "{self.template}"')
        finally:
            await admin.close()
        conn = await asyncpg.connect(with_database(self.admin_url, self.template))
        try:
            await migrate(conn)
        finally:
            await conn.close()

    def create_database(self) -> str:
        name = f"twoway_t_{uuid.uuid4().hex[:12]}"
        asyncio.run(self._admin(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"'))
        return name

    def drop_database(self, name: str) -> None:
        asyncio.run(self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    async def _admin(self, sql: str) -> None:
        admin = await asyncpg.connect(self.admin_url)
        try:
            await admin.execute(sql)
        finally:
            await admin.close()

    def close(self) -> None:
        self.drop_database(self.template)
        if self._embedded is not None:
            self._embedded.cleanup()
