"""The instance lock: one live process per ``TWOWAY_INSTANCE_ID`` (per database).

A session-level advisory lock, held by the connection that LISTENs: Postgres drops it the
moment that process dies (``kill -9`` included), so a restart takes it at once and recovers its
own rows, while a second live process with the same id is refused at start-up.
"""

from __future__ import annotations

import asyncio
import hashlib

import asyncpg

from stasis_app.errors import TwowayError

# The two-int4 form lives in its own key space (objsubid 2): no clash with the one-bigint
# locks of the migrations or the per-caller locks of the inbound trigger.
LOCK_CLASS = 0x7477_0001
TRY_LOCK = "SELECT pg_try_advisory_lock($1::int4, $2::int4)"
# How often a start-up looks again while the lock is held (a dying predecessor's backend may
# need a moment to notice its socket closed).
RETRY = 0.2


class InstanceIdInUse(TwowayError):
    """Another live process holds this instance id."""

    def __init__(self, instance_id: str) -> None:
        super().__init__(
            f"instance id {instance_id!r} is held by another live process on this database:"
            " give this one its own TWOWAY_INSTANCE_ID (and, on a shared Asterisk, its own"
            " TWOWAY_ARI_APP and TWOWAY_ID_PREFIX)"
        )


def lock_key(instance_id: str) -> int:
    """A stable signed 32-bit key for the id (Python's hash() changes between runs)."""
    digest = hashlib.sha256(instance_id.encode()).digest()
    return int.from_bytes(digest[:4], "big", signed=True)


async def try_lock(conn: asyncpg.Connection, instance_id: str) -> bool:
    held: bool = await conn.fetchval(TRY_LOCK, LOCK_CLASS, lock_key(instance_id))
    return held


async def take_lock(conn: asyncpg.Connection, instance_id: str, wait: float) -> None:
    """Take the lock on ``conn`` within ``wait`` seconds, else raise InstanceIdInUse."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while not await try_lock(conn, instance_id):
        if loop.time() >= deadline:
            raise InstanceIdInUse(instance_id)
        await asyncio.sleep(RETRY)
