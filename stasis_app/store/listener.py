"""The dedicated LISTEN connection: never from the pool, probed, reconnected with backoff."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import asyncpg

from stasis_app.backoff import Backoff

log = logging.getLogger(__name__)

CHANNEL = "twoway_callback"
# Shows in pg_stat_activity, so operators (and tests) can find this connection.
APPLICATION_NAME = "twoway-callback-listen"


class NotifyListener:
    """Calls ``on_notify(payload)`` for each NOTIFY and ``on_up()`` after every (re)connect.

    NOTIFY is only a wake-up: whatever was sent while the connection was down is lost, so
    ``on_up`` must trigger a full claim round.
    """

    def __init__(
        self,
        url: str,
        on_notify: Callable[[str], None],
        on_up: Callable[[], None],
        probe_interval: float = 5.0,
        reconnect_max: float = 10.0,
    ) -> None:
        self._url = url
        self._on_notify = on_notify
        self._on_up = on_up
        self._probe_interval = probe_interval
        self._backoff = Backoff(maximum=reconnect_max)
        self._lost = asyncio.Event()
        self.connected = False
        self.reconnects = 0

    async def run(self) -> None:
        first = True
        while True:
            conn = None
            try:
                conn = await asyncpg.connect(
                    self._url,
                    timeout=self._probe_interval,
                    server_settings={"application_name": APPLICATION_NAME},
                )
                conn.add_termination_listener(lambda _c: self._lost.set())
                await conn.add_listener(CHANNEL, self._notified)
                self._lost.clear()
                self.connected = True
                self._backoff.reset()
                if not first:
                    self.reconnects += 1
                first = False
                log.info("listening", extra={"action": "listen_up", "channel": CHANNEL})
                self._on_up()
                await self._probe_until_lost(conn)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                log.warning(
                    "listen connection failed: %s",
                    type(exc).__name__,
                    extra={"action": "listen_down"},
                )
            finally:
                self.connected = False
                if conn is not None:
                    with contextlib.suppress(Exception):
                        async with asyncio.timeout(2):
                            await conn.close()
                    conn.terminate()
            await asyncio.sleep(self._backoff.next_delay())

    async def _probe_until_lost(self, conn: asyncpg.Connection) -> None:
        while not self._lost.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._probe_interval):
                    await self._lost.wait()
            if self._lost.is_set():
                return
            async with asyncio.timeout(self._probe_interval):
                await conn.fetchval("SELECT 1")

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        self._on_notify(payload)
