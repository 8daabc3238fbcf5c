"""Numbered SQL migrations from ``sql/``, applied once each and recorded in a table."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from stasis_app.errors import SchemaError

log = logging.getLogger(__name__)

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
_NAME = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")
# Any constant: serialises concurrent `migrate` runs across hosts.
_LOCK_KEY = 0x2A7C_0001

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS twoway_schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)"""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    path: Path


def available(sql_dir: Path = SQL_DIR) -> list[Migration]:
    found = []
    for path in sorted(sql_dir.glob("*.sql")):
        match = _NAME.match(path.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), path))
    return found


async def applied_versions(conn: asyncpg.Connection) -> set[int]:
    exists = await conn.fetchval("SELECT to_regclass('twoway_schema_migrations') IS NOT NULL")
    if not exists:
        return set()
    return {
        row["version"] for row in await conn.fetch("SELECT version FROM twoway_schema_migrations")
    }


async def migrate(conn: asyncpg.Connection) -> list[Migration]:
    """Apply every migration not yet recorded, each in its own transaction. Idempotent."""
    done: list[Migration] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        await conn.execute(_CREATE_TABLE)
        have = await applied_versions(conn)
        for migration in available():
            if migration.version in have:
                continue
            async with conn.transaction():
                await conn.execute(migration.path.read_text())
                await conn.execute(
                    "INSERT INTO twoway_schema_migrations (version, name) VALUES ($1, $2)",
                    migration.version,
                    migration.name,
                )
            log.info(
                "migration applied", extra={"action": "migrate", "migration": migration.path.name}
            )
            done.append(migration)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    return done


async def check_schema(conn: asyncpg.Connection) -> None:
    """Refuse to run against a database that lacks a migration this version needs."""
    have = await applied_versions(conn)
    missing = [m.path.name for m in available() if m.version not in have]
    if missing:
        raise SchemaError(
            "database is not migrated (missing: "
            + ", ".join(missing)
            + "); run `twoway-callback migrate` first"
        )
