"""deploy/db/roles.sql on a real Postgres: the app role can run the queue and nothing more.

Roles are cluster-wide, so every test uses role names of its own and drops them afterwards.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest

from stasis_app.domain.request import Outcome
from stasis_app.store.migrations import check_schema, migrate
from stasis_app.store.requests import RequestStore
from tests.pg import PgTestServer, with_database

ROLES_SQL = Path(__file__).resolve().parent.parent / "deploy" / "db" / "roles.sql"
SEED_INSERT = (
    "INSERT INTO callback_requests (username, authname, md5secret, original_cli,"
    " original_cld) VALUES ('801', '902', $1, '87654321', '2way_12345') RETURNING id"
)


@dataclass
class Roles:
    owner: str
    app: str
    password: str
    script: str  # roles.sql with this test's role names

    async def apply(self, url: str) -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(self.script)
        finally:
            await conn.close()

    async def connect(self, url: str, role: str) -> asyncpg.Connection:
        return await asyncpg.connect(url, user=role, password=self.password)


async def _drop_roles(admin_url: str, databases: list[str], roles: Roles) -> None:
    """DROP OWNED in each database (privileges, and owned objects), then the roles."""
    for name in databases:
        conn = await asyncpg.connect(with_database(admin_url, name))
        try:
            await conn.execute(f"DROP OWNED BY {roles.owner}, {roles.app}")
        finally:
            await conn.close()
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f"DROP ROLE IF EXISTS {roles.owner}")
        await conn.execute(f"DROP ROLE IF EXISTS {roles.app}")
    finally:
        await conn.close()


@pytest.fixture
def roles() -> Roles:
    suffix = uuid.uuid4().hex[:10]
    owner, app = f"twoway_owner_{suffix}", f"twoway_app_{suffix}"
    names = {"twoway_owner": owner, "twoway_app": app}
    script = re.sub(r"\btwoway_(owner|app)\b", lambda m: names[m.group(0)], ROLES_SQL.read_text())
    return Roles(owner, app, secrets.token_hex(12), script)


async def _set_passwords(admin_url: str, roles: Roles) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        for role in (roles.owner, roles.app):
            await conn.execute(f"ALTER ROLE {role} PASSWORD '{roles.password}'")
    finally:
        await conn.close()


@pytest.fixture
async def app_conn(
    db_url: str, pg_server: PgTestServer, roles: Roles
) -> AsyncIterator[asyncpg.Connection]:
    """The app role on this test's migrated database (migrated by the admin, as on a site
    that adopts the roles after the fact)."""
    try:
        await roles.apply(db_url)
        await _set_passwords(pg_server.admin_url, roles)
        conn = await roles.connect(db_url, roles.app)
        yield conn
        await conn.close()
    finally:
        await _drop_roles(pg_server.admin_url, [urlsplit(db_url).path.lstrip("/")], roles)


async def test_app_role_runs_the_queue(
    app_conn: asyncpg.Connection, db_url: str, roles: Roles
) -> None:
    await check_schema(app_conn)  # `run` refuses to start without SELECT on the record

    notified = asyncio.Event()
    await app_conn.add_listener("twoway_callback", lambda *_: notified.set())
    pool = await asyncpg.create_pool(
        db_url, user=roles.app, password=roles.password, min_size=1, max_size=2
    )
    try:
        request_id = await pool.fetchval(SEED_INSERT, "0" * 32)
        await asyncio.wait_for(notified.wait(), 5)  # LISTEN needs no grant

        store = RequestStore(pool, "roles-test", 60)
        [claimed] = await store.claim(10)
        assert claimed.id == request_id
        assert await store.start_attempt(claimed, "call-1", "twoway-1-1a") is not None
        assert await store.finish(claimed, Outcome("failed", "callback_busy", leg_a_cause=17))
        assert await store.status_of(request_id) == "failed"
        await store.refresh_queue_gauges()

        history = await pool.fetch(
            "SELECT new_status FROM callback_request_history WHERE request_id = $1 ORDER BY id",
            request_id,
        )
        assert [r["new_status"] for r in history] == ["pending", "calling", "failed"]
        # Inbound identities (sql/002): read by the trigger, maintained through the API.
        await pool.execute(
            "INSERT INTO callback_accounts (cli, username, md5secret)"
            " VALUES ('4930123456', '801', $1)",
            "0" * 32,
        )
        await pool.execute("UPDATE callback_accounts SET enabled = false")
        assert await pool.fetchval("SELECT count(*) FROM callback_accounts") == 1
        # A SQL cancel by the same role (the API or an operator using this role).
        cancel_id = await pool.fetchval(SEED_INSERT, "0" * 32)
        await pool.execute(
            "UPDATE callback_requests SET status = 'cancelled' WHERE id = $1", cancel_id
        )
    finally:
        await pool.close()


@pytest.mark.parametrize(
    "statement",
    [
        "DELETE FROM callback_requests",
        "TRUNCATE callback_requests",
        "DROP TABLE callback_requests",
        "ALTER TABLE callback_requests ADD COLUMN x int",
        "ALTER TABLE callback_requests DISABLE TRIGGER USER",
        "CREATE INDEX ON callback_requests (username)",
        "CREATE TABLE scratch (x int)",
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        "DROP FUNCTION callback_requests_before_write()",
        "UPDATE callback_request_history SET new_status = 'completed'",
        "DELETE FROM callback_request_history",
        "DELETE FROM twoway_schema_migrations",
        "DELETE FROM callback_accounts",
        "INSERT INTO twoway_schema_migrations (version, name) VALUES (999, 'x')",
    ],
)
async def test_app_role_cannot_change_the_schema_or_delete(
    app_conn: asyncpg.Connection, statement: str
) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await app_conn.execute(statement)


async def test_from_nothing_owner_migrates_app_runs(pg_server: PgTestServer, roles: Roles) -> None:
    """The documented order: roles.sql, migrate as the owner, roles.sql again; idempotent."""
    name = f"twoway_roles_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(pg_server.admin_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    url = with_database(pg_server.admin_url, name)
    try:
        await roles.apply(url)  # no tables yet: only roles and schema rights
        await _set_passwords(pg_server.admin_url, roles)

        owner = await roles.connect(url, roles.owner)
        try:
            assert [m.version for m in await migrate(owner)] != []
            assert (
                await owner.fetchval(
                    "SELECT tableowner FROM pg_tables WHERE tablename = 'callback_requests'"
                )
                == roles.owner
            )
        finally:
            await owner.close()

        app = await roles.connect(url, roles.app)
        try:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await app.fetchval(SEED_INSERT, "0" * 32)  # no grants before the second run
            await roles.apply(url)
            await roles.apply(url)  # idempotent
            await check_schema(app)
            assert isinstance(await app.fetchval(SEED_INSERT, "0" * 32), int)
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await app.execute("DROP TABLE callback_requests")
        finally:
            await app.close()
    finally:
        await _drop_roles(pg_server.admin_url, [name], roles)
        admin = await asyncpg.connect(pg_server.admin_url)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
