"""Stasis applications and their event WebSockets.

Asterisk keeps one WebSocket per app name: a newer connection takes the app over and the older
one stays open but gets nothing more. An app stays registered after its socket closes (its
channels keep their subscription); events meanwhile are dropped, never queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)

_CLOSE_TIMEOUT = 2.0  # seconds a closing handshake may take before the socket is dropped


class EventSocket:
    """One event WebSocket. Timer callbacks cannot await, so events go through a queue that a
    single writer task drains: per-socket order is kept and no task is needed per channel."""

    def __init__(self, ws: web.WebSocketResponse, apps: tuple[str, ...]) -> None:
        self.ws = ws
        self.apps = apps
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._writer = asyncio.get_running_loop().create_task(self._write())

    def send(self, text: str) -> None:
        if not self.ws.closed:
            self._queue.put_nowait(text)

    async def _write(self) -> None:
        while True:
            text = await self._queue.get()
            if text is None:
                return
            try:
                await self.ws.send_str(text)
            except (ConnectionError, RuntimeError):
                return  # the peer went away; the handler sees the close and detaches us

    async def close(self) -> None:
        """Close from our side (drop / restart / stop)."""
        with contextlib.suppress(ConnectionError, RuntimeError, asyncio.TimeoutError):
            await asyncio.wait_for(self.ws.close(), _CLOSE_TIMEOUT)

    async def stop_writer(self) -> None:
        self._queue.put_nowait(None)
        with contextlib.suppress(asyncio.CancelledError):
            await self._writer


@dataclass(slots=True, eq=False)
class AppState:
    name: str
    socket: EventSocket | None = None
    connects: int = 0  # how many WebSockets have registered this app so far

    @property
    def connected(self) -> bool:
        return self.socket is not None


class AppRegistry:
    def __init__(self, asterisk_id: str) -> None:
        self.asterisk_id = asterisk_id
        self.apps: dict[str, AppState] = {}
        self.sockets: set[EventSocket] = set()

    def attach(self, sock: EventSocket) -> None:
        self.sockets.add(sock)
        for name in sock.apps:
            state = self.apps.setdefault(name, AppState(name))
            if state.socket is not None:
                log.info("app %s: a new WebSocket takes it over", name)
            state.socket = sock
            state.connects += 1

    def detach(self, sock: EventSocket) -> None:
        self.sockets.discard(sock)
        for name in sock.apps:
            state = self.apps.get(name)
            if state is not None and state.socket is sock:
                state.socket = None

    def registered(self, name: str) -> bool:
        return name in self.apps

    def active(self, name: str) -> bool:
        state = self.apps.get(name)
        return state is not None and state.socket is not None

    def deliver(self, name: str, event: dict[str, Any]) -> None:
        """Send to the app's current socket, serialised once; dropped when it has none."""
        state = self.apps.get(name)
        if state is None or state.socket is None:
            return
        event["asterisk_id"] = self.asterisk_id
        event["application"] = name
        state.socket.send(json.dumps(event, separators=(",", ":")))

    def broadcast(self, event: dict[str, Any]) -> None:
        """Raw event to every connected app (or only to ``event["application"]``)."""
        target = event.get("application")
        for name, state in self.apps.items():
            if state.socket is None or (target is not None and target != name):
                continue
            payload = dict(event)
            payload.setdefault("asterisk_id", self.asterisk_id)
            payload["application"] = name
            state.socket.send(json.dumps(payload, separators=(",", ":")))

    async def close_all(self) -> None:
        await asyncio.gather(*(sock.close() for sock in list(self.sockets)))

    def forget_all(self) -> None:
        """An Asterisk restart: no app is registered any more."""
        self.apps.clear()
