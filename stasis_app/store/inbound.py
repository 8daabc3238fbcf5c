"""Queries of the inbound trigger: who the caller is, and one request per caller at a time."""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg

from stasis_app.domain.policy import InboundLimits, Refusal

ACCOUNT = """
SELECT username, authname, md5secret FROM callback_accounts WHERE cli = $1 AND enabled
"""

# The advisory lock (per caller, for this transaction) makes "none live → insert" atomic across
# instances: two triggers from one caller create one row.
LOCK_CALLER = "SELECT pg_advisory_xact_lock(hashtext('twoway-inbound:' || $1))"

LIVE_FOR_CALLER = """
SELECT EXISTS (SELECT 1 FROM callback_requests WHERE original_cli = $1
               AND status IN ('pending', 'calling', 'connecting', 'bridged'))
"""

CALLER_HOUR = """
SELECT count(*) FROM callback_requests
WHERE source = 'inbound' AND original_cli = $1 AND created_at > now() - interval '1 hour'
"""

# One lock for every caller, taken only with the spike guard on: instances count in turn.
LOCK_SPIKE = "SELECT pg_advisory_xact_lock(hashtext('twoway-inbound-spike'))"

LAST_MINUTE = """
SELECT count(*) FROM callback_requests
WHERE source = 'inbound' AND created_at > now() - interval '1 minute'
"""

CREATE = """
INSERT INTO callback_requests (username, authname, md5secret, original_cli, original_cld,
                               next_call, source)
VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6), 'inbound')
RETURNING id
"""


@dataclass(frozen=True, slots=True)
class Identity:
    username: str
    authname: str | None
    md5secret: str = field(repr=False)


class InboundStore:
    def __init__(self, pool: asyncpg.Pool, limits: InboundLimits | None = None) -> None:
        self._pool = pool
        self._limits = limits or InboundLimits()

    async def account(self, cli: str) -> Identity | None:
        row = await self._pool.fetchrow(ACCOUNT, cli)
        if row is None:
            return None
        return Identity(row["username"], row["authname"], row["md5secret"])

    async def create_request(
        self, identity: Identity, cli: str, cld: str, delay: float
    ) -> int | Refusal | None:
        """Insert the callback: its id; None when the caller already has one pending or live;
        the Refusal when a limit is reached (nothing inserted)."""
        limits = self._limits
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(LOCK_CALLER, cli)
            if await conn.fetchval(LIVE_FOR_CALLER, cli):
                return None
            caller_hour = await conn.fetchval(CALLER_HOUR, cli) if limits.per_caller_hour else 0
            minute = 0
            if limits.per_minute:
                await conn.execute(LOCK_SPIKE)
                minute = await conn.fetchval(LAST_MINUTE)
            refusal = limits.refusal(caller_hour, minute)
            if refusal is not None:
                return refusal
            request_id: int = await conn.fetchval(
                CREATE,
                identity.username,
                identity.authname,
                identity.md5secret,
                cli,
                f"2way_{cld}",
                delay,
            )
            return request_id
