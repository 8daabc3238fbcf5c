"""ARI event messages → the typed events of ``domain.channels``; everything else parses to ``None``.

``parse_event`` runs on the WebSocket reader for every message, so it is built to reject the
flood of ``ChannelVarset`` (RTPAUDIOQOS*, BRIDGEPEER, STASISSTATUS...) without a JSON decode:
a message whose text contains none of the wanted type names in quotes cannot be one of them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from stasis_app.domain.channels import (
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

log = logging.getLogger(__name__)


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def _opt_int(value: object) -> int | None:
    if isinstance(value, bool):  # bool is an int subclass: not a cause
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)
    return None


def _bridge_id(obj: Mapping[str, Any]) -> str:
    bridge = obj["bridge"]
    bridge_id = bridge.get("id") if isinstance(bridge, Mapping) else None
    if not isinstance(bridge_id, str) or not bridge_id:
        raise ValueError("bridge without an id")
    return bridge_id


def _stasis_start(obj: Mapping[str, Any]) -> Event:
    args = obj.get("args")
    return StasisStart(
        channel=Channel.from_json(obj["channel"]),
        args=tuple(a if isinstance(a, str) else str(a) for a in args)
        if isinstance(args, list)
        else (),
        timestamp=_str(obj.get("timestamp")),
    )


def _stasis_end(obj: Mapping[str, Any]) -> Event:
    return StasisEnd(
        channel=Channel.from_json(obj["channel"]), timestamp=_str(obj.get("timestamp"))
    )


def _dial(obj: Mapping[str, Any]) -> Event:
    return Dial(
        peer=Channel.from_json(obj["peer"]),
        dialstatus=_str(obj.get("dialstatus")),
        timestamp=_str(obj.get("timestamp")),
    )


def _state_change(obj: Mapping[str, Any]) -> Event:
    return ChannelStateChange(
        channel=Channel.from_json(obj["channel"]), timestamp=_str(obj.get("timestamp"))
    )


def _hangup_request(obj: Mapping[str, Any]) -> Event:
    return ChannelHangupRequest(
        channel=Channel.from_json(obj["channel"]),
        cause=_opt_int(obj.get("cause")),
        tech_cause=_opt_int(obj.get("tech_cause")),
        soft=obj.get("soft") is True,
        timestamp=_str(obj.get("timestamp")),
    )


def _destroyed(obj: Mapping[str, Any]) -> Event:
    # Lenient on purpose: dropping a ChannelDestroyed would leak the leg, so only the channel
    # id is required; a missing cause reads as 0 (the "unknown" the call flow already handles).
    return ChannelDestroyed(
        channel=Channel.from_json(obj["channel"]),
        cause=_opt_int(obj.get("cause")) or 0,
        cause_txt=_str(obj.get("cause_txt")),
        tech_cause=_opt_int(obj.get("tech_cause")),
        timestamp=_str(obj.get("timestamp")),
    )


def _entered_bridge(obj: Mapping[str, Any]) -> Event:
    return ChannelEnteredBridge(
        bridge_id=_bridge_id(obj),
        channel=Channel.from_json(obj["channel"]),
        timestamp=_str(obj.get("timestamp")),
    )


def _left_bridge(obj: Mapping[str, Any]) -> Event:
    return ChannelLeftBridge(
        bridge_id=_bridge_id(obj),
        channel=Channel.from_json(obj["channel"]),
        timestamp=_str(obj.get("timestamp")),
    )


def _bridge_destroyed(obj: Mapping[str, Any]) -> Event:
    return BridgeDestroyed(bridge_id=_bridge_id(obj), timestamp=_str(obj.get("timestamp")))


_PARSERS: dict[str, Callable[[Mapping[str, Any]], Event]] = {
    "StasisStart": _stasis_start,
    "StasisEnd": _stasis_end,
    "Dial": _dial,
    "ChannelStateChange": _state_change,
    "ChannelHangupRequest": _hangup_request,
    "ChannelDestroyed": _destroyed,
    "ChannelEnteredBridge": _entered_bridge,
    "ChannelLeftBridge": _left_bridge,
    "BridgeDestroyed": _bridge_destroyed,
}

# Cheap pre-filter, exact by construction: the top-level "type" key is one of the "type"
# keys found by a plain substring scan, so when none of them has a wanted value the message is
# not wanted and needs no JSON decode. Nested "type" keys or look-alike strings only cause a
# (correct) full decode. A JSON string may spell letters as \uXXXX escapes, which the scan
# cannot see: any such escape sends the message to the full decode.
_WS = " \t\r\n"


_NO_TYPE, _UNWANTED, _MAYBE = 0, 1, 2


# What the call flow consumes: bridge events (entered, left, destroyed) say nothing it needs.
CALL_EVENTS: frozenset[str] = frozenset(_PARSERS) - {
    "ChannelEnteredBridge",
    "ChannelLeftBridge",
    "BridgeDestroyed",
}
ALL_EVENTS: frozenset[str] = frozenset(_PARSERS)


def _prefilter(raw: str, wanted: frozenset[str]) -> int:
    if "\\u" in raw:
        return _MAYBE
    n = len(raw)
    i = raw.find('"type"')
    if i == -1:
        return _NO_TYPE
    while i != -1:
        j = i + 6
        while j < n and raw[j] in _WS:
            j += 1
        if j < n and raw[j] == ":":
            j += 1
            while j < n and raw[j] in _WS:
                j += 1
            if j < n and raw[j] == '"':
                k = raw.find('"', j + 1)
                if k != -1 and raw[j + 1 : k] in wanted:
                    return _MAYBE
        i = raw.find('"type"', i + 6)
    return _UNWANTED


def parse_event(raw: str | bytes, wanted: frozenset[str] = ALL_EVENTS) -> Event | None:
    """One WebSocket message → a typed event; ``None`` for types not ``wanted`` (those are
    never JSON-decoded) or malformed input.

    Never raises: a bad message must not take the reader down.
    """
    try:
        text = raw if isinstance(raw, str) else raw.decode("utf-8")
        verdict = _prefilter(text, wanted)
        if verdict == _UNWANTED:
            return None
        if verdict == _NO_TYPE:
            log.debug(
                "ARI message without a type dropped",
                extra={"action": "ari_event_malformed", "size": _size(raw)},
            )
            return None
        obj = json.loads(text)
    except (ValueError, TypeError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        log.debug(
            "unparsable ARI message dropped: %s",
            type(exc).__name__,
            extra={"action": "ari_event_malformed", "size": _size(raw)},
        )
        return None
    if not isinstance(obj, dict):
        log.debug(
            "non-object ARI message dropped",
            extra={"action": "ari_event_malformed", "size": _size(raw)},
        )
        return None
    event_type = obj.get("type")
    parser = (
        _PARSERS.get(event_type) if isinstance(event_type, str) and event_type in wanted else None
    )
    if parser is None:
        return None
    try:
        return parser(obj)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        # no message content in the log: variable values can be anything
        log.debug(
            "malformed %s event dropped: %s",
            event_type,
            exc,
            extra={"action": "ari_event_malformed", "size": _size(raw)},
        )
        return None


def _size(raw: object) -> int:
    return len(raw) if isinstance(raw, str | bytes | bytearray) else -1
