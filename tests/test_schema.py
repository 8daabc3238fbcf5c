"""Migrations, the seed's table contract, constraints and triggers, on a real Postgres."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from stasis_app.errors import SchemaError
from stasis_app.store.listener import CHANNEL
from stasis_app.store.migrations import available, check_schema, migrate
from tests.pg import PgTestServer, with_database

SEED_INSERT = """
  INSERT INTO callback_requests (
     username,
     authname,
     md5secret,
     original_cli,
     original_cld
  )
  VALUES (
    '801',
    '902',
    '<md5secret>',
    '87654321',
    '2way_12345'
  )
"""


async def test_migrate_is_idempotent_and_recorded(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        assert await migrate(conn) == []  # the template was migrated already
        versions = [
            r["version"]
            for r in await conn.fetch(
                "SELECT version FROM twoway_schema_migrations ORDER BY version"
            )
        ]
        assert versions == [m.version for m in available()]
        await check_schema(conn)


async def test_run_refuses_unmigrated_database(pg_server: PgTestServer) -> None:
    name = await asyncio.to_thread(pg_server.create_database)
    try:
        conn = await asyncpg.connect(with_database(pg_server.admin_url, name))
        await conn.execute("DELETE FROM twoway_schema_migrations")
        with pytest.raises(SchemaError, match="twoway-callback migrate"):
            await check_schema(conn)
        # Migrations are idempotent SQL too: re-running them on a populated schema works.
        assert len(await migrate(conn)) == len(available())
        await check_schema(conn)
        await conn.close()
    finally:
        await asyncio.to_thread(pg_server.drop_database, name)


async def test_seed_insert_verbatim_gets_defaults(pool: asyncpg.Pool) -> None:
    await pool.execute(SEED_INSERT)
    row = await pool.fetchrow("SELECT *, next_call <= now() AS due FROM callback_requests")
    assert row["status"] == "pending"
    assert row["result"] is None
    assert row["due"] is True
    assert row["attempts"] == 0
    assert row["source"] == "sql"
    assert row["authname"] == "902"
    history = await pool.fetch("SELECT old_status, new_status FROM callback_request_history")
    assert [(h["old_status"], h["new_status"]) for h in history] == [(None, "pending")]


async def test_seed_insert_without_authname(pool: asyncpg.Pool) -> None:
    await pool.execute(SEED_INSERT.replace("     authname,\n", "").replace("    '902',\n", ""))
    row = await pool.fetchrow("SELECT authname, username FROM callback_requests")
    assert row["authname"] is None
    assert row["username"] == "801"


@pytest.mark.parametrize(
    ("column", "value"), [("status", "ringing"), ("result", "ok"), ("source", "fax")]
)
async def test_check_constraints_refuse_unknown_values(
    pool: asyncpg.Pool, column: str, value: str
) -> None:
    with pytest.raises(asyncpg.CheckViolationError):
        await pool.execute(
            f"INSERT INTO callback_requests (original_cli, {column}) VALUES ('1', $1)", value
        )


async def test_sql_cancel_of_live_row_is_accepted(pool: asyncpg.Pool) -> None:
    rid = await pool.fetchval(
        "INSERT INTO callback_requests (original_cli, status, claimed_by) "
        "VALUES ('1', 'bridged', 'x') RETURNING id"
    )
    await pool.execute("UPDATE callback_requests SET status = 'cancelled' WHERE id = $1", rid)
    row = await pool.fetchrow("SELECT status, result FROM callback_requests WHERE id = $1", rid)
    assert (row["status"], row["result"]) == ("cancelled", "cancelled")
    history = await pool.fetch(
        "SELECT old_status, new_status FROM callback_request_history WHERE request_id = $1"
        " ORDER BY id",
        rid,
    )
    assert [(h["old_status"], h["new_status"]) for h in history] == [
        (None, "bridged"),
        ("bridged", "cancelled"),
    ]


async def test_cancelling_a_pending_row_stamps_its_end(pool: asyncpg.Pool) -> None:
    rid = await pool.fetchval(
        "INSERT INTO callback_requests (original_cli) VALUES ('1') RETURNING id"
    )
    await pool.execute("UPDATE callback_requests SET status = 'cancelled' WHERE id = $1", rid)
    assert await pool.fetchval(
        "SELECT ended_at IS NOT NULL FROM callback_requests WHERE id = $1", rid
    )


async def test_trigger_notifies_due_and_cancel(db_url: str, pool: asyncpg.Pool) -> None:
    got: asyncio.Queue[str] = asyncio.Queue()
    conn = await asyncpg.connect(db_url)
    await conn.add_listener(CHANNEL, lambda *args: got.put_nowait(args[3]))
    try:
        # A bulk insert of many rows folds into a single wake-up.
        await pool.execute(
            "INSERT INTO callback_requests (original_cli)"
            " SELECT g::text FROM generate_series(1, 50) g"
        )
        assert await asyncio.wait_for(got.get(), 5) == "due"
        rid = await pool.fetchval("SELECT min(id) FROM callback_requests")
        await pool.execute("UPDATE callback_requests SET status = 'cancelled' WHERE id = $1", rid)
        assert await asyncio.wait_for(got.get(), 5) == f"cancel:{rid}"
        # Only the cancel was sent after the insert: the queue holds nothing else.
        await pool.execute(
            "UPDATE callback_requests SET next_call = now() + interval '1 hour' WHERE id = $1 + 1",
            rid,
        )
        assert await asyncio.wait_for(got.get(), 5) == "due"
        assert got.empty()
    finally:
        await conn.close()
