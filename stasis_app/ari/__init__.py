"""Thin typed ARI client: REST (``AriRest``), events (``parse_event``), WebSocket (``EventStream``).

Typical use::

    async with AriClient(settings) as ari:
        stream = ari.event_stream(on_event=..., on_connect=..., on_disconnect=...)
        runner = asyncio.create_task(stream.run())
        await stream.wait_connected(10)
        channel = await ari.rest.originate(...)
        ...
        await stream.close()
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Self

import aiohttp

from stasis_app.ari.errors import AriConflict, AriError, AriNotFound, AriUnavailable
from stasis_app.ari.events import ALL_EVENTS, CALL_EVENTS, parse_event
from stasis_app.ari.http import normalise_base_url
from stasis_app.ari.rest import AriRest, Observer
from stasis_app.ari.stream import EventStream
from stasis_app.config import Settings
from stasis_app.domain.channels import (
    Bridge,
    BridgeDestroyed,
    Channel,
    ChannelDestroyed,
    ChannelEnteredBridge,
    ChannelHangupRequest,
    ChannelLeftBridge,
    ChannelStateChange,
    Dial,
    Event,
    StasisEnd,
    StasisStart,
)
from stasis_app.errors import ConfigError

# Asterisk's HTTP server allows 100 sessions by default (http.conf sessionlimit), the event
# WebSocket included: stay well below it. Asterisk closes idle keep-alive connections after
# 15 s (session_keep_alive): drop ours first so a request never lands on a closing socket.
_CONNECTION_LIMIT = 64
_KEEPALIVE = 10.0


class AriClient:
    """The session, ``rest`` and a factory for ``EventStream``, built from ``Settings``.

    ``base_url`` overrides ``settings.ari_url`` (e.g. the URL of a simulator started in-process;
    an empty ``ari_url`` means "use the built-in simulator", which the caller starts).
    Pass ``session`` to share one; it is then not closed here.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        base_url: str | None = None,
        session: aiohttp.ClientSession | None = None,
        observer: Observer | None = None,
    ) -> None:
        url = base_url if base_url is not None else settings.ari_url
        if not url:
            raise ConfigError("no ARI URL: set TWOWAY_ARI_URL or start the simulator first")
        try:
            self.base_url = normalise_base_url(url)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        self.settings = settings
        self._observer = observer
        self._session = session
        self._own_session = session is None
        self._rest: AriRest | None = None

    def __repr__(self) -> str:
        return f"AriClient({self.base_url!r}, app={self.settings.ari_app!r})"

    @property
    def app(self) -> str:
        return self.settings.ari_app

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("AriClient not started: use 'async with AriClient(...)'")
        return self._session

    @property
    def rest(self) -> AriRest:
        if self._rest is None:
            raise RuntimeError("AriClient not started: use 'async with AriClient(...)'")
        return self._rest

    async def start(self) -> None:
        if self._rest is not None:
            return
        if self._session is None:
            # No session-wide timeout: REST calls carry their own, the WebSocket must not have one.
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=_CONNECTION_LIMIT + 1,  # the event WebSocket too
                    keepalive_timeout=_KEEPALIVE,
                ),
            )
        self._rest = AriRest(
            self._session,
            self.base_url,
            user=self.settings.ari_user,
            password=self.settings.ari_password,
            timeout=self.settings.ari_timeout,
            observer=self._observer,
            max_connections=_CONNECTION_LIMIT,
        )

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None
        self._rest = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def event_stream(
        self,
        *,
        on_event: Callable[[Event], None],
        on_connect: Callable[[], Awaitable[None]],
        on_disconnect: Callable[[], None],
        wanted: frozenset[str] = ALL_EVENTS,
    ) -> EventStream:
        """A stream for ``settings.ari_app`` on this client's session (one per app instance)."""
        return EventStream(
            self.session,
            base_url=self.base_url,
            user=self.settings.ari_user,
            password=self.settings.ari_password,
            app=self.settings.ari_app,
            on_event=on_event,
            on_connect=on_connect,
            on_disconnect=on_disconnect,
            heartbeat=self.settings.ari_heartbeat,
            reconnect_max=self.settings.ari_reconnect_max,
            connect_timeout=self.settings.ari_timeout,
            wanted=wanted,
        )


__all__ = [
    "ALL_EVENTS",
    "CALL_EVENTS",
    "AriClient",
    "AriConflict",
    "AriError",
    "AriNotFound",
    "AriRest",
    "AriUnavailable",
    "Bridge",
    "BridgeDestroyed",
    "Channel",
    "ChannelDestroyed",
    "ChannelEnteredBridge",
    "ChannelHangupRequest",
    "ChannelLeftBridge",
    "ChannelStateChange",
    "Dial",
    "Event",
    "EventStream",
    "Observer",
    "StasisEnd",
    "StasisStart",
    "parse_event",
]
