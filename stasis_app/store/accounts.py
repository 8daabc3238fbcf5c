"""``callback_accounts``: the identities of inbound callers, as an operator manages them.

Reads name their columns: ``md5secret`` never leaves the database through here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import asyncpg

PUBLIC_COLUMNS = ("cli", "username", "authname", "enabled", "created_at", "updated_at")
_SELECT = ", ".join(PUBLIC_COLUMNS)

LIST = f"SELECT {_SELECT} FROM callback_accounts ORDER BY cli LIMIT $1"

INSERT = f"""
INSERT INTO callback_accounts (cli, username, authname, md5secret) VALUES ($1, $2, $3, $4)
ON CONFLICT (cli) DO NOTHING
RETURNING {_SELECT}
"""

SET_ENABLED = f"""
UPDATE callback_accounts SET enabled = $2, updated_at = now() WHERE cli = $1
RETURNING {_SELECT}
"""

Row = dict[str, Any]


@dataclass(frozen=True, slots=True)
class NewAccount:
    cli: str
    username: str
    authname: str | None
    md5secret: str = field(repr=False)


class AccountStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def list(self, limit: int) -> list[Row]:
        return [dict(r) for r in await self._pool.fetch(LIST, limit)]

    async def add(self, new: NewAccount) -> Row | None:
        """The new row; None when the number already has an account (nothing changed)."""
        record = await self._pool.fetchrow(
            INSERT, new.cli, new.username, new.authname, new.md5secret
        )
        return None if record is None else dict(record)

    async def set_enabled(self, cli: str, enabled: bool) -> Row | None:
        """The row after the change; None when the number has no account."""
        record = await self._pool.fetchrow(SET_ENABLED, cli, enabled)
        return None if record is None else dict(record)
