"""Fault injection: a slow or failing Asterisk, per ARI REST request.

A :class:`Fault` matches requests by method and path prefix (the path without ``/ari``, so
``/channels`` matches an originate and every ``/channels/...`` call) and, optionally, by
substrings of query parameters. A matching request is

- delayed by ``delay_ms`` *before* it is handled (Asterisk slow to act: a slow originate creates
  its channel only after the delay, possibly after the client has given up), and then
- answered with ``status`` and ``{"message": ...}`` *without being handled* (an originate
  creates no channel, a bridge is not created: like a real failure), or, without ``status``,
  handled normally and answered ``delay_after_ms`` later (Asterisk acted at once, its answer is
  late: a client that gives up meanwhile leaves a channel behind).

Faults are checked in the order they were added; the first that matches applies. ``times``
limits how many requests a fault applies to (None: until cleared). Faulted requests still go
to the request log, with the status they were answered with.

A :class:`Chaos` draws a random fault for every request no explicit fault matched (a chaos
test): a delay, a 5xx without handling, or a lost reply (handled, answered too late).

An :class:`EventFault` loses events on their way to the app (the WebSocket stays up): those of
one type (``*``: any) for channels (``channel``, or a Dial's ``peer``) whose id starts with
``channel_prefix``, e.g. a
``ChannelDestroyed`` that never arrives. Injected events (``Simulator.inject``) are never lost.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from ari_simulator.apps import AppRegistry
from ari_simulator.errors import SimulatorError

ANY_METHOD = "*"
DEFAULT_MESSAGE = "Internal Server Error"
_FIELDS = (
    "method",
    "path_prefix",
    "status",
    "delay_ms",
    "delay_after_ms",
    "times",
    "message",
    "query",
)


@dataclass(slots=True, eq=False)
class Fault:
    """One injected fault; ``hits`` counts the requests it has applied to."""

    method: str
    path_prefix: str
    status: int | None = None
    delay_ms: int = 0
    delay_after_ms: int = 0
    times: int | None = None
    message: str = DEFAULT_MESSAGE
    query: dict[str, str] = field(default_factory=dict)
    hits: int = 0

    def __post_init__(self) -> None:
        self.method = self.method.upper()
        if not self.method:
            raise SimulatorError("a fault needs a method (or '*')")
        if not self.path_prefix.startswith("/"):
            raise SimulatorError("path_prefix is the ARI path without /ari, like /channels")
        if self.status is not None and (
            not isinstance(self.status, int) or not 100 <= self.status <= 599
        ):
            raise SimulatorError(f"status must be an HTTP status, not {self.status!r}")
        for name in ("delay_ms", "delay_after_ms"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise SimulatorError(f"{name} must be an int >= 0, not {value!r}")
        if self.times is not None and (not isinstance(self.times, int) or self.times < 1):
            raise SimulatorError(f"times must be None or an int >= 1, not {self.times!r}")
        if self.status is not None and self.delay_after_ms:
            raise SimulatorError("delay_after_ms delays a handled request: not with a status")
        if self.status is None and not (self.delay_ms or self.delay_after_ms):
            raise SimulatorError("a fault needs a status or a delay")
        if not isinstance(self.message, str):
            raise SimulatorError("message must be a string")
        if not (
            isinstance(self.query, dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in self.query.items())
        ):
            raise SimulatorError("query maps parameter names to substrings")

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.hits >= self.times

    def matches(self, method: str, path: str, query: Mapping[str, str]) -> bool:
        if self.method not in (ANY_METHOD, method.upper()):
            return False
        if not path.startswith(self.path_prefix):
            return False
        return all(part in query.get(name, "") for name, part in self.query.items())

    @classmethod
    def from_json(cls, data: object) -> Fault:
        """From a control-route JSON object; unknown keys are an error."""
        if not isinstance(data, dict):
            raise SimulatorError("a fault is a JSON object")
        unknown = set(data) - set(_FIELDS)
        if unknown:
            raise SimulatorError(f"unknown fault fields: {sorted(unknown)}")
        if not {"method", "path_prefix"} <= data.keys():
            raise SimulatorError('a fault needs "method" and "path_prefix"')
        if not isinstance(data["method"], str) or not isinstance(data["path_prefix"], str):
            raise SimulatorError("method and path_prefix are strings")
        try:
            return cls(**data)
        except TypeError as exc:
            raise SimulatorError(str(exc)) from exc

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path_prefix": self.path_prefix,
            "status": self.status,
            "delay_ms": self.delay_ms,
            "delay_after_ms": self.delay_after_ms,
            "times": self.times,
            "message": self.message,
            "query": dict(self.query),
            "hits": self.hits,
        }


@dataclass(slots=True, eq=False)
class EventFault:
    """Events lost before they reach the app; ``hits`` counts them."""

    event_type: str
    channel_prefix: str = ""
    times: int | None = None
    hits: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.event_type, str) or not self.event_type:
            raise SimulatorError("event_type is an ARI event type (or '*')")
        if not isinstance(self.channel_prefix, str):
            raise SimulatorError("channel_prefix must be a string")
        if self.times is not None and (not isinstance(self.times, int) or self.times < 1):
            raise SimulatorError(f"times must be None or an int >= 1, not {self.times!r}")

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.hits >= self.times

    def matches(self, event: Mapping[str, Any]) -> bool:
        if self.event_type not in (ANY_METHOD, event.get("type")):
            return False
        if not self.channel_prefix:
            return True
        channel = event.get("channel") or event.get("peer")  # Dial: the dialled channel
        channel_id = channel.get("id") if isinstance(channel, dict) else None
        return isinstance(channel_id, str) and channel_id.startswith(self.channel_prefix)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EventFault:
        unknown = set(data) - {"event_type", "channel_prefix", "times"}
        if unknown:
            raise SimulatorError(f"unknown event fault fields: {sorted(unknown)}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise SimulatorError(str(exc)) from exc

    def to_json(self) -> dict[str, Any]:
        return {
            "event_type": self.event_type,
            "channel_prefix": self.channel_prefix,
            "times": self.times,
            "hits": self.hits,
        }


@dataclass(slots=True, eq=False)
class Chaos:
    """Random faults, drawn per request with a seeded generator (a run can be repeated).

    Each request is, independently: with ``error_rate`` answered 5xx unhandled (Asterisk did
    nothing); else with ``lost_rate`` handled but answered ``lost_ms`` later (a reply the client
    has given up on); else with ``slow_rate`` delayed by up to ``max_delay_ms`` before it is
    handled. ``counts`` says how many of each were drawn.
    """

    max_delay_ms: int = 0
    slow_rate: float = 0.0
    error_rate: float = 0.0
    lost_rate: float = 0.0
    lost_ms: int = 0
    seed: int = 0
    counts: dict[str, int] = field(default_factory=lambda: {"slow": 0, "5xx": 0, "lost": 0})
    _random: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("slow_rate", "error_rate", "lost_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise SimulatorError(f"{name} is a probability")
        if self.max_delay_ms < 0 or self.lost_ms < 0:
            raise SimulatorError("delays are >= 0")
        self._random = random.Random(self.seed)  # noqa: S311 - a test's dice, not a secret

    def draw(self, method: str, path: str) -> Fault | None:
        dice = self._random.random()
        if dice < self.error_rate:
            self.counts["5xx"] += 1
            status = self._random.choice((500, 502, 503))
            return Fault(method, path, status=status, message="injected")
        dice -= self.error_rate
        if dice < self.lost_rate and self.lost_ms:
            self.counts["lost"] += 1
            return Fault(method, path, delay_after_ms=self.lost_ms)
        dice -= self.lost_rate
        if dice < self.slow_rate and self.max_delay_ms:
            self.counts["slow"] += 1
            return Fault(method, path, delay_ms=self._random.randint(1, self.max_delay_ms))
        return None


def fault_from_json(data: object) -> Fault | EventFault:
    """A control-route fault object: an event fault when it names an ``event_type``."""
    if isinstance(data, dict) and "event_type" in data:
        return EventFault.from_json(data)
    return Fault.from_json(data)


Dispatch = Callable[[], Awaitable[web.StreamResponse]]


class Faults:
    """The active faults of one simulator, applied by the ARI middleware."""

    def __init__(self) -> None:
        self.active: list[Fault] = []
        self.events: list[EventFault] = []
        self.chaos: Chaos | None = None

    def add(self, fault: Fault) -> Fault:
        self.active.append(fault)
        return fault

    def add_event(self, fault: EventFault) -> EventFault:
        self.events.append(fault)
        return fault

    def replace(self, faults: list[Fault | EventFault]) -> None:
        self.active = [f for f in faults if isinstance(f, Fault)]
        self.events = [f for f in faults if isinstance(f, EventFault)]

    def clear(self) -> None:
        self.active.clear()
        self.events.clear()
        self.chaos = None

    def lose(self, event: Mapping[str, Any]) -> bool:
        """Whether this event is lost (counted as a hit of the fault that loses it)."""
        for fault in self.events:
            if fault.matches(event):
                fault.hits += 1
                if fault.exhausted:
                    self.events.remove(fault)
                return True
        return False

    def take(self, method: str, path: str, query: Mapping[str, str]) -> Fault | None:
        """The fault that applies to this request, counted as hit (and dropped when used up)."""
        for fault in self.active:
            if fault.matches(method, path, query):
                fault.hits += 1
                if fault.exhausted:
                    self.active.remove(fault)
                return fault
        return None

    async def run(self, request: web.Request, path: str, dispatch: Dispatch) -> web.StreamResponse:
        """Answer one ARI request (``path`` without ``/ari``): through ``dispatch`` unless a
        fault says otherwise."""
        fault = self.take(request.method, path, request.query) if self.active else None
        if fault is None and self.chaos is not None:
            fault = self.chaos.draw(request.method, path)
        if fault is None:
            return await dispatch()
        if fault.delay_ms:
            # Asterisk has the whole request before it is slow to act on it: a client that
            # gives up meanwhile does not take the request back.
            await request.read()
            await asyncio.sleep(fault.delay_ms / 1000)
        if fault.status is not None:
            return web.Response(
                text=json.dumps({"message": fault.message}, separators=(",", ":")),
                status=fault.status,
                content_type="application/json",
            )
        response = await dispatch()
        if fault.delay_after_ms:
            await asyncio.sleep(fault.delay_after_ms / 1000)
        return response


class FaultyApps(AppRegistry):
    """The app registry, losing the events an :class:`EventFault` names."""

    def __init__(self, asterisk_id: str, faults: Faults) -> None:
        super().__init__(asterisk_id)
        self._faults = faults

    def deliver(self, name: str, event: dict[str, Any]) -> None:
        if self._faults.events and self._faults.lose(event):
            return
        super().deliver(name, event)
