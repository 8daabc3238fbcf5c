"""The dedicated LISTEN connection: never from the pool, probed, reconnected with backoff.

It also holds the instance lock (``store.instance``), with or without LISTEN, and runs the
lease renewals: a connection of their own, never queued behind write-backs in the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import asyncpg

from stasis_app.backoff import Backoff
from stasis_app.store.instance import take_lock, try_lock

log = logging.getLogger(__name__)

CHANNEL = "twoway_callback"
# Shows in pg_stat_activity, so operators (and tests) can find this connection.
APPLICATION_NAME = "twoway-callback-listen"


class _LockBusy(Exception):
    """A reconnect found the instance lock taken."""


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
        *,
        instance_id: str = "",
        listen: bool = True,
    ) -> None:
        self._url = url
        self._instance_id = instance_id  # empty: no instance lock
        self._listen = listen  # False: the connection only holds the lock
        self._on_notify = on_notify
        self._on_up = on_up
        self._probe_interval = probe_interval
        self._backoff = Backoff(maximum=reconnect_max)
        self._lost = asyncio.Event()
        self._first: asyncpg.Connection | None = None
        self._conn: asyncpg.Connection | None = None  # while up
        self._busy = asyncio.Lock()  # one statement at a time on the connection
        self.connected = False
        self.reconnects = 0

    async def _connect(self) -> asyncpg.Connection:
        conn: asyncpg.Connection = await asyncpg.connect(
            self._url,
            timeout=self._probe_interval,
            server_settings={"application_name": APPLICATION_NAME},
        )
        return conn

    async def open(self, lock_wait: float) -> None:
        """The first connection, with the instance lock, before anything else starts.

        Raises InstanceIdInUse when another live process holds the lock after ``lock_wait``.
        """
        conn = await self._connect()
        try:
            if self._instance_id:
                await take_lock(conn, self._instance_id, lock_wait)
        except BaseException:
            conn.terminate()
            raise
        self._first = conn

    def discard(self) -> None:
        """Close the first connection if ``run`` never took it over (a failed start-up)."""
        if self._first is not None:
            self._first.terminate()
            self._first = None

    async def run(self) -> None:
        first = True
        while True:
            conn, self._first = self._first, None
            try:
                if conn is None:
                    conn = await self._connect()
                    if self._instance_id and not await try_lock(conn, self._instance_id):
                        raise _LockBusy
                conn.add_termination_listener(lambda _c: self._lost.set())
                if self._listen:
                    await conn.add_listener(CHANNEL, self._notified)
                self._lost.clear()
                self._conn = conn
                self.connected = True
                self._backoff.reset()
                if not first:
                    self.reconnects += 1
                first = False
                log.info("listening", extra={"action": "listen_up", "channel": CHANNEL})
                self._on_up()
                await self._probe_until_lost(conn)
            except _LockBusy:
                # Our previous connection's backend may not have noticed it is gone yet.
                log.warning(
                    "instance lock still held by another session, retrying",
                    extra={"action": "instance_lock_busy"},
                )
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                log.warning(
                    "listen connection failed: %s",
                    type(exc).__name__,
                    extra={"action": "listen_down"},
                )
            finally:
                self.connected = False
                self._conn = None
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
            async with self._busy, asyncio.timeout(self._probe_interval):
                await conn.fetchval("SELECT 1")

    async def fetch(self, query: str, *args: object) -> list[asyncpg.Record]:
        """Run one statement on this connection; ConnectionError while it is down."""
        conn = self._conn
        if conn is None:
            raise ConnectionError("the LISTEN connection is down")
        async with self._busy, asyncio.timeout(self._probe_interval):
            rows: list[asyncpg.Record] = await conn.fetch(query, *args)
        return rows

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        self._on_notify(payload)
