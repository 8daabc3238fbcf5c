"""The ARI event WebSocket (``/ari/events?app=<app>``), kept connected forever.

- Auth is the basic-auth header, never ``api_key`` in the URL: URLs end up in logs.
- aiohttp heartbeats (WebSocket ping) notice a dead peer; a clean close is a disconnect too.
- Reconnects use capped exponential backoff with jitter; the backoff only resets after a
  connection stayed up for a while, so a server that accepts and drops at once is not hammered.
- After every (re)connect ``on_connect`` is awaited (the app resyncs: Asterisk does not queue
  events while no socket is connected). The socket is read meanwhile, so Asterisk never sees a
  slow reader, but events are held back and delivered, in order, once ``on_connect`` returns:
  the app sees its resync first, then everything that happened since the connect.
- ``on_event`` is synchronous: the reader never awaits per event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import aiohttp
from pydantic import SecretStr

from stasis_app.ari.events import ALL_EVENTS, parse_event
from stasis_app.ari.http import basic_auth_header, describe_transport_error, normalise_base_url
from stasis_app.backoff import Backoff
from stasis_app.domain.channels import Event

log = logging.getLogger(__name__)

_BACKOFF_BASE = 0.25  # seconds before the first retry (jittered down to half)
_STABLE_AFTER = 10.0  # a connection that lived this long resets the backoff


class _Connection:
    """Per-connection state: events held back while its ``on_connect`` runs."""

    __slots__ = ("number", "pending")

    def __init__(self, number: int) -> None:
        self.number = number
        self.pending: list[Event] | None = []  # None once on_connect has finished


class EventStream:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        base_url: str,
        user: str,
        password: str | SecretStr,
        app: str,
        on_event: Callable[[Event], None],
        on_connect: Callable[[], Awaitable[None]],
        on_disconnect: Callable[[], None],
        heartbeat: float = 10.0,
        reconnect_max: float = 30.0,
        connect_timeout: float = 10.0,
        wanted: frozenset[str] = ALL_EVENTS,
    ) -> None:
        self._session = session
        self._url = normalise_base_url(base_url) + "/ari/events"
        self._app = app
        self._headers = {"Authorization": basic_auth_header(user, password)}
        self._on_event = on_event
        self._on_connect = on_connect
        self._on_disconnect = on_disconnect
        self._heartbeat = heartbeat
        self._reconnect_max = reconnect_max
        self._connect_timeout = connect_timeout
        self._wanted = wanted  # event types decoded; the rest is dropped unread

        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._connected = asyncio.Event()
        self._closing = asyncio.Event()
        self._running = False
        self._stopped = asyncio.Event()
        self._resync: asyncio.Task[None] | None = None  # the latest on_connect run
        self._resyncs: set[asyncio.Task[None]] = set()  # all still running
        self._connects = 0
        self._reconnects = 0

    def __repr__(self) -> str:
        return f"EventStream(app={self._app!r}, connected={self.connected})"

    # --- public state -------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def reconnects(self) -> int:
        """Successful connections after the first one."""
        return self._reconnects

    async def wait_connected(self, timeout: float) -> bool:
        """True once the socket is open (within ``timeout`` seconds), False otherwise."""
        if self._connected.is_set():
            return True
        try:
            async with asyncio.timeout(timeout):
                await self._connected.wait()
        except TimeoutError:
            return False
        return True

    # --- lifecycle ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, read, reconnect, until ``close()``."""
        if self._running:
            raise RuntimeError("EventStream.run() is already running")
        self._running = True
        self._stopped.clear()
        backoff = Backoff(
            initial=min(_BACKOFF_BASE, self._reconnect_max), maximum=self._reconnect_max
        )
        failures = 0  # consecutive failed attempts, for log levels
        loop = asyncio.get_running_loop()
        try:
            while not self._closing.is_set():
                try:
                    ws = await self._connect(failures)
                    if ws is None:
                        failures += 1
                    elif self._closing.is_set():
                        await ws.close()
                        break
                    else:
                        failures = 0
                        started = loop.time()
                        await self._serve(ws)
                        if loop.time() - started >= _STABLE_AFTER:
                            backoff.reset()  # only a connection that held resets the backoff
                except Exception:  # never let one surprise end the loop: reconnect forever
                    failures += 1
                    log.exception(
                        "ARI event stream error", extra={"action": "ari_ws_error", "app": self._app}
                    )
                await self._sleep(backoff.next_delay())
        finally:
            pending = [task for task in self._resyncs if not task.done()]
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
            self._running = False
            self._stopped.set()

    async def close(self) -> None:
        """Stop ``run()``; returns once it has ended. Safe to call more than once."""
        self._closing.set()
        ws = self._ws
        if ws is not None and not ws.closed:
            await ws.close()
        if self._running:
            await self._stopped.wait()

    # --- internals ----------------------------------------------------------------------------

    async def _connect(self, failures: int) -> aiohttp.ClientWebSocketResponse | None:
        try:
            async with asyncio.timeout(self._connect_timeout):
                return await self._session.ws_connect(
                    self._url,
                    params={"app": self._app},
                    headers=self._headers,
                    heartbeat=self._heartbeat,
                    autoping=True,
                )
        except aiohttp.WSServerHandshakeError as exc:
            # 401/403: wrong credentials; 404: ARI disabled. Keep trying: it may be fixed live.
            level = logging.ERROR if exc.status in (401, 403) else logging.WARNING
            log.log(
                level,
                "ARI WebSocket refused: HTTP %s",
                exc.status,
                extra={
                    "action": "ari_ws_connect_failed",
                    "status": exc.status,
                    "app": self._app,
                    "attempt": failures + 1,
                },
            )
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            # warn on the first failure and then now and again, not on every retry
            log.log(
                logging.WARNING if failures % 20 == 0 else logging.DEBUG,
                "ARI WebSocket connect failed: %s",
                describe_transport_error(exc, self._connect_timeout),
                extra={
                    "action": "ari_ws_connect_failed",
                    "status": None,
                    "app": self._app,
                    "attempt": failures + 1,
                },
            )
        return None

    async def _sleep(self, delay: float) -> None:
        """Wait ``delay`` seconds, or less if ``close()`` is called meanwhile."""
        if self._closing.is_set():
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._closing.wait()

    async def _serve(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._connects += 1
        if self._connects > 1:
            self._reconnects += 1
        conn = _Connection(self._connects)
        self._ws = ws
        self._connected.set()
        log.info(
            "ARI WebSocket connected",
            extra={"action": "ari_ws_connected", "app": self._app, "reconnects": self._reconnects},
        )
        self._resync = asyncio.create_task(
            self._run_on_connect(conn, self._resync), name=f"ari-resync-{conn.number}"
        )
        self._resyncs.add(self._resync)
        self._resync.add_done_callback(self._resyncs.discard)
        close_reason = "closed by peer"
        try:
            while True:
                msg = await ws.receive()
                kind = msg.type
                if kind is aiohttp.WSMsgType.TEXT or kind is aiohttp.WSMsgType.BINARY:
                    event = parse_event(msg.data, self._wanted)
                    if event is None:
                        continue
                    if conn.pending is not None:
                        conn.pending.append(event)
                    else:
                        self._deliver(event)
                elif kind is aiohttp.WSMsgType.ERROR:
                    close_reason = f"error: {type(msg.data).__name__}"
                    break
                else:  # CLOSE, CLOSING, CLOSED
                    break
        finally:
            self._ws = None
            self._connected.clear()
            if not ws.closed:
                with contextlib.suppress(Exception):
                    await ws.close()
            if self._closing.is_set():
                close_reason = "closed by us"
            log.info(
                "ARI WebSocket disconnected: %s",
                close_reason,
                extra={
                    "action": "ari_ws_disconnected",
                    "app": self._app,
                    "close_code": ws.close_code,
                },
            )
            try:
                self._on_disconnect()
            except Exception:
                log.exception("on_disconnect failed", extra={"action": "ari_on_disconnect"})

    async def _run_on_connect(self, conn: _Connection, previous: asyncio.Task[None] | None) -> None:
        # Resyncs never overlap: a slow one from an earlier connection finishes first.
        if previous is not None and not previous.done():
            await asyncio.wait([previous])
        try:
            await self._on_connect()
        except Exception:
            log.exception("on_connect failed", extra={"action": "ari_on_connect_failed"})
        finally:
            # deliver what arrived meanwhile; no await between draining and switching over
            held, conn.pending = conn.pending or [], None
            for event in held:
                self._deliver(event)

    def _deliver(self, event: Event) -> None:
        try:
            self._on_event(event)
        except Exception:  # one bad handler call must not stop the reader
            log.exception(
                "on_event failed",
                extra={"action": "ari_on_event_failed", "channel_id": event.channel_id},
            )
