"""The queue's public queries (API and operator CLI): create, read with history, list,
cancel, retry.

Every statement is a constant with ``$n`` parameters: no SQL is ever built from what a client
sent. Reads select an explicit list of public columns, so the secrets (``md5secret``,
``twoway_md5secret``) and the ``lease_token`` never leave the database through the API, and a
column added later stays private until it is named here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from stasis_app.domain import request as domain
from stasis_app.domain.policy import AccountPolicy
from stasis_app.store.admission import account_policies

# Plain strings: FINAL_STATUSES is spelled into SQL with repr().
FINAL_STATUSES = tuple(status.value for status in domain.FINAL_STATUSES)
MAX_ID = 2**63 - 1  # bigint

PUBLIC_COLUMNS = (
    "id",
    "status",
    "result",
    "result_reason",
    "source",
    "username",
    "authname",
    "twoway_cli",
    "twoway_authname",
    "original_cli",
    "original_set_cli",
    "original_cld",
    "next_call",
    "call_id",
    "twoway_call_id",
    "attempts",
    "max_attempts",
    "retry_delay",
    "claimed_by",
    "lease_until",
    "created_at",
    "updated_at",
    "claimed_at",
    "dialled_at",
    "answered_at",
    "connected_at",
    "ended_at",
    "leg_a_channel_id",
    "leg_b_channel_id",
    "bridge_id",
    "leg_a_sip_call_id",
    "leg_b_sip_call_id",
    "leg_a_cause",
    "leg_a_sip_code",
    "leg_b_cause",
    "leg_b_sip_code",
    "leg_a_duration",
    "leg_b_duration",
)
HISTORY_COLUMNS = ("at", "old_status", "new_status", "result", "reason", "attempts", "instance")

# retry_delay is an interval in the table and seconds in the API.
_SELECT = ", ".join(
    "EXTRACT(EPOCH FROM retry_delay)::float8 AS retry_delay" if name == "retry_delay" else name
    for name in PUBLIC_COLUMNS
)

INSERT = """
INSERT INTO callback_requests (
    source, username, authname, md5secret, twoway_cli, twoway_authname, twoway_md5secret,
    original_cli, original_set_cli, original_cld, next_call, call_id, twoway_call_id,
    max_attempts, retry_delay)
VALUES ('api', $1, $2, $3, $4, $5, $6, $7, $8, $9, coalesce($10, now()), $11, $12, $13,
        make_interval(secs => $14))
RETURNING id, status
"""

GET = f"SELECT {_SELECT} FROM callback_requests WHERE id = $1"

HISTORY = f"""
SELECT {", ".join(HISTORY_COLUMNS)} FROM callback_request_history
WHERE request_id = $1 ORDER BY id
"""

# One fixed statement for every filter combination: a NULL parameter switches its filter off.
# Newest first; the cursor is the last id of the previous page (keyset pagination).
LIST = f"""
SELECT {_SELECT} FROM callback_requests
WHERE ($1::text[] IS NULL OR status = ANY($1::text[]))
  AND ($2::text IS NULL OR original_cli = $2::text)
  AND ($3::timestamptz IS NULL OR created_at >= $3::timestamptz)
  AND ($4::timestamptz IS NULL OR created_at < $4::timestamptz)
  AND ($5::bigint IS NULL OR id < $5::bigint)
  AND ($7::text IS NULL OR result = $7::text)
  AND ($8::text IS NULL OR source = $8::text)
  AND ($9::text IS NULL OR username = $9::text)
  AND ($10::text IS NULL OR original_cli = $10::text OR original_cld = '2way_' || $10::text)
ORDER BY id DESC
LIMIT $6
"""

# The trigger fills result, ended_at (for a pending row) and NOTIFYs the owning instance,
# which hangs up whatever is live.
CANCEL = f"""
UPDATE callback_requests SET status = 'cancelled'
WHERE id = $1 AND status NOT IN {FINAL_STATUSES!r}
RETURNING id, status, result
"""

# An operator sends a failed row round again: attempts start over, the reason is kept (the
# history trigger copies result_reason). Lease and per-attempt columns are the next dial's.
RETRY_FAILED = """
UPDATE callback_requests
SET status = 'pending', result = NULL, result_reason = $2, attempts = 0, next_call = now(),
    claimed_by = NULL, lease_token = NULL, lease_until = NULL, ended_at = NULL
WHERE id = $1 AND status = 'failed'
RETURNING id, status, result
"""

STATUS = "SELECT id, status, result FROM callback_requests WHERE id = $1"

Row = dict[str, Any]


@dataclass(frozen=True, slots=True)
class NewCallback:
    """A validated request, as the INSERT takes it (secrets already HA1 hex)."""

    username: str
    original_cli: str
    original_cld: str
    authname: str | None = None
    md5secret: str | None = field(default=None, repr=False)
    twoway_cli: str | None = None
    twoway_authname: str | None = None
    twoway_md5secret: str | None = field(default=None, repr=False)
    original_set_cli: str | None = None
    next_call: datetime | None = None
    call_id: str | None = None
    twoway_call_id: str | None = None
    max_attempts: int | None = None
    retry_delay: float | None = None


@dataclass(frozen=True, slots=True)
class ListFilter:
    statuses: Sequence[str] | None = None
    cli: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    before_id: int | None = None
    limit: int = 100
    result: str | None = None
    source: str | None = None
    username: str | None = None
    number: str | None = None  # the user's number (original_cli) or the destination's CLD


@dataclass(frozen=True, slots=True)
class Page:
    rows: list[Row]
    more: bool  # rows exist past the last one returned


@dataclass(frozen=True, slots=True)
class StatusChange:
    id: int
    status: str
    result: str | None
    changed: bool  # False: the row was not in a state the change applies to


class CallbackStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def create(self, new: NewCallback) -> Row:
        record = await self._pool.fetchrow(
            INSERT,
            new.username,
            new.authname,
            new.md5secret,
            new.twoway_cli,
            new.twoway_authname,
            new.twoway_md5secret,
            new.original_cli,
            new.original_set_cli,
            new.original_cld,
            new.next_call,
            new.call_id,
            new.twoway_call_id,
            new.max_attempts,
            new.retry_delay,
        )
        return dict(record)

    async def account_policy(self, username: str) -> AccountPolicy | None:
        """The username's ``callback_policies`` row, if any."""
        return (await account_policies(self._pool, [username])).get(username)

    async def get(self, request_id: int) -> tuple[Row, list[Row]] | None:
        """The row and its history, read in one snapshot so they agree."""
        async with (
            self._pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            record = await conn.fetchrow(GET, request_id)
            if record is None:
                return None
            history = await conn.fetch(HISTORY, request_id)
        return dict(record), [dict(h) for h in history]

    async def list(self, where: ListFilter) -> Page:
        statuses = list(where.statuses) if where.statuses is not None else None
        records = await self._pool.fetch(
            LIST,
            statuses,
            where.cli,
            where.created_from,
            where.created_to,
            where.before_id,
            where.limit + 1,
            where.result,
            where.source,
            where.username,
            where.number,
        )
        rows = [dict(r) for r in records]
        return Page(rows=rows[: where.limit], more=len(rows) > where.limit)

    async def cancel(self, request_id: int) -> StatusChange | None:
        """Cancel a row that is not final yet; None when there is no such row."""
        return await self._change(CANCEL, request_id)

    async def retry(self, request_id: int, reason: str) -> StatusChange | None:
        """A failed row back to pending with its attempts reset; None when there is no row."""
        return await self._change(RETRY_FAILED, request_id, reason)

    async def _change(self, query: str, request_id: int, *args: object) -> StatusChange | None:
        record = await self._pool.fetchrow(query, request_id, *args)
        if record is not None:
            return StatusChange(record["id"], record["status"], record["result"], changed=True)
        record = await self._pool.fetchrow(STATUS, request_id)
        if record is None:
            return None
        return StatusChange(record["id"], record["status"], record["result"], changed=False)
