"""Postgres as the service will use it: reachable, migrated, privileges, LISTEN/NOTIFY, clock."""

from __future__ import annotations

import asyncio
import secrets
import time
from datetime import UTC, datetime

import asyncpg

from stasis_app.config import Settings
from stasis_app.ops.report import Finding, Level, Report
from stasis_app.store.database import database_url
from stasis_app.store.migrations import applied_versions, available

# What `run` does with each table (deploy/db/roles.sql grants exactly these to twoway_app).
NEEDED = {
    "callback_requests": ("SELECT", "INSERT", "UPDATE"),
    "callback_request_history": ("SELECT", "INSERT"),
    "twoway_schema_migrations": ("SELECT",),
    "callback_accounts": ("SELECT", "INSERT", "UPDATE"),
    "callback_policies": ("SELECT",),
    "callback_admissions": ("SELECT", "INSERT", "DELETE"),  # old admissions are pruned
}
# The queue and its history are the record: the service never deletes from them.
RECORD_TABLES = ("callback_requests", "callback_request_history")
MORE_THAN_NEEDED = ("DELETE", "TRUNCATE")
CLOCK_SKEW_MAX = 1.0  # seconds: next_call and leases are the database's time, logs the host's
ROLES_FIX = "run deploy/db/roles.sql as a superuser (after every migrate)"

_MISSING_PRIVILEGES = """
SELECT t.name || ': ' || string_agg(p.privilege, ', ') AS missing
FROM unnest($1::text[], $2::text[]) AS t(name, privileges),
     unnest(string_to_array(t.privileges, ',')) AS p(privilege)
WHERE to_regclass(t.name) IS NOT NULL AND NOT has_table_privilege(t.name, p.privilege)
GROUP BY t.name ORDER BY t.name
"""
# INSERT into a table with an identity column needs USAGE on its sequence.
_MISSING_SEQUENCES = """
SELECT s FROM unnest($1::text[]) AS t(name),
     LATERAL pg_get_serial_sequence(t.name, 'id') AS s
WHERE to_regclass(t.name) IS NOT NULL AND s IS NOT NULL AND NOT has_sequence_privilege(s, 'USAGE')
"""
_EXCESS = """
SELECT t.name || ': ' || string_agg(p.privilege, ', ') AS excess
FROM unnest($1::text[]) AS t(name), unnest($2::text[]) AS p(privilege)
WHERE to_regclass(t.name) IS NOT NULL AND has_table_privilege(t.name, p.privilege)
GROUP BY t.name ORDER BY t.name
"""


async def run(report: Report, settings: Settings) -> None:
    async with database_url(settings) as url:
        conn = await _reachable(report, settings, url)
        if conn is None:
            return
        try:
            await _migrated(report, conn)
            await _privileges(report, conn)
            if settings.listen_enabled:
                listen_url = settings.listen_database_url.get_secret_value() or url
                await _listen_notify(report, conn, listen_url)
            else:
                report.add(
                    Finding(
                        Level.WARNING,
                        "listen/notify",
                        "TWOWAY_LISTEN_ENABLED=false: new rows wait for the poll "
                        f"(up to TWOWAY_POLL_MAX_SLEEP={settings.poll_max_sleep:g} s)",
                        "enable it unless your pooler cannot hold a LISTEN session",
                    )
                )
            await _clock(report, conn)
        finally:
            await conn.close(timeout=report.timeout)


async def _reachable(report: Report, settings: Settings, url: str) -> asyncpg.Connection | None:
    conn: asyncpg.Connection | None = None
    async with report.check("postgres", timeout_fix="check TWOWAY_DATABASE_URL") as check:
        conn = await asyncpg.connect(url, timeout=report.timeout)
        row = await conn.fetchrow(
            "SELECT current_setting('server_version') AS version, current_database() AS db,"
            " current_user AS role, host(inet_server_addr()) AS host,"
            " inet_server_port() AS port"
        )
        where = f"{row['host'] or 'local socket'}:{row['port'] or ''}".rstrip(":")
        found = f"PostgreSQL {row['version']}, database {row['db']} at {where} as {row['role']}"
        if settings.database_url.get_secret_value():
            check.ok(found)
        else:
            check.warn(
                f"{found} (embedded, TWOWAY_DATABASE_URL is empty)",
                "for production set TWOWAY_DATABASE_URL to your Postgres",
            )
    return conn


async def _migrated(report: Report, conn: asyncpg.Connection) -> None:
    async with report.check("migrations") as check:
        have = await applied_versions(conn)
        known = available()
        missing = [m.path.name for m in known if m.version not in have]
        newer = sorted(have - {m.version for m in known})
        if missing:
            check.fail(
                "not applied: " + ", ".join(missing),
                "run `twoway-callback migrate` with the owner role's URL, then deploy/db/roles.sql",
            )
        elif newer:
            check.warn(
                f"the database has migrations this version does not know: {newer}",
                "upgrade this installation to the version that migrated the database",
            )
        else:
            check.ok(f"all {len(known)} applied (latest {known[-1].path.name})")


async def _privileges(report: Report, conn: asyncpg.Connection) -> None:
    async with report.check("privileges", timeout_fix=ROLES_FIX) as check:
        names = list(NEEDED)
        missing = [
            r["missing"]
            for r in await conn.fetch(
                _MISSING_PRIVILEGES, names, [",".join(p) for p in NEEDED.values()]
            )
        ]
        missing += [
            f"{r['s']}: USAGE"
            for r in await conn.fetch(
                _MISSING_SEQUENCES, ["callback_requests", "callback_request_history"]
            )
        ]
        role = await conn.fetchrow(
            "SELECT current_user AS name, rolsuper FROM pg_roles WHERE rolname = current_user"
        )
        excess = [
            r["excess"]
            for r in await conn.fetch(_EXCESS, list(RECORD_TABLES), list(MORE_THAN_NEEDED))
        ]
        if missing:
            check.fail(f"role {role['name']} lacks " + "; ".join(missing), ROLES_FIX)
        elif role["rolsuper"]:
            check.warn(
                f"role {role['name']} is a superuser: a bug or a leaked URL could do anything",
                "connect the service as twoway_app (deploy/db/roles.sql), not a superuser",
            )
        elif excess:
            check.warn(
                f"role {role['name']} may also " + "; ".join(excess) + " (rows are history)",
                "connect the service as twoway_app (deploy/db/roles.sql), not the owner",
            )
        else:
            check.ok(f"role {role['name']} has what the service needs, and no more")


async def _listen_notify(report: Report, conn: asyncpg.Connection, listen_url: str) -> None:
    """A NOTIFY from the pool's side must reach the LISTEN connection (PgBouncer: session)."""
    fix = "TWOWAY_LISTEN_DATABASE_URL must reach Postgres directly or a session-pooled port"
    async with report.check("listen/notify", timeout_fix=fix) as check:
        channel = f"twoway_doctor_{secrets.token_hex(4)}"
        payload = secrets.token_hex(8)
        heard: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        def on_notify(_c: object, _pid: int, _channel: str, message: str) -> None:
            if not heard.done():
                heard.set_result(message)

        listener = await asyncpg.connect(listen_url, timeout=report.timeout)
        try:
            await listener.add_listener(channel, on_notify)
            started = time.perf_counter()
            await conn.execute("SELECT pg_notify($1, $2)", channel, payload)
            got = await heard
            elapsed = (time.perf_counter() - started) * 1000
        finally:
            await listener.close(timeout=report.timeout)
        if got == payload:
            check.ok(f"a NOTIFY reached the LISTEN connection in {elapsed:.1f} ms")
        else:
            check.fail("the LISTEN connection heard another payload", fix)


def host_time() -> float:
    return time.time()


async def _clock(report: Report, conn: asyncpg.Connection) -> None:
    async with report.check("clock") as check:
        before = host_time()
        db_now: datetime = await conn.fetchval("SELECT clock_timestamp()")
        after = host_time()
        skew = db_now.timestamp() - (before + after) / 2
        host = datetime.fromtimestamp((before + after) / 2, UTC).isoformat(timespec="seconds")
        found = f"database is {skew:+.3f} s from this host ({host})"
        if abs(skew) > CLOCK_SKEW_MAX + (after - before) / 2:
            check.fail(found, "run NTP (chrony, systemd-timesyncd) on both hosts")
        else:
            check.ok(found)
