"""The ordered input of one session: its channels' events, stops and vanished legs in one queue.

Events of one request are handled strictly in order, and each is folded into the legs as it is
taken, so the call flow reads leg state that matches what it has seen so far.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from stasis_app.callflow.legs import Legs, Vanished
from stasis_app.domain.channels import Event

CANCEL = "cancel"
SHUTDOWN = "shutdown"
LEASE_LOST = "lease_lost"


@dataclass(frozen=True, slots=True)
class Stop:
    """Queued like an event, so a stop is handled in order with the rest."""

    why: str  # CANCEL | SHUTDOWN | LEASE_LOST


Item = Event | Stop | Vanished


class Fenced(Exception):
    """The row is no longer ours to write (cancelled, or the lease was lost)."""


class ShuttingDown(Exception):
    """The service stops: hang up and record what the call reached."""


class LeaseLost(Exception):
    """Another instance owns the row now: stop driving the call (no hang-up, no write)."""


class Inbox:
    def __init__(self, legs: Legs) -> None:
        self._legs = legs
        self._queue: asyncio.Queue[Item] = asyncio.Queue()
        self._loop = asyncio.get_running_loop()
        self.stopping: str | None = None  # CANCEL | SHUTDOWN once asked
        self.stopped = asyncio.Event()
        self.lease_lost = False

    def put(self, item: Event | Vanished) -> None:
        self._queue.put_nowait(item)

    def stop(self, why: str) -> None:
        """The first stop counts; it is also queued, to be handled in order with the events."""
        if self.stopping is None:
            self.stopping = why
            self.stopped.set()
            self._queue.put_nowait(Stop(why))

    def lose_lease(self) -> bool:
        """Another instance took the row over; False when already known."""
        if self.lease_lost:
            return False
        self.lease_lost = True
        self.stopped.set()
        self._queue.put_nowait(Stop(LEASE_LOST))
        return True

    async def next(self, deadline: float, *, stoppable: bool = True) -> Item | None:
        """The next item, after folding it into the legs; None at the deadline.

        A stop raises (Fenced for a cancel, ShuttingDown) unless ``stoppable`` is False.
        """
        if self._queue.empty():
            if deadline <= self._loop.time():
                return None
            try:  # a deadline on the await itself: no task per event, unlike wait_for
                async with asyncio.timeout_at(deadline):
                    item = await self._queue.get()
            except TimeoutError:
                return None
        else:
            item = self._queue.get_nowait()
        if isinstance(item, Stop):
            if item.why == LEASE_LOST:
                raise LeaseLost  # even in the teardown: the legs are not ours to hang up
            if stoppable:
                raise Fenced if item.why == CANCEL else ShuttingDown
        else:
            self._legs.observe(item, self._loop.time())
        return item

    def observe_queued(self) -> None:
        """Fold every event already queued, without waiting; stops stay queued."""
        stops: list[Item] = []
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if isinstance(item, Stop):
                stops.append(item)
            else:
                self._legs.observe(item, self._loop.time())
        for stop in stops:
            self._queue.put_nowait(stop)
