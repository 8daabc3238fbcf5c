"""State of the simulated Asterisk: channels, bridges, the request log."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from ari_simulator.config import Script

# dialplan location of an outbound channel outside Stasis (as in every trace)
DIAL_APP = "AppDial2"
DIAL_APP_DATA = "(Outgoing Line)"


@dataclass(slots=True)
class RequestRecord:
    """One ARI REST request as received (path without the ``/ari`` prefix)."""

    method: str
    path: str
    query: dict[str, str]
    body: Any
    status: int

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "body": self.body,
            "status": self.status,
        }


@dataclass(slots=True, eq=False)
class SimChannel:
    """A channel and what happened to it; kept in ``ended_channels`` after hangup."""

    id: str
    name: str
    endpoint: str
    number: str  # the dialled number (outbound) or the dialled exten (inbound)
    outbound: bool
    state: str  # Down, Ringing, Ring, Up (Asterisk's spelling)
    protocol_id: str
    caller_name: str
    caller_number: str
    connected_name: str
    connected_number: str
    creationtime: str
    context: str
    exten: str = "s"
    priority: int = 1
    app_name: str = DIAL_APP
    app_data: str = DIAL_APP_DATA
    caller_id: str = ""  # the originate callerId as sent (inbound: the calling number)
    dialstring: str = ""
    app: str | None = None  # the Stasis application the channel belongs to
    args: list[str] = field(default_factory=list)
    subscribed: bool = False  # the app receives this channel's events
    in_stasis: bool = False
    variables: dict[str, str] = field(default_factory=dict)  # originate variables
    chanvars: dict[str, str] = field(default_factory=dict)  # plain variables set later
    script: Script | None = None
    timeout_s: float | None = None
    answered: bool = False
    rang: bool = False  # POST /ring seen (inbound)
    bridge_id: str | None = None
    hangup_reason: str | None = None  # DELETE ?reason=
    hangup_cause: int | None = None  # the Q.850 cause the hangup carried
    sip_final: int | None = None  # inbound: final SIP response the caller got
    ended: bool = False
    end: str | None = None  # why it ended: answered_bye, busy, noanswer, app_hangup, ...
    timers: list[asyncio.Handle] = field(default_factory=list)

    def snapshot(self) -> dict[str, Any]:
        """The ARI Channel object, keys in Asterisk's order."""
        return {
            "id": self.id,
            "name": self.name,
            "state": self.state,
            "protocol_id": self.protocol_id,
            "caller": {"name": self.caller_name, "number": self.caller_number},
            "connected": {"name": self.connected_name, "number": self.connected_number},
            "accountcode": "",
            "dialplan": {
                "context": self.context,
                "exten": self.exten,
                "priority": self.priority,
                "app_name": self.app_name,
                "app_data": self.app_data,
            },
            "creationtime": self.creationtime,
            "language": "en",
        }

    def cancel_timers(self) -> None:
        for timer in self.timers:
            timer.cancel()
        self.timers.clear()

    def to_json(self) -> dict[str, Any]:
        """Test-facing state (control route ``GET /_sim/channels``)."""
        return {
            "id": self.id,
            "name": self.name,
            "state": self.state,
            "endpoint": self.endpoint,
            "number": self.number,
            "outbound": self.outbound,
            "caller_id": self.caller_id,
            "protocol_id": self.protocol_id,
            "app": self.app,
            "args": self.args,
            "in_stasis": self.in_stasis,
            "variables": self.variables,
            "answered": self.answered,
            "rang": self.rang,
            "bridge_id": self.bridge_id,
            "hangup_reason": self.hangup_reason,
            "hangup_cause": self.hangup_cause,
            "sip_final": self.sip_final,
            "ended": self.ended,
            "end": self.end,
        }


@dataclass(slots=True, eq=False)
class SimBridge:
    id: str
    name: str
    bridge_type: str
    creationtime: str
    channels: list[str] = field(default_factory=list)
    apps: set[str] = field(default_factory=set)  # apps that receive this bridge's events

    def snapshot(self) -> dict[str, Any]:
        return {
            "id": self.id,
            # bridge_simple serves two channels; more need softmix
            "technology": "simple_bridge" if len(self.channels) <= 2 else "softmix",
            "bridge_type": self.bridge_type,
            "bridge_class": "stasis",
            "creator": "Stasis",
            "name": self.name,
            "channels": list(self.channels),
            "creationtime": self.creationtime,
            "video_mode": "talker",
        }
