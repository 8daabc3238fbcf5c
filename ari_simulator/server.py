"""``Simulator``: the aiohttp server around the simulated Asterisk, and its Python API."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web

from ari_simulator.apps import AppState
from ari_simulator.config import Script, SimulatorConfig
from ari_simulator.control import ControlRoutes
from ari_simulator.core import Pbx
from ari_simulator.dynconfig import Key
from ari_simulator.errors import SimulatorError
from ari_simulator.faults import DEFAULT_MESSAGE, Chaos, EventFault, Fault, Faults, FaultyApps
from ari_simulator.middleware import AriMiddleware
from ari_simulator.model import RequestRecord, SimBridge, SimChannel
from ari_simulator.rest import AriRoutes
from ari_simulator.websocket import EventsRoute

log = logging.getLogger(__name__)
_T = TypeVar("_T")


class Simulator:
    """An Asterisk (ARI subset) on a loopback port; see the package docstring."""

    def __init__(self, cfg: SimulatorConfig | None = None) -> None:
        self.cfg = cfg if cfg is not None else SimulatorConfig()
        self._faults = Faults()
        self._apps = FaultyApps(self.cfg.asterisk_id, self._faults)
        self._pbx = Pbx(self.cfg, self._apps, self._changed)
        self.requests: list[RequestRecord] = []
        # Called with every recorded request (benchmarks time originates with it).
        self.request_observer: Callable[[RequestRecord], None] | None = None
        self._waiters: list[asyncio.Future[None]] = []
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    # --- lifecycle -----------------------------------------------------------------------

    def make_app(self) -> web.Application:
        middleware = AriMiddleware(self.cfg.user, self.cfg.password, self._record, self._faults)
        app = web.Application(middlewares=[middleware.handle])
        app.add_routes(EventsRoute(self._pbx).routes())
        app.add_routes(AriRoutes(self._pbx).routes())
        app.add_routes(ControlRoutes(self).routes())
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve; returns ``http://host:port`` (ARI under ``/ari``). Port 0 picks a free one."""
        if self._runner is not None:
            raise SimulatorError("simulator already started")
        runner = web.AppRunner(self.make_app(), access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._runner = runner
        bound_host, bound_port = runner.addresses[0][:2]
        self.base_url = f"http://{bound_host}:{bound_port}"
        log.info("ARI simulator (Asterisk %s) at %s/ari", self.cfg.version, self.base_url)
        return self.base_url

    async def stop(self) -> None:
        self._pbx.shutdown()
        await self._apps.close_all()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --- state ---------------------------------------------------------------------------

    @property
    def channels(self) -> dict[str, SimChannel]:
        """Live channels by id."""
        return self._pbx.channels

    @property
    def ended_channels(self) -> OrderedDict[str, SimChannel]:
        """Hung-up channels by id (the last ``cfg.keep_ended``), for assertions after the fact."""
        return self._pbx.ended

    def channel(self, channel_id: str) -> SimChannel:
        """A live or ended channel."""
        ch = self._pbx.channels.get(channel_id) or self._pbx.ended.get(channel_id)
        if ch is None:
            raise SimulatorError(f"no channel {channel_id!r}")
        return ch

    @property
    def bridges(self) -> dict[str, SimBridge]:
        return self._pbx.bridges.items

    @property
    def dynamic_objects(self) -> dict[Key, dict[str, str]]:
        """Memory sorcery objects: (config class, object type, id) -> fields."""
        return self._pbx.config.memory

    @property
    def scripts(self) -> dict[str, Script]:
        return self._pbx.scripts

    @property
    def apps(self) -> dict[str, AppState]:
        return self._apps.apps

    def app_connected(self, name: str) -> bool:
        return self._apps.active(name)

    def script(self, number: str, script: Script | None) -> None:
        """What the far end at ``number`` does from now on (None: back to the default)."""
        if script is None:
            self._pbx.scripts.pop(number, None)
        else:
            self._pbx.scripts[number] = script

    @property
    def faults(self) -> list[Fault]:
        """The faults still active (used-up ones are gone), in the order they apply."""
        return self._faults.active

    def fault(
        self,
        method: str,
        path_prefix: str,
        *,
        status: int | None = None,
        delay_ms: int = 0,
        delay_after_ms: int = 0,
        times: int | None = None,
        message: str = DEFAULT_MESSAGE,
        query: dict[str, str] | None = None,
    ) -> Fault:
        """Make matching ARI REST requests slow or failing (see ``faults.py``): ``method``
        (``*`` for any) and the path without ``/ari``, e.g. ``sim.fault("POST", "/channels",
        status=500, times=1)``. ``query``: parameter -> substring it must contain."""
        return self._faults.add(
            Fault(
                method,
                path_prefix,
                status=status,
                delay_ms=delay_ms,
                delay_after_ms=delay_after_ms,
                times=times,
                message=message,
                query=dict(query or {}),
            )
        )

    @property
    def event_faults(self) -> list[EventFault]:
        return self._faults.events

    def lose_events(
        self, event_type: str, *, channel_prefix: str = "", times: int | None = None
    ) -> EventFault:
        """Events of ``event_type`` (``*``: any) for channels whose id starts with
        ``channel_prefix`` never reach the app, e.g. ``sim.lose_events("ChannelDestroyed")``."""
        return self._faults.add_event(EventFault(event_type, channel_prefix, times))

    def set_faults(self, faults: list[Fault | EventFault]) -> None:
        """Replace every fault (REST and event faults)."""
        self._faults.replace(faults)

    def clear_faults(self) -> None:
        """No more faults: ARI answers normally and every event arrives."""
        self._faults.clear()

    def chaos(self, chaos: Chaos | None) -> None:
        """Random faults on every REST request no explicit fault matches (None: off)."""
        self._faults.chaos = chaos

    def clear_requests(self) -> None:
        self.requests.clear()

    def _record(self, record: RequestRecord) -> None:
        if self.request_observer is not None:
            self.request_observer(record)
        self.requests.append(record)
        if len(self.requests) > self.cfg.keep_requests:
            del self.requests[: len(self.requests) // 2]  # amortised trim
        self._changed()

    def _changed(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def wait_for(self, predicate: Callable[[], _T | None], timeout: float = 5.0) -> _T:
        """Wait until ``predicate()`` is truthy and return it; re-checked at every state change.

        Raises TimeoutError after ``timeout`` seconds.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            result = predicate()
            if result:
                return result
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"simulator condition not met within {timeout} s")
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append(waiter)
            with contextlib.suppress(TimeoutError):  # then one last check above
                await asyncio.wait_for(waiter, remaining)

    # --- actions -------------------------------------------------------------------------

    async def inbound_call(
        self,
        caller: str,
        exten: str,
        *,
        caller_name: str = "",
        app: str | None = None,
        args: list[str] | None = None,
    ) -> str:
        """An inbound call enters Stasis in state Ring (``ani_2way_<CLD>``: args
        ``["ani_2way", "<CLD>"]``). Returns the channel id."""
        ch = self._pbx.inbound_call(caller, exten, caller_name=caller_name, app=app, args=args)
        return ch.id

    async def far_end_hangup(self, channel_id: str) -> None:
        """The remote party sends BYE (an answered call, or an inbound caller giving up)."""
        self._pbx.far_end_hangup(channel_id)

    async def drop_websockets(self) -> None:
        """Close every event WebSocket; apps stay registered, clients must reconnect."""
        await self._apps.close_all()

    async def restart(self) -> None:
        """Asterisk restarts: sockets dropped; channels, bridges, memory objects and app
        registrations gone, without any event."""
        self._pbx.restart()
        await self._apps.close_all()

    async def inject(self, event: dict[str, Any]) -> None:
        """Send a raw event to every connected app (only to ``event["application"]`` if set)."""
        self._apps.broadcast(event)


async def run_simulator(
    cfg: SimulatorConfig,
    host: str = "127.0.0.1",
    port: int = 8088,
    *,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until cancelled. ``on_ready`` gets the base URL once listening."""
    sim = Simulator(cfg)
    url = await sim.start(host, port)
    if on_ready is not None:
        on_ready(url)
    try:
        await asyncio.Event().wait()
    finally:
        await sim.stop()
