"""Claim loop: claim due rows while there is room, then sleep until the next one is due.

Wakes early on a NOTIFY, on a freed slot, or after the LISTEN connection comes back.
The table is the truth; the sleep is capped so a lost wake-up costs at most ``max_sleep``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import asyncpg

from stasis_app.backoff import Backoff
from stasis_app.domain.request import CallbackRequest
from stasis_app.store.requests import RequestStore

log = logging.getLogger(__name__)

# When rows are due but another instance holds their locks, look again this soon.
_CONTENDED_RETRY = 0.05


class QueueWatcher:
    def __init__(
        self,
        store: RequestStore,
        *,
        batch: int,
        max_sleep: float,
        free_slots: Callable[[], int],
        on_claimed: Callable[[list[CallbackRequest]], None],
        on_recovered: Callable[[list[CallbackRequest]], None] | None = None,
        admit: Callable[[list[CallbackRequest]], Awaitable[list[CallbackRequest]]] | None = None,
    ) -> None:
        self._store = store
        self._batch = batch
        self._max_sleep = max_sleep
        self._free_slots = free_slots
        self._on_claimed = on_claimed
        self._on_recovered = on_recovered
        self._admit = admit  # the policy gate: what may be dialled of a claimed batch
        self._recovered_own = False  # the start-up pass over this instance id's old rows
        # Leases run out on the scale of TWOWAY_LEASE_SECONDS: one recovery pass per
        # ``max_sleep`` is as prompt as the idle poll, and spares every claim round a query.
        self._recover_at = 0.0
        self._wake = asyncio.Event()
        self._backoff = Backoff(maximum=max_sleep)
        self.paused = False

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            self._wake.clear()
            try:
                delay = await self._round()
                self._backoff.reset()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                delay = self._backoff.next_delay()
                log.warning(
                    "claim round failed: %s", type(exc).__name__, extra={"action": "claim_error"}
                )
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._wake.wait()

    async def _recover(self) -> None:
        """Rows other instances (or our previous life) left live: adopt or finish them."""
        room = 0 if self.paused else min(self._free_slots(), self._batch)
        now = asyncio.get_running_loop().time()
        if self._on_recovered is None or room <= 0 or now < self._recover_at:
            return
        recovered = await self._store.recover(room, own=not self._recovered_own)
        self._recovered_own = True
        # A full batch may have left more behind: look again next round.
        self._recover_at = now + self._max_sleep if len(recovered) < room else 0.0
        if recovered:
            log.warning(
                "recovered %d live requests of a lost instance",
                len(recovered),
                extra={"action": "recover"},
            )
            self._on_recovered(recovered)

    async def _round(self) -> float:
        """Claim what fits; return how long to sleep before the next round."""
        if not self._recovered_own and not self.paused:
            # This instance id's rows from before a restart, before we claim any ourselves:
            # afterwards the own-rows pass could not tell them from the rows we just claimed.
            await self._recover()
        while True:
            room = 0 if self.paused else min(self._free_slots(), self._batch)
            if room <= 0:
                return self._max_sleep  # a freed slot or resume wakes us
            claimed = await self._store.claim(room)
            admitted = await self._admit(claimed) if claimed and self._admit else claimed
            if admitted:
                self._on_claimed(admitted)
            if len(claimed) < room:
                break
        await self._recover()
        due_in = await self._store.next_due_in()
        if due_in is None:
            return self._max_sleep
        if due_in <= 0:
            return _CONTENDED_RETRY
        return min(due_in, self._max_sleep)
