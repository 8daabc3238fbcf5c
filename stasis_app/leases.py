"""Live sessions against the table: leases renewed, cancels and lost leases found by reading
the rows back (NOTIFY is only a shortcut: it may be lost, or LISTEN disabled)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import asyncpg

from stasis_app.callflow.engine import CallEngine
from stasis_app.store.requests import TRANSIENT, RequestStore

log = logging.getLogger(__name__)


class LeaseKeeper:
    def __init__(self, store: RequestStore, engine: CallEngine) -> None:
        self._store = store
        self._engine = engine

    async def renew(self) -> None:
        leases = self._engine.live_leases()
        renewed = await self._store.renew_leases(leases)
        self._engine.leases_lost(leases, set(leases) - renewed)

    async def reconcile(self) -> None:
        leases = self._engine.live_leases()
        found = await self._store.reconcile(leases)
        self._engine.cancel_requests(found.cancelled)
        self._engine.leases_lost(leases, found.lost)


async def every(interval: float, job: Callable[[], Awaitable[None]]) -> None:
    """Run ``job`` every ``interval`` seconds; a database fault waits for the next round."""
    while True:
        await asyncio.sleep(interval)
        try:
            await job()
        except (*TRANSIENT, asyncpg.PostgresError) as exc:
            log.warning(
                "periodic job failed: %s", type(exc).__name__, extra={"action": "periodic_error"}
            )
