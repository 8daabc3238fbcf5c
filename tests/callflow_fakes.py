"""The real call engine on in-memory fakes of both its ports: no database, no sockets.

A test drives the far end by hand (a phone rings, answers, hangs up; Asterisk restarts) through
``FakeAri`` (``tests/fake_ari.py``), injects ARI or store faults (``FakeStore``,
``tests/fake_store.py``), and waits, bounded, for what the call flow does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from stasis_app.callflow.call import CallConfig
from stasis_app.callflow.engine import CallEngine
from stasis_app.callflow.identity import IdentityObjects
from stasis_app.callflow.ids import Ids
from stasis_app.callflow.limits import RateLimiter
from stasis_app.callflow.resync import Resync
from stasis_app.domain.request import LIVE_STATUSES, LegName, Status
from tests.fake_ari import APP, TRUNK, FakeAri
from tests.fake_store import FakeRow, FakeStore
from tests.waiting import WAIT, Changes

PREFIX = "t"


def call_config(**overrides: Any) -> CallConfig:
    values: dict[str, Any] = {
        "app": APP,
        "leg_a_timeout": 30.0,
        "leg_b_timeout": 30.0,
        "max_call_duration": 3600.0,
        "max_attempts": 3,
        "retry_delay": 60.0,
        "retry_delay_max": 3600.0,
        "retry_on_destination_failure": False,
        "call_id_header": "X-Callback-Call-ID",
        "dynamic_identity": True,
        "trunk_endpoint": TRUNK,
    }
    values.update(overrides)
    return CallConfig(**values)


class CallHarness:
    """A real ``CallEngine`` on ``FakeAri`` and ``FakeStore``, and waits on what they see."""

    def __init__(self, **config: Any) -> None:
        self.changes = Changes()
        self.ari = FakeAri(self.changes)
        self.store = FakeStore(self.changes)
        self.ids = Ids(PREFIX)
        self.config = call_config(**config)
        self.identities = IdentityObjects(self.ari, trunk=TRUNK, realm="", prefix=PREFIX)
        self.engine = CallEngine(
            ari=self.ari,
            store=self.store,
            identities=self.identities,
            limiter=RateLimiter(1000.0, burst=1000.0),
            ids=self.ids,
            config=self.config,
            max_concurrent=100,
            on_slot_freed=self.changes.notify,
        )
        self.ari.connect(self.engine.on_event)
        self.resync = Resync(self.ari, self.engine, self.identities)
        self._background: set[asyncio.Future[Any]] = set()

    async def open(self) -> None:
        """The first connect's resync (it learns Asterisk's start-up time); ``ari.requests``
        then starts empty."""
        await self.resync()
        self.ari.requests.clear()

    # -- starting calls ------------------------------------------------------------------------

    def start(self, **columns: Any) -> FakeRow:
        """Insert a row and hand its claim to the engine."""
        row = self.store.insert(**columns)
        self.engine.admit([self.store.claim(row)])
        return row

    def recover(self, row: FakeRow) -> None:
        """Hand a live row of a lost instance to the engine."""
        self.engine.adopt([self.store.recover(row)])

    def cancel(self, row: FakeRow) -> None:
        """A cancel as SQL writes it, and the NOTIFY that tells the owner."""
        self.store.cancel(row)
        self.engine.on_notify(f"cancel:{row.id}")

    async def reconnect(self) -> None:
        """The event WebSocket is back: the resync runs before events flow again."""
        self.ari.connected = True
        await self.resync()

    # -- waiting -------------------------------------------------------------------------------

    def channel(self, row: FakeRow, leg: LegName, attempt: int = 1) -> str:
        return self.ids.channel(row.id, attempt, leg)

    def bridge(self, row: FakeRow, attempt: int = 1) -> str:
        return self.ids.bridge(row.id, attempt)

    async def originated(
        self, row: FakeRow, leg: LegName, attempt: int = 1, timeout: float = WAIT
    ) -> str:
        """Until the leg's originate was asked for; its channel id."""
        channel_id = self.channel(row, leg, attempt)
        await self.until(
            lambda: channel_id in self.ari.originated(), f"{channel_id} dialled", timeout
        )
        return channel_id

    async def ringing(self, row: FakeRow, leg: LegName) -> str:
        """The leg is dialled and its phone rings."""
        channel_id = await self.originated(row, leg)
        self.ari.ringing(channel_id)
        return channel_id

    async def answered(self, row: FakeRow, leg: LegName) -> str:
        """The leg is dialled, rings and answers."""
        channel_id = await self.ringing(row, leg)
        self.ari.answer(channel_id)
        return channel_id

    async def bridged(self, row: FakeRow) -> None:
        """Both legs answer and the call is bridged."""
        await self.answered(row, LegName.A)
        await self.answered(row, LegName.B)
        await self.until(lambda: row.status == Status.BRIDGED, "bridged")

    async def done(self, row: FakeRow, timeout: float = WAIT) -> FakeRow:
        """Until no session drives the row any more (it ended, or went back to pending)."""
        await self.until(
            lambda: row.id not in self.engine.live_leases() and row.status not in LIVE_STATUSES,
            f"request {row.id} done (status {row.status})",
            timeout,
        )
        return row

    async def until(self, check: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
        await self.changes.until(check, what, timeout)

    def background(self, work: Awaitable[Any]) -> asyncio.Future[Any]:
        """Run ``work`` beside the test (awaited at the latest by ``close``)."""
        future = asyncio.ensure_future(work)
        self._background.add(future)
        return future

    async def close(self) -> None:
        """Stop what still runs (a failing test must not leak tasks into the next)."""
        self.ari.open_gates()
        self.engine.hurry()
        await self.engine.wait_idle(WAIT)
        await asyncio.wait_for(asyncio.gather(*self._background, return_exceptions=True), WAIT)
