"""Asterisk behind the call flow's ARI port, in memory, as the recorded traces show it.

Channels created by an originate, the events of ringing, answering and hanging up
(``ari-traces/README.md``), mixing bridges, dynamic PJSIP config objects, and what the resync
asks (``info``, ``GET /channels``). Every request is recorded in ``requests``; ``fail`` makes the
next matching request(s) fail, before or after taking effect (a reply lost on the way back);
``gate`` holds a request until the test lets it through. Events reach only channels of our
Stasis app, and only while the WebSocket is up, as in Asterisk.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from stasis_app.domain.ari_errors import AriConflict, AriError, AriNotFound, AriUnavailable
from stasis_app.domain.channels import (
    Bridge,
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
from tests.waiting import Changes

APP = "twoway-test"
TRUNK = "trunk"
TIMED_OUT = "no response: timed out after 10 s"


@dataclass
class FakeChannel:
    id: str
    endpoint: str
    app: str
    app_args: tuple[str, ...] = ()
    state: str = "Down"
    protocol_id: str = ""
    variables: dict[str, str] = field(default_factory=dict)
    in_stasis: bool = False  # answered an originate into the app (StasisStart sent)
    bridge_id: str | None = None

    def snapshot(self) -> Channel:
        return Channel(
            id=self.id,
            name=f"PJSIP/{self.endpoint.rsplit('@', 1)[-1]}-{self.id[-4:]}",
            state=self.state,
            protocol_id=self.protocol_id,
        )


@dataclass
class Request:
    """One ARI request as the fake received it."""

    op: str
    target: str  # channel, bridge or config object id
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Fault:
    op: str
    error: AriError
    times: int
    applied: bool
    target: str | None

    def matches(self, op: str, target: str) -> bool:
        return self.times > 0 and self.op == op and self.target in (None, target)


class FakeAri:
    """Asterisk behind the ARI port (and the resync's ``info`` / ``list_channels``)."""

    def __init__(self, changes: Changes, *, app: str = APP) -> None:
        self.app = app
        self.changes = changes
        self.channels: dict[str, FakeChannel] = {}
        self.bridges: dict[str, list[str]] = {}
        self.config: dict[tuple[str, str, str], dict[str, str]] = {
            ("res_pjsip", "endpoint", TRUNK): {"context": "from-softswitch", "aors": TRUNK}
        }
        self.requests: list[Request] = []
        self.hung_up: list[str] = []  # channels our DELETE found alive and ended
        self._ours: set[str] = set()  # channels in our Stasis app: their events reach us
        self.startup_time = "2026-01-01T00:00:00.000+0000"
        self.connected = True  # the event WebSocket
        self._sink: Callable[[Event], None] | None = None
        self._held: list[Event] | None = None
        self._faults: list[_Fault] = []
        self._gates: dict[str, asyncio.Event] = {}
        self._call_ids = itertools.count(1)

    # -- wiring and faults ---------------------------------------------------------------------

    def connect(self, sink: Callable[[Event], None]) -> None:
        self._sink = sink

    def hold_events(self) -> None:
        """Queue events instead of delivering them (to order a race by hand)."""
        self._held = []

    def release_events(self) -> None:
        held, self._held = self._held or [], None
        for event in held:
            self._deliver(event)

    def fail(
        self,
        op: str,
        error: AriError | None = None,
        *,
        times: int = 1,
        applied: bool = False,
        target: str | None = None,
    ) -> None:
        """The next ``times`` requests ``op`` (on ``target``, or any) fail with ``error``
        (default: no definite answer, a timeout). ``applied``: Asterisk did it, the reply was
        lost."""
        error = error or AriUnavailable(TIMED_OUT, method=op)
        self._faults.append(_Fault(op, error, times, applied, target))

    def gate(self, op: str) -> asyncio.Event:
        """Requests ``op`` wait (recorded, not yet done) until the returned event is set."""
        gate = self._gates[op] = asyncio.Event()
        return gate

    def open_gates(self) -> None:
        for gate in self._gates.values():
            gate.set()

    async def _request(self, op: str, target: str, **args: Any) -> _Fault | None:
        """Record the request; wait at its gate; raise a fault meant to fail before Asterisk
        acts, or return one that fails after (the caller acts, then ``_lost_reply``)."""
        self.requests.append(Request(op, target, args))
        self.changes.notify()
        gate = self._gates.get(op)
        if gate is not None:
            await gate.wait()
        for fault in self._faults:
            if fault.matches(op, target):
                fault.times -= 1
                if not fault.applied:
                    raise fault.error
                return fault
        return None

    @staticmethod
    def _lost_reply(fault: _Fault | None) -> None:
        if fault is not None:
            raise fault.error

    # -- what the fake saw ---------------------------------------------------------------------

    def did(self, op: str, target: str | None = None) -> list[Request]:
        return [r for r in self.requests if r.op == op and target in (None, r.target)]

    def originated(self) -> list[str]:
        return [r.target for r in self.did("originate")]

    # -- the port ------------------------------------------------------------------------------

    async def originate(
        self,
        *,
        endpoint: str,
        channel_id: str,
        app: str,
        app_args: Sequence[str],
        caller_id: str | None,
        timeout: int,
        variables: Mapping[str, str],
    ) -> Channel:
        fault = await self._request(
            "originate",
            channel_id,
            endpoint=endpoint,
            app=app,
            app_args=list(app_args),
            caller_id=caller_id,
            timeout=timeout,
            variables=dict(variables),
        )
        if channel_id in self.channels:
            raise AriConflict("channel id already in use", status=409, method="POST")
        if app == self.app:
            self._ours.add(channel_id)
        channel = self.channels[channel_id] = FakeChannel(
            id=channel_id,
            endpoint=endpoint,
            app=app,
            app_args=tuple(str(a) for a in app_args),
            protocol_id=f"sip-call-{next(self._call_ids)}@fake",
            variables=dict(variables),
        )
        self._lost_reply(fault)
        return channel.snapshot()

    async def hangup(self, channel_id: str, *, reason: str | None = None) -> bool:
        fault = await self._request("hangup", channel_id, reason=reason)
        channel = self.channels.get(channel_id)
        if channel is not None:
            self.hung_up.append(channel_id)
            self._end(channel, hangup_cause=32, soft=True, cause=16)
        self._lost_reply(fault)
        return channel is not None

    async def ring(self, channel_id: str) -> None:
        self._lost_reply(await self._request("ring", channel_id))
        self._channel(channel_id)

    async def ring_stop(self, channel_id: str) -> None:
        self._lost_reply(await self._request("ring_stop", channel_id))
        self._channel(channel_id)

    async def get_channel(self, channel_id: str) -> Channel:
        self._lost_reply(await self._request("get_channel", channel_id))
        return self._channel(channel_id).snapshot()

    async def create_bridge(
        self, bridge_id: str, *, bridge_type: str = "mixing", name: str | None = None
    ) -> Bridge:
        fault = await self._request("create_bridge", bridge_id, bridge_type=bridge_type, name=name)
        self.bridges.setdefault(bridge_id, [])
        self._lost_reply(fault)
        return Bridge(id=bridge_id, bridge_type=bridge_type)

    async def add_channels(self, bridge_id: str, channel_ids: Sequence[str]) -> None:
        fault = await self._request("add_channels", bridge_id, channel_ids=list(channel_ids))
        if bridge_id not in self.bridges:
            raise AriNotFound("Bridge not found", status=404, method="POST")
        channels = [self.channels.get(c) for c in channel_ids]
        if any(c is None or not c.in_stasis for c in channels):
            raise AriError("Channel not in Stasis application", status=422, method="POST")
        for channel in channels:
            assert channel is not None
            channel.bridge_id = bridge_id
            self.bridges[bridge_id].append(channel.id)
            self._emit(ChannelEnteredBridge(channel=channel.snapshot(), bridge_id=bridge_id))
        self._lost_reply(fault)

    async def get_bridge(self, bridge_id: str) -> Bridge:
        self._lost_reply(await self._request("get_bridge", bridge_id))
        if bridge_id not in self.bridges:
            raise AriNotFound("Bridge not found", status=404, method="GET")
        return Bridge(id=bridge_id, bridge_type="mixing", channels=tuple(self.bridges[bridge_id]))

    async def list_bridges(self) -> list[Bridge]:
        self._lost_reply(await self._request("list_bridges", ""))
        return [
            Bridge(id=bridge_id, bridge_type="mixing", channels=tuple(members))
            for bridge_id, members in self.bridges.items()
        ]

    async def destroy_bridge(self, bridge_id: str) -> bool:
        fault = await self._request("destroy_bridge", bridge_id)
        members = self.bridges.pop(bridge_id, None)
        for channel_id in members or []:
            channel = self.channels.get(channel_id)
            if channel is not None:
                channel.bridge_id = None
                self._emit(ChannelLeftBridge(channel=channel.snapshot(), bridge_id=bridge_id))
        self._lost_reply(fault)
        return members is not None

    async def get_config(
        self, config_class: str, object_type: str, object_id: str
    ) -> dict[str, str]:
        self._lost_reply(await self._request("get_config", object_id, object_type=object_type))
        fields = self.config.get((config_class, object_type, object_id))
        if fields is None:
            raise AriNotFound("Config object not found", status=404, method="GET")
        return dict(fields)

    async def put_config(
        self, config_class: str, object_type: str, object_id: str, fields: Mapping[str, str]
    ) -> None:
        fault = await self._request("put_config", object_id, object_type=object_type)
        self.config[(config_class, object_type, object_id)] = dict(fields)
        self._lost_reply(fault)

    async def delete_config(self, config_class: str, object_type: str, object_id: str) -> bool:
        fault = await self._request("delete_config", object_id, object_type=object_type)
        found = self.config.pop((config_class, object_type, object_id), None) is not None
        self._lost_reply(fault)
        return found

    # -- what the resync asks ------------------------------------------------------------------

    async def info(self, only: str | None = None) -> dict[str, Any]:
        self._lost_reply(await self._request("info", only or ""))
        return {"status": {"startup_time": self.startup_time}}

    async def list_channels(self) -> list[Channel]:
        self._lost_reply(await self._request("list_channels", ""))
        return [channel.snapshot() for channel in self.channels.values()]

    # -- the far end ---------------------------------------------------------------------------

    def ringing(self, channel_id: str) -> None:
        """The phone rings (180): Dial '' → Ringing → Dial RINGING."""
        channel = self._channel(channel_id)
        self._emit(Dial(peer=channel.snapshot(), dialstatus=""))
        channel.state = "Ringing"
        self._emit(ChannelStateChange(channel=channel.snapshot()))
        self._emit(Dial(peer=channel.snapshot(), dialstatus="RINGING"))

    def answer(self, channel_id: str) -> None:
        """The phone answers (200): Up → Dial ANSWER → StasisStart."""
        channel = self._channel(channel_id)
        channel.state = "Up"
        self._emit(ChannelStateChange(channel=channel.snapshot()))
        self._emit(Dial(peer=channel.snapshot(), dialstatus="ANSWER"))
        channel.in_stasis = True
        self._emit(StasisStart(channel=channel.snapshot(), args=channel.app_args))

    def refuse(self, channel_id: str, cause: int = 17, sip_code: int = 486) -> None:
        """The phone refuses before answering (486 busy by default; 403 → 21, 404 → 1)."""
        channel = self._channel(channel_id)
        self._emit(
            ChannelHangupRequest(channel=channel.snapshot(), cause=cause, tech_cause=sip_code)
        )
        self._emit(Dial(peer=channel.snapshot(), dialstatus="BUSY" if cause == 17 else "NOANSWER"))
        self._destroy(channel, cause, sip_code)

    def ring_out(self, channel_id: str) -> None:
        """Asterisk's originate timeout ends the ringing (CANCEL): cause 19."""
        self._destroy(self._channel(channel_id), 19, None)

    def far_end_hangup(self, channel_id: str, cause: int = 16) -> None:
        """The party on this channel hangs up (BYE): no cause in the request on 20/22."""
        self._end(self._channel(channel_id), hangup_cause=None, soft=False, cause=cause)

    def survivor(
        self, channel_id: str, *, app: str = "lost-instance", answered: bool = True
    ) -> None:
        """A channel a lost instance left behind (by default its events go to the dead app's
        socket, not ours)."""
        if app == self.app:
            self._ours.add(channel_id)
        self.channels[channel_id] = FakeChannel(
            id=channel_id,
            endpoint="PJSIP/0@trunk",
            app=app,
            state="Up" if answered else "Ringing",
            protocol_id=f"sip-call-{next(self._call_ids)}@fake",
            in_stasis=answered,
        )

    def drop_socket(self) -> None:
        """The event WebSocket is down: events are lost (Asterisk does not queue them)."""
        self.connected = False

    def restart(self) -> None:
        """Asterisk restarts: the socket drops, every channel, bridge and memory config object
        is gone without an event, and it reports a new start-up time."""
        self.drop_socket()
        self.channels.clear()
        self.bridges.clear()
        self.config = {key: value for key, value in self.config.items() if key[2] == TRUNK}
        self.startup_time = "2026-01-01T01:00:00.000+0000"
        self.changes.notify()

    # -- internals -----------------------------------------------------------------------------

    def _channel(self, channel_id: str) -> FakeChannel:
        channel = self.channels.get(channel_id)
        if channel is None:
            raise AriNotFound("Channel not found", status=404, method="GET")
        return channel

    def _end(
        self, channel: FakeChannel, *, hangup_cause: int | None, soft: bool, cause: int
    ) -> None:
        self._emit(ChannelHangupRequest(channel=channel.snapshot(), cause=hangup_cause, soft=soft))
        if channel.bridge_id is not None:
            self.bridges.get(channel.bridge_id, []).remove(channel.id)
            self._emit(ChannelLeftBridge(channel=channel.snapshot(), bridge_id=channel.bridge_id))
        if channel.in_stasis:
            self._emit(StasisEnd(channel=channel.snapshot()))
        self._destroy(channel, cause, None)

    def _destroy(self, channel: FakeChannel, cause: int, sip_code: int | None) -> None:
        del self.channels[channel.id]
        channel.state = "Down"
        self._emit(ChannelDestroyed(channel=channel.snapshot(), cause=cause, tech_cause=sip_code))
        self.changes.notify()

    def _emit(self, event: Event) -> None:
        if not self.connected or event.channel_id not in self._ours:
            return
        if self._held is not None:
            self._held.append(event)
        else:
            self._deliver(event)

    def _deliver(self, event: Event) -> None:
        if self._sink is not None:
            self._sink(event)
        self.changes.notify()
