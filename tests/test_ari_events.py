"""parse_event and the models against every recorded event of a real Asterisk (16, 20, 22)."""

from __future__ import annotations

import json
import logging
from dataclasses import FrozenInstanceError
from pathlib import Path
from typing import Any

import pytest

from stasis_app.ari import (
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
    parse_event,
)
from stasis_app.ari.events import CALL_EVENTS

TRACES = Path(__file__).resolve().parents[1] / "ari-traces"
WANTED = {
    "StasisStart": StasisStart,
    "StasisEnd": StasisEnd,
    "Dial": Dial,
    "ChannelStateChange": ChannelStateChange,
    "ChannelHangupRequest": ChannelHangupRequest,
    "ChannelDestroyed": ChannelDestroyed,
    "ChannelEnteredBridge": ChannelEnteredBridge,
    "ChannelLeftBridge": ChannelLeftBridge,
    "BridgeDestroyed": BridgeDestroyed,
}


def trace_files() -> list[Path]:
    return sorted(TRACES.glob("*.events.jsonl")) + sorted(TRACES.glob("versions/*/events.jsonl"))


def trace_lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.strip()]


def scenario(name: str) -> list[Event]:
    events = [parse_event(line) for line in trace_lines(TRACES / f"{name}.events.jsonl")]
    return [e for e in events if e is not None]


def short(events: list[Event]) -> list[str]:
    return [type(e).__name__ for e in events]


# --- every recorded line ------------------------------------------------------------------------


@pytest.mark.parametrize("path", trace_files(), ids=lambda p: str(p.relative_to(TRACES)))
def test_every_trace_line_parses_to_the_right_type_and_fields(path: Path) -> None:
    lines = trace_lines(path)
    assert lines
    for line in lines:
        raw: dict[str, Any] = json.loads(line)
        event = parse_event(line)
        if raw["type"] not in WANTED:
            assert event is None, raw["type"]
            continue
        assert event is not None
        assert isinstance(event, WANTED[raw["type"]])
        assert event.timestamp == raw["timestamp"]
        # the same from bytes (a BINARY frame or a caller that skips the decode)
        assert parse_event(line.encode()) == event
        chan = raw.get("channel") or raw.get("peer")
        if isinstance(event, BridgeDestroyed):
            assert event.channel_id is None
            assert event.bridge_id == raw["bridge"]["id"]
            continue
        assert chan is not None
        assert event.channel_id == chan["id"]
        check_channel(event.peer if isinstance(event, Dial) else event.channel, chan)
        if isinstance(event, StasisStart):
            assert event.args == tuple(raw["args"])
        elif isinstance(event, Dial):
            assert event.dialstatus == raw["dialstatus"]
        elif isinstance(event, ChannelHangupRequest):
            assert event.cause == raw.get("cause")
            assert event.tech_cause == raw.get("tech_cause")
            assert event.soft is bool(raw.get("soft"))
        elif isinstance(event, ChannelDestroyed):
            assert event.cause == raw["cause"]
            assert event.cause_txt == raw["cause_txt"]
            assert event.tech_cause == raw.get("tech_cause")
        elif isinstance(event, ChannelEnteredBridge | ChannelLeftBridge):
            assert event.bridge_id == raw["bridge"]["id"]


def check_channel(channel: Channel, raw: dict[str, Any]) -> None:
    assert channel.id == raw["id"]
    assert channel.name == raw["name"]
    assert channel.state == raw["state"]
    assert channel.protocol_id == raw.get("protocol_id")
    assert channel.caller_number == raw["caller"]["number"]
    assert channel.caller_name == raw["caller"]["name"]
    assert channel.connected_number == raw["connected"]["number"]
    assert channel.dialplan_exten == raw["dialplan"]["exten"]
    assert channel.dialplan_context == raw["dialplan"]["context"]
    assert channel.creationtime == raw["creationtime"]


# --- scenario sequences -------------------------------------------------------------------------


def test_answered_call_then_far_end_bye() -> None:
    events = scenario("a_answer_bye")
    assert short(events) == [
        "Dial",
        "ChannelStateChange",
        "Dial",
        "ChannelStateChange",
        "Dial",
        "StasisStart",
        "ChannelHangupRequest",
        "StasisEnd",
        "ChannelDestroyed",
    ]
    assert [e.dialstatus for e in events if isinstance(e, Dial)] == ["", "RINGING", "ANSWER"]
    start = events[5]
    assert isinstance(start, StasisStart)
    assert start.args == ("outbound", "a_answer_bye")
    request = events[6]
    assert isinstance(request, ChannelHangupRequest)
    assert (request.cause, request.tech_cause, request.soft) == (None, None, False)
    end = events[-1]
    assert isinstance(end, ChannelDestroyed)
    assert end.cause == 0
    assert len({e.channel_id for e in events}) == 1


@pytest.mark.parametrize(
    ("name", "cause", "tech", "dialstatus"),
    [
        ("b_busy", 17, 486, "BUSY"),
        ("d_reject_404", 1, 404, "NOANSWER"),
        ("d_reject_403", 21, 403, "NOANSWER"),
        ("e_digest_dynamic_wrong_secret", 21, 403, "NOANSWER"),
        ("c_noanswer", 19, 480, "RINGING"),
    ],
)
def test_failed_leg_ends_in_channel_destroyed_without_stasis_start(
    name: str, cause: int, tech: int, dialstatus: str
) -> None:
    events = scenario(name)
    assert not any(isinstance(e, StasisStart | StasisEnd) for e in events)
    last = events[-1]
    assert isinstance(last, ChannelDestroyed)
    assert (last.cause, last.tech_cause) == (cause, tech)
    assert [e.dialstatus for e in events if isinstance(e, Dial)][-1] == dialstatus
    requests = [e for e in events if isinstance(e, ChannelHangupRequest)]
    if requests:  # a ring timeout has none: Asterisk cancels
        assert (requests[0].cause, requests[0].tech_cause) == (cause, tech)


def test_busy_destroyed_has_cause_text() -> None:
    last = scenario("b_busy")[-1]
    assert isinstance(last, ChannelDestroyed)
    assert last.cause_txt == "User busy"


def test_bridge_scenario() -> None:
    events = scenario("f_bridge")
    entered = [e for e in events if isinstance(e, ChannelEnteredBridge)]
    left = [e for e in events if isinstance(e, ChannelLeftBridge)]
    destroyed = [e for e in events if isinstance(e, BridgeDestroyed)]
    assert len(entered) == len(left) == 2
    bridge_id = "ef5c75a4-c03b-4652-b025-030efb546878"
    assert {e.bridge_id for e in entered + left} == {bridge_id}
    assert [e.bridge_id for e in destroyed] == [bridge_id]
    assert events[-1] == destroyed[0]
    soft = [e for e in events if isinstance(e, ChannelHangupRequest)]
    assert [(e.cause, e.soft) for e in soft] == [(32, True), (32, True)]
    ends = [e for e in events if isinstance(e, ChannelDestroyed)]
    assert [e.cause for e in ends] == [16, 16]


@pytest.mark.parametrize(
    "name",
    [
        "g_inbound_answer",
        "g_inbound_busy",
        "g_inbound_code21",
        "g_inbound_congestion",
        "g_inbound_noring_busy",
        "g_inbound_normal",
        "g_inbound_rejected",
    ],
)
def test_inbound_stasis_start(name: str) -> None:
    events = scenario(name)
    start = events[0]
    assert isinstance(start, StasisStart)
    assert start.args == ("ani_2way", "12345")
    assert start.channel.state == "Ring"
    assert start.channel.caller_number == "4915112345"
    assert start.channel.dialplan_exten == "ani_2way_12345"
    assert isinstance(events[-1], StasisEnd)
    assert not any(isinstance(e, ChannelDestroyed) for e in events)


def test_asterisk_16_has_no_tech_cause_and_cause_16_on_bye() -> None:
    lines = trace_lines(TRACES / "versions" / "asterisk-16" / "events.jsonl")
    events = [e for e in map(parse_event, lines) if e is not None]
    hangups = [e for e in events if isinstance(e, ChannelHangupRequest | ChannelDestroyed)]
    assert hangups
    assert all(e.tech_cause is None for e in hangups)
    first_bye = next(e for e in events if isinstance(e, ChannelHangupRequest))
    assert first_bye.cause == 16


# --- what must come out as None -----------------------------------------------------------------


CHANNEL = {"id": "c1", "name": "PJSIP/x-1", "state": "Up"}


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "not json",
        "{",
        "[]",
        "null",
        '"StasisStart"',
        '{"type": "StasisStart"',  # truncated
        b"\xff\xfe",
        b'{"type":"Dial","peer":{"id":"\xff"}}',  # invalid UTF-8
        '{"type":"Dial","peer":' + "[" * 100_000 + "]" * 100_000 + "}",  # deep nesting
        '{"type": "ChannelVarset", "variable": "X", "value": "StasisStart"}',
        '{"type": "ApplicationReplaced", "application": "twoway-callback"}',
        '{"type": "ChannelDtmfReceived", "channel": {"id": "c1"}, "digit": "1"}',
        '{"type": 17, "channel": {"id": "c1"}}',
        '{"channel": {"id": "c1"}}',
        '{"type": "StasisStart", "args": []}',  # no channel
        '{"type": "StasisStart", "channel": {"name": "no id"}}',
        '{"type": "StasisStart", "channel": "c1"}',
        '{"type": "Dial", "channel": {"id": "c1"}}',  # Dial routes by peer
        '{"type": "ChannelEnteredBridge", "channel": {"id": "c1"}}',  # no bridge
        '{"type": "BridgeDestroyed", "bridge": {"name": "no id"}}',
    ],
)
def test_unwanted_or_malformed_gives_none(raw: str | bytes) -> None:
    assert parse_event(raw) is None


def test_malformed_is_logged_at_debug_without_content(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="stasis_app.ari.events")
    assert parse_event('{"type": "StasisStart", "channel": {"name": "secret-ish"}}') is None
    assert parse_event('{"type": "StasisStart", "channel": ') is None
    assert parse_event("garbage without a type") is None
    messages = [r for r in caplog.records if r.levelno == logging.DEBUG]
    assert len(messages) == 3
    assert all(getattr(r, "action", None) == "ari_event_malformed" for r in messages)
    assert "secret-ish" not in caplog.text


def test_channel_varset_rejected_without_json_decode(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object, **kwargs: object) -> object:
        raise AssertionError("json.loads called for an unwanted event")

    monkeypatch.setattr(json, "loads", boom)  # the module events.py decodes with
    varset = (
        '{"variable":"RTPAUDIOQOS","value":"ssrc=1;themssrc=0","type":"ChannelVarset",'
        '"timestamp":"t","channel":{"id":"c1","name":"PJSIP/x","state":"Up",'
        '"dialplan":{"context":"c","exten":"s","app_name":"AppDial2","app_data":"Dial"}}}'
    )
    assert parse_event(varset) is None
    assert parse_event(varset.replace('"type":"ChannelVarset"', '"type" : "ChannelVarset"')) is None
    assert parse_event(varset.encode()) is None


def test_the_call_flow_set_drops_bridge_events_without_json_decode(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bridge_events = [
        line
        for line in trace_lines(TRACES / "f_bridge.events.jsonl")
        if json.loads(line)["type"]
        in ("ChannelEnteredBridge", "ChannelLeftBridge", "BridgeDestroyed")
    ]
    kept = [e for e in scenario("a_answer_bye") if type(e).__name__ in CALL_EVENTS]
    assert bridge_events and kept
    again = [
        parse_event(line, CALL_EVENTS) for line in trace_lines(TRACES / "a_answer_bye.events.jsonl")
    ]
    assert [e for e in again if e is not None] == kept

    def boom(*args: object, **kwargs: object) -> object:
        raise AssertionError("json.loads called for an unwanted event")

    monkeypatch.setattr(json, "loads", boom)
    assert all(parse_event(line, CALL_EVENTS) is None for line in bridge_events)


def test_prefilter_stays_exact_in_tricky_cases() -> None:
    # a nested "type" key with a wanted value ahead of the real one: decoded, correctly ignored
    tricky = json.dumps(
        {
            "variable": "x",
            "channel": {"id": "c1", "channelvars": {"type": "StasisStart"}},
            "type": "ChannelVarset",
        }
    )
    assert parse_event(tricky) is None
    # a nested "type" key with an unwanted value ahead of the real, wanted one
    nested_first = json.dumps(
        {
            "channel": {**CHANNEL, "channelvars": {"type": "ChannelVarset"}},
            "type": "StasisEnd",
            "timestamp": "t",
        }
    )
    event = parse_event(nested_first)
    assert isinstance(event, StasisEnd)
    assert event.channel_id == "c1"
    # whitespace around the colon, pretty-printed, and a type spelled with \u escapes
    assert isinstance(
        parse_event(json.dumps({"type": "StasisEnd", "channel": CHANNEL}, indent=2)), StasisEnd
    )
    spaced = '{"type"  :\n "StasisEnd", "channel": {"id": "c1"}}'
    assert isinstance(parse_event(spaced), StasisEnd)
    escaped = '{"type": "\\u0053tasisEnd", "channel": {"id": "c1"}}'
    assert isinstance(parse_event(escaped), StasisEnd)
    # a string *value* "type" is not a key
    assert parse_event('{"variable": "type", "value": "Dial", "type": "ChannelVarset"}') is None


# --- tolerance ----------------------------------------------------------------------------------


def test_minimal_events_from_old_or_sparse_servers() -> None:
    start = parse_event('{"type":"StasisStart","channel":{"id":"c1"}}')
    assert start == StasisStart(channel=Channel(id="c1"))
    assert isinstance(start, StasisStart)
    assert start.channel.protocol_id is None  # before 16.27
    assert start.channel.dialplan_exten is None
    destroyed = parse_event('{"type":"ChannelDestroyed","channel":{"id":"c1"}}')
    # never drop a ChannelDestroyed for a missing cause: the leg would leak
    assert destroyed == ChannelDestroyed(channel=Channel(id="c1"), cause=0, cause_txt="")
    hangup = parse_event(
        '{"type":"ChannelHangupRequest","cause":"17","soft":1,"channel":{"id":"c"}}'
    )
    assert isinstance(hangup, ChannelHangupRequest)
    assert (hangup.cause, hangup.tech_cause, hangup.soft) == (17, None, False)
    dial = parse_event('{"type":"Dial","peer":{"id":"p1","caller":null,"dialplan":7}}')
    assert dial == Dial(peer=Channel(id="p1"), dialstatus="")
    args = parse_event('{"type":"StasisStart","args":["a",2],"channel":{"id":"c1"}}')
    assert isinstance(args, StasisStart)
    assert args.args == ("a", "2")


def test_events_and_models_are_frozen_and_slotted() -> None:
    channel = Channel(id="c1")
    event = StasisEnd(channel=channel)
    with pytest.raises(FrozenInstanceError):
        event.channel = channel  # type: ignore[misc]
    assert not hasattr(event, "__dict__")
    assert not hasattr(channel, "__dict__")
    assert hash(event) == hash(StasisEnd(channel=Channel(id="c1")))


def test_bridge_from_json() -> None:
    raw = {
        "id": "b1",
        "technology": "simple_bridge",
        "bridge_type": "mixing",
        "channels": ["c1", "c2"],
        "name": "",
        "creationtime": "t",
    }
    assert Bridge.from_json(raw) == Bridge(id="b1", bridge_type="mixing", channels=("c1", "c2"))
    assert Bridge.from_json({"id": "b2"}) == Bridge(id="b2", bridge_type="", channels=())
    with pytest.raises(ValueError, match="without an id"):
        Bridge.from_json({"channels": []})
    with pytest.raises(ValueError, match="without an id"):
        Channel.from_json({"id": ""})
