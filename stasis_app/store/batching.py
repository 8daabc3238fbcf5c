"""Write-backs of many calls folded into one statement: one round trip per kind and turn.

At rest a write goes out on the next turn of the event loop, alone; under load the writes that
arrive while a statement of their kind is in flight go out together in the next one. Each
caller still learns about its own row: applied, fenced off, or the error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

import asyncpg

from stasis_app.store.queries import Batched

# The database is unreachable or restarting: worth trying the same write again.
TRANSIENT: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
    # A pooled connection whose backend was terminated mid-statement can be left in a state
    # asyncpg refuses ("another operation is in progress"); the next try gets another one.
    asyncpg.InternalClientError,
)

Run = Callable[[str, str, list[list[object]]], Awaitable[list[asyncpg.Record]]]
"""(what, query, one array per column) -> result rows; retries transient faults itself."""

_Pending = tuple[Sequence[object], "asyncio.Future[asyncpg.Record | None]"]


class WriteBatch:
    """One kind of write-back (see ``queries.Batched``); at most one statement in flight."""

    def __init__(self, what: str, queries: Batched, run: Run) -> None:
        self._what = what
        self._queries = queries
        self._run = run
        self._pending: list[_Pending] = []
        self._flusher: asyncio.Task[None] | None = None

    async def write(self, *args: object) -> asyncpg.Record | None:
        """Write one row (``args``: id, lease token, the columns); its result row when it was
        applied, None when the fence or the state check said no."""
        future: asyncio.Future[asyncpg.Record | None] = asyncio.get_running_loop().create_future()
        self._pending.append((args, future))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush(), name=f"write-{self._what}")
        return await future

    async def _flush(self) -> None:
        items: list[_Pending] = []
        try:
            while self._pending:
                items, self._pending = self._pending, []
                await self._write(items)
        finally:
            self._flusher = None
            for _, future in items + self._pending:  # only when cancelled mid-write
                if not future.done():
                    future.cancel()

    async def _write(self, items: list[_Pending]) -> None:
        if len(items) == 1:
            await self._alone(items[0])
            return
        try:
            rows = await self._run(self._what, self._queries.batch, _columns(items))
        except TRANSIENT as exc:  # retried for the whole window already: each row would be
            for _, future in items:
                _fail(future, exc)
            return
        except asyncpg.PostgresError:
            rows = []  # a bad value fails its own row only: each is written alone below
        found = {row["id"]: row for row in rows}
        for item in items:
            row = found.get(item[0][0])
            if row is None:  # held by another transaction (or the batch failed): wait for it
                await self._alone(item)
            else:
                _resolve(item[1], row if row["applied"] else None)

    async def _alone(self, item: _Pending) -> None:
        future = item[1]
        try:
            rows = await self._run(self._what, self._queries.single, _columns([item]))
        except Exception as exc:  # the caller's error, as if it had written alone
            _fail(future, exc)
            return
        _resolve(future, rows[0] if rows and rows[0]["applied"] else None)


def _columns(items: list[_Pending]) -> list[list[object]]:
    return [list(column) for column in zip(*(args for args, _ in items), strict=True)]


def _fail(future: asyncio.Future[asyncpg.Record | None], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


def _resolve(future: asyncio.Future[asyncpg.Record | None], row: asyncpg.Record | None) -> None:
    if not future.done():  # the caller may have been cancelled meanwhile
        future.set_result(row)
