"""What Asterisk reports about channels and bridges: snapshots and the events the call flow uses.

The ARI adapter (``stasis_app.ari``) builds these from the wire; the call flow reads them.
Only the fields the call flow uses. ``from_json`` tolerates missing optional fields because
versions differ (``protocol_id`` exists only from 16.27) and the simulator may be sparser;
a missing or non-string ``id`` is the one thing that makes an object unusable (``ValueError``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias


def _str(value: object, default: str = "") -> str:
    return value if isinstance(value, str) else default


def _opt_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _sub(obj: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = obj.get(key)
    return value if isinstance(value, Mapping) else {}


def _required_id(obj: Mapping[str, Any], what: str) -> str:
    value = obj.get("id")
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} without an id")
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class Channel:
    id: str
    name: str = ""
    state: str = ""
    protocol_id: str | None = None  # SIP Call-ID on chan_pjsip; missing before 16.27
    caller_number: str = ""
    caller_name: str = ""
    connected_number: str = ""
    dialplan_exten: str | None = None
    dialplan_context: str | None = None
    creationtime: str = ""

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Channel:
        if not isinstance(obj, Mapping):
            raise ValueError("channel is not an object")
        caller = _sub(obj, "caller")
        connected = _sub(obj, "connected")
        dialplan = _sub(obj, "dialplan")
        return cls(
            id=_required_id(obj, "channel"),
            name=_str(obj.get("name")),
            state=_str(obj.get("state")),
            protocol_id=_opt_str(obj.get("protocol_id")),
            caller_number=_str(caller.get("number")),
            caller_name=_str(caller.get("name")),
            connected_number=_str(connected.get("number")),
            dialplan_exten=_opt_str(dialplan.get("exten")),
            dialplan_context=_opt_str(dialplan.get("context")),
            creationtime=_str(obj.get("creationtime")),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Bridge:
    id: str
    bridge_type: str = ""
    channels: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Bridge:
        if not isinstance(obj, Mapping):
            raise ValueError("bridge is not an object")
        channels = obj.get("channels")
        return cls(
            id=_required_id(obj, "bridge"),
            bridge_type=_str(obj.get("bridge_type")),
            channels=(
                tuple(c for c in channels if isinstance(c, str))
                if isinstance(channels, list)
                else ()
            ),
        )


# --- events ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class _ChannelEvent:
    """An event about one channel: ``channel_id`` routes it to the call it belongs to."""

    channel: Channel
    timestamp: str = ""

    @property
    def channel_id(self) -> str:
        return self.channel.id


@dataclass(frozen=True, slots=True, kw_only=True)
class StasisStart(_ChannelEvent):
    args: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class StasisEnd(_ChannelEvent):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Dial:
    peer: Channel  # the dialled channel: ours, for an originate
    dialstatus: str = ""  # '' → RINGING → ANSWER | BUSY | NOANSWER | CANCEL | CONGESTION ...
    timestamp: str = ""

    @property
    def channel_id(self) -> str:
        return self.peer.id


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelStateChange(_ChannelEvent):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelHangupRequest(_ChannelEvent):
    cause: int | None = None  # absent on 20/22 for a far-end BYE; 32+soft = "explicit hangup"
    tech_cause: int | None = None  # the SIP code; absent before 20.17 / 22.7
    soft: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelDestroyed(_ChannelEvent):
    cause: int = 0  # Q.850; 0 can mean "no answer" (older versions) or "normal" (20/22 BYE)
    cause_txt: str = ""
    tech_cause: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelEnteredBridge(_ChannelEvent):
    bridge_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelLeftBridge(_ChannelEvent):
    bridge_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class BridgeDestroyed:
    bridge_id: str
    timestamp: str = ""

    @property
    def channel_id(self) -> None:
        return None


Event: TypeAlias = (
    StasisStart
    | StasisEnd
    | Dial
    | ChannelStateChange
    | ChannelHangupRequest
    | ChannelDestroyed
    | ChannelEnteredBridge
    | ChannelLeftBridge
    | BridgeDestroyed
)
