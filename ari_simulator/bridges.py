"""Mixing bridges: create, add/remove channels, destroy; the events of each step.

A channel hung up in a bridge leaves it and the other stays Up, alone (DESIGN fact 2): the app
must hang it up and destroy the bridge itself.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from ari_simulator import events
from ari_simulator.errors import AriHttpError
from ari_simulator.model import SimBridge, SimChannel

if TYPE_CHECKING:
    from ari_simulator.core import Pbx


class Bridges:
    def __init__(self, pbx: Pbx) -> None:
        self._pbx = pbx
        self.items: dict[str, SimBridge] = {}

    def _deliver(self, bridge: SimBridge, event: events.Event) -> None:
        for app in sorted(bridge.apps):
            self._pbx.apps.deliver(app, event)

    def get(self, bridge_id: str) -> SimBridge:
        bridge = self.items.get(bridge_id)
        if bridge is None:
            raise AriHttpError(404, "Bridge not found")
        return bridge

    def create(self, bridge_id: str | None, bridge_type: str | None, name: str) -> SimBridge:
        bridge_id = bridge_id or str(uuid.uuid4())
        if bridge_id in self.items:
            raise AriHttpError(409, f"Bridge with id '{bridge_id}' already exists")
        bridge = SimBridge(bridge_id, name, bridge_type or "mixing", events.timestamp())
        self.items[bridge_id] = bridge
        self._pbx.notify()
        return bridge

    def create_or_update(self, bridge_id: str, bridge_type: str | None, name: str) -> SimBridge:
        """``POST /bridges/{id}``: creates, or returns the existing bridge."""
        bridge = self.items.get(bridge_id)
        if bridge is None:
            return self.create(bridge_id, bridge_type, name)
        if name:
            bridge.name = name
        return bridge

    def destroy(self, bridge_id: str) -> None:
        bridge = self.get(bridge_id)
        for channel_id in list(bridge.channels):
            ch = self._pbx.channels.get(channel_id)
            if ch is not None:
                self.leave(ch)
        del self.items[bridge_id]
        self._deliver(bridge, events.bridge_destroyed(bridge))
        self._pbx.notify()

    def _member(self, channel_id: str) -> SimChannel:
        """find_channel_control() of resource_bridges.c: 400 / 422, not 404 / 409."""
        ch = self._pbx.channels.get(channel_id)
        if ch is None:
            raise AriHttpError(400, "Channel not found")
        if not ch.in_stasis:
            raise AriHttpError(422, "Channel not in Stasis application")
        return ch

    def add(self, bridge_id: str, channel_ids: list[str]) -> None:
        bridge = self.get(bridge_id)
        joining = [self._member(cid) for cid in channel_ids]
        for ch in joining:
            if ch.bridge_id == bridge.id:
                continue
            if ch.bridge_id is not None:
                self.leave(ch)  # Asterisk moves a channel from its old bridge
            bridge.channels.append(ch.id)
            if ch.app is not None:
                bridge.apps.add(ch.app)
            ch.bridge_id = bridge.id
            self._deliver(bridge, events.entered_bridge(bridge, ch))
        if joining and len(bridge.channels) == 2:
            self._set_peers(bridge)
        self._pbx.notify()

    def _set_peers(self, bridge: SimBridge) -> None:
        first, second = (self._pbx.channels[cid] for cid in bridge.channels)
        for ch, peer in ((first, second), (second, first)):
            for variable, value in (
                ("BRIDGEPEER", peer.name),
                ("BRIDGEPVTCALLID", peer.protocol_id),
            ):
                ch.chanvars[variable] = value
                self._pbx.emit(ch, events.varset(ch, variable, value))

    def remove(self, bridge_id: str, channel_ids: list[str]) -> None:
        bridge = self.get(bridge_id)
        leaving = [self._member(cid) for cid in channel_ids]
        for ch in leaving:
            if ch.bridge_id != bridge.id:
                raise AriHttpError(422, "Channel not in this bridge")
        for ch in leaving:
            self.leave(ch)
        self._pbx.notify()

    def leave(self, ch: SimChannel) -> None:
        bridge = self.items.get(ch.bridge_id or "")
        ch.bridge_id = None
        if bridge is None:
            return
        if ch.chanvars.get("BRIDGEPEER"):
            for variable in ("BRIDGEPEER", "BRIDGEPVTCALLID"):
                ch.chanvars[variable] = ""
                self._pbx.emit(ch, events.varset(ch, variable, ""))
        bridge.channels.remove(ch.id)
        self._deliver(bridge, events.left_bridge(bridge, ch))

    def peers(self, ch: SimChannel) -> list[SimChannel]:
        bridge = self.items.get(ch.bridge_id or "")
        if bridge is None:
            return []
        channels = self._pbx.channels
        return [channels[cid] for cid in bridge.channels if cid != ch.id and cid in channels]
