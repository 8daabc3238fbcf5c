"""Builders of ARI event objects, keys in the order the traces show them.

``asterisk_id`` and ``application`` are added on delivery (apps.py): the same event may go to
more than one app.
"""

from __future__ import annotations

import random
import time
from typing import Any

from ari_simulator.causes import cause_text
from ari_simulator.model import SimBridge, SimChannel

Event = dict[str, Any]


def timestamp(t: float | None = None) -> str:
    """Asterisk's event time format: ``2026-11-26T06:01:57.921+0000``."""
    if t is None:
        t = time.time()
    millis = int(t * 1000) % 1000
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(t))}.{millis:03d}+0000"


def dial(peer: SimChannel, dialstatus: str) -> Event:
    return {
        "type": "Dial",
        "timestamp": timestamp(),
        "dialstatus": dialstatus,
        "forward": "",
        "dialstring": peer.dialstring,
        "peer": peer.snapshot(),
    }


def state_change(channel: SimChannel) -> Event:
    return {"type": "ChannelStateChange", "timestamp": timestamp(), "channel": channel.snapshot()}


def varset(channel: SimChannel, variable: str, value: str) -> Event:
    return {
        "variable": variable,
        "value": value,
        "type": "ChannelVarset",
        "timestamp": timestamp(),
        "channel": channel.snapshot(),
    }


def stasis_start(channel: SimChannel) -> Event:
    return {
        "type": "StasisStart",
        "timestamp": timestamp(),
        "args": list(channel.args),
        "channel": channel.snapshot(),
    }


def stasis_end(channel: SimChannel) -> Event:
    return {"type": "StasisEnd", "timestamp": timestamp(), "channel": channel.snapshot()}


def hangup_request(
    channel: SimChannel, cause: int | None, *, tech_cause: int | None = None, soft: bool = False
) -> Event:
    """``cause`` None: no cause at all (20/22 when the far end sends BYE)."""
    event: Event = {}
    if cause is not None:
        event["cause"] = cause
    if soft:
        event["soft"] = True
    if tech_cause is not None:
        event["tech_cause"] = tech_cause
    event.update(type="ChannelHangupRequest", timestamp=timestamp(), channel=channel.snapshot())
    return event


def destroyed(channel: SimChannel, cause: int, *, tech_cause: int | None = None) -> Event:
    event: Event = {
        "type": "ChannelDestroyed",
        "timestamp": timestamp(),
        "cause": cause,
        "cause_txt": cause_text(cause),
    }
    if tech_cause is not None:
        event["tech_cause"] = tech_cause
    event["channel"] = channel.snapshot()
    return event


def entered_bridge(bridge: SimBridge, channel: SimChannel) -> Event:
    return {
        "type": "ChannelEnteredBridge",
        "timestamp": timestamp(),
        "bridge": bridge.snapshot(),
        "channel": channel.snapshot(),
    }


def left_bridge(bridge: SimBridge, channel: SimChannel) -> Event:
    return {
        "type": "ChannelLeftBridge",
        "timestamp": timestamp(),
        "bridge": bridge.snapshot(),
        "channel": channel.snapshot(),
    }


def bridge_destroyed(bridge: SimBridge) -> Event:
    return {"type": "BridgeDestroyed", "timestamp": timestamp(), "bridge": bridge.snapshot()}


# RTP statistics Asterisk 20/22 set as variables when an answered channel's media stops
# (RTPAUDIOQOS...; a bridged peer gets the same with a BRIDGED suffix). Clients ignore them.
_QOS_TAIL = {
    "RTPAUDIOQOSJITTER": "minrxjitter=000.000000;maxrxjitter=000.000000;avgrxjitter=000.000000;"
    "stdevrxjitter=000.000000;mintxjitter=000.000000;maxtxjitter=000.000000;"
    "avgtxjitter=000.000000;stdevtxjitter=000.000000;",
    "RTPAUDIOQOSLOSS": "  minrxlost=000.000000;  maxrxlost=000.000000;  avgrxlost=000.000000;"
    "  stdevrxlost=000.000000;  mintxlost=000.000000;  maxtxlost=000.000000;"
    "  avgtxlost=000.000000;  stdevtxlost=000.000000;",
    "RTPAUDIOQOSRTT": "     minrtt=000.000000;     maxrtt=000.000000;     avgrtt=000.000000;"
    "     stdevrtt=000.000000;",
    "RTPAUDIOQOSMES": "   minrxmes=000.000000;   maxrxmes=000.000000;   avgrxmes=000.000000;"
    "   stdevrxmes=000.000000;   mintxmes=000.000000;   maxtxmes=000.000000;"
    "   avgtxmes=000.000000;   stdevtxmes=000.000000;",
}


def rtp_qos_values() -> list[tuple[str, str]]:
    """The five RTPAUDIOQOS* variables, in the order Asterisk sets them."""
    ssrc = random.getrandbits(31)
    first = (
        f"ssrc={ssrc};themssrc=0;lp=0;rxjitter=0.000000;rxcount=0;txjitter=0.000000;"
        "txcount=0;rlp=0;rtt=0.000000;rxmes=0.000000;txmes=0.000000"
    )
    return [("RTPAUDIOQOS", first), *_QOS_TAIL.items()]
