"""The simulator replays the recorded Asterisk traces (ari-traces/ at the repository root).

Each test drives the simulator the way the recording's rest.jsonl drove Asterisk 22, then
compares what arrived on the event WebSocket with the recorded events: types in order, the key
set of every event and of its channel, causes, tech_cause, dialstatus, soft, args, channel
state, and the ChannelVarset variables. The versions/ probes check the 16 / 20 / 22 knob.
The client is plain aiohttp, not the project's ARI client.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ari_simulator import Script, Simulator, SimulatorConfig

TRACES = Path(__file__).resolve().parents[1] / "ari-traces"

APP = "twoway-callback"
MARKER = "SimulatorTestMarker"
DYNAMIC = "/asterisk/config/dynamic/res_pjsip"
Event = dict[str, Any]


def load_events(path: Path) -> list[Event]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def trace(name: str) -> tuple[list[Event], list[Event], dict[str, Any]]:
    """(events, rest calls, summary) of a recorded scenario."""
    summary = json.loads((TRACES / f"{name}.summary.json").read_text())
    return (
        load_events(TRACES / f"{name}.events.jsonl"),
        load_events(TRACES / f"{name}.rest.jsonl"),
        summary,
    )


class Ari:
    """REST calls and the app's event WebSocket over a plain aiohttp session."""

    def __init__(self, base_url: str, session: aiohttp.ClientSession) -> None:
        self.base = base_url + "/ari"
        self.session = session
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None

    async def connect(self, app: str = APP) -> None:
        self._ws = await self.session.ws_connect(f"{self.base}/events?app={app}")
        self._reader = asyncio.create_task(self._read(self._ws))

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for message in ws:
            if message.type == aiohttp.WSMsgType.TEXT:
                self.events.put_nowait(json.loads(message.data))

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            await self._reader

    async def call(
        self,
        method: str,
        path: str,
        params: dict[str, str] | None = None,
        body: Any = None,
    ) -> tuple[int, Any]:
        async with self.session.request(
            method, self.base + path, params=params, json=body
        ) as response:
            text = await response.text()
            return response.status, json.loads(text) if text else None

    async def next_event(self, timeout: float = 5.0) -> Event:
        return await asyncio.wait_for(self.events.get(), timeout)

    async def until(self, done: Callable[[Event], bool], timeout: float = 5.0) -> list[Event]:
        """Events up to and including the first one ``done`` accepts."""
        got: list[Event] = []
        while not got or not done(got[-1]):
            got.append(await self.next_event(timeout))
        return got


Harness = tuple[Simulator, Ari]
MakeHarness = Callable[..., Awaitable[Harness]]


@pytest.fixture
async def harness() -> AsyncIterator[MakeHarness]:
    """A started simulator (config from keyword arguments) and a connected client."""
    opened: list[tuple[Simulator, aiohttp.ClientSession, Ari]] = []

    async def make(**config: Any) -> Harness:
        sim = Simulator(SimulatorConfig(**config))
        base_url = await sim.start()
        session = aiohttp.ClientSession(
            headers={"Authorization": aiohttp.encode_basic_auth("twoway", "twoway")}
        )
        ari = Ari(base_url, session)
        opened.append((sim, session, ari))
        await ari.connect()
        await sim.wait_for(lambda: sim.app_connected(APP))
        return sim, ari

    yield make
    for sim, session, ari in opened:
        await ari.close()
        await session.close()
        await sim.stop()


async def drain(sim: Simulator, ari: Ari) -> list[Event]:
    """Everything still coming: a marker injected now arrives after all events queued before
    it, so nothing is missed and no sleep is needed to prove an event did *not* come."""
    await sim.inject({"type": MARKER})
    events = await ari.until(lambda e: e["type"] == MARKER)
    return events[:-1]


def is_type(kind: str) -> Callable[[Event], bool]:
    return lambda event: bool(event["type"] == kind)


def channel_of(event: Event) -> dict[str, Any]:
    found = event.get("channel") or event.get("peer") or {}
    assert isinstance(found, dict)
    return found


def shape(event: Event) -> tuple[Any, ...]:
    """What must match the recording, per event."""
    ch = channel_of(event)
    return (
        event["type"],
        tuple(sorted(event)),
        tuple(sorted(ch)),
        ch.get("state"),
        event.get("cause"),
        event.get("cause_txt"),
        event.get("tech_cause"),
        event.get("soft"),
        event.get("dialstatus"),
        tuple(event.get("args", ())),
        event.get("variable"),
    )


def assert_like_trace(got: list[Event], recorded: list[Event]) -> None:
    def types(events: list[Event]) -> list[str]:
        return [e["type"] for e in events if e["type"] != "ChannelVarset"]

    assert types(got) == types(recorded)  # the brief's contract, varsets aside
    assert [shape(e) for e in got] == [shape(e) for e in recorded]  # and all the details
    for event in got:
        assert event["application"] == APP
        assert event["asterisk_id"] == "02:fc:00:00:00:01"


def originate_params(rest: dict[str, Any], **override: str) -> dict[str, str]:
    return {**rest["params"], **override}


def assert_like_originate_response(got: dict[str, Any], recorded: dict[str, Any]) -> None:
    assert got.keys() == recorded.keys()
    for key in ("state", "caller", "connected", "accountcode", "dialplan", "language"):
        assert got[key] == recorded[key], key


# --- one leg that never answers ---------------------------------------------------------


@pytest.mark.parametrize(
    ("scenario", "script", "config", "override"),
    [
        ("b_busy", Script(action="busy"), {}, {}),
        ("c_noanswer", Script(action="noanswer"), {}, {"timeout": "1"}),
        ("d_reject_403", Script(action="reject403"), {}, {}),
        ("d_reject_404", Script(action="reject404"), {}, {}),
        ("e_digest_static_noauth", Script(), {"trunk_requires_auth": True}, {}),
    ],
)
async def test_failed_leg_like_trace(
    harness: MakeHarness,
    scenario: str,
    script: Script,
    config: dict[str, Any],
    override: dict[str, str],
) -> None:
    recorded, rest, _ = trace(scenario)
    sim, ari = await harness(**config)
    sim.script("87654321", script)

    status, channel = await ari.call("POST", "/channels", originate_params(rest[0], **override))

    assert status == rest[0]["status"] == 200
    assert_like_originate_response(channel, rest[0]["response"])
    got = await ari.until(is_type("ChannelDestroyed"))
    got += await drain(sim, ari)
    assert_like_trace(got, recorded)
    assert all(channel_of(e)["id"] == channel["id"] for e in got)
    assert channel["id"] not in sim.channels
    assert not sim.channel(channel["id"]).answered


# --- answered, then the far end hangs up ------------------------------------------------


async def test_a_answer_bye_like_trace(harness: MakeHarness) -> None:
    recorded, rest, _ = trace("a_answer_bye")
    sim, ari = await harness()
    sim.script("87654321", Script(answer_after_ms=50))

    status, channel = await ari.call("POST", "/channels", rest[0]["params"], rest[0]["body"])
    assert status == 200
    assert_like_originate_response(channel, rest[0]["response"])
    got = await ari.until(is_type("StasisStart"))
    for call in rest[1:]:  # CHANNEL(pjsip,call-id), then an unreadable header function
        status, body = await ari.call("GET", f"/channels/{channel['id']}/variable", call["params"])
        assert status == call["status"]
        expected = call["response"]
        if status == 200:
            expected = {"value": channel["protocol_id"]}  # ours, not the recorded Call-ID
        assert body == expected
    assert sim.channels[channel["id"]].variables == rest[0]["body"]["variables"]

    await sim.far_end_hangup(channel["id"])
    got += await ari.until(is_type("ChannelDestroyed"))
    got += await drain(sim, ari)
    assert_like_trace(got, recorded)


# --- app hangs up an answered call ------------------------------------------------------


@pytest.mark.parametrize(
    ("scenario", "dial_ringing_first"),
    [("x_channelid", True), ("x_callid_header", False)],  # both orders were recorded
)
async def test_app_hangup_like_trace(
    harness: MakeHarness, scenario: str, dial_ringing_first: bool
) -> None:
    recorded, rest, _ = trace(scenario)
    sim, ari = await harness()
    sim.script("87654321", Script(answer_after_ms=50, dial_ringing_first=dial_ringing_first))

    status, channel = await ari.call("POST", "/channels", rest[0]["params"], rest[0]["body"])
    assert status == 200
    if "channelId" in rest[0]["params"]:
        assert channel["id"] == rest[0]["response"]["id"] == "lab-uid-0c56a7"
    got = await ari.until(is_type("StasisStart"))
    status, body = await ari.call("GET", f"/channels/{channel['id']}/variable", rest[1]["params"])
    assert (status, body) == (200, {"value": channel["protocol_id"]})
    status, _ = await ari.call("DELETE", f"/channels/{channel['id']}")
    assert status == rest[2]["status"] == 204

    got += await ari.until(is_type("ChannelDestroyed"))
    got += await drain(sim, ari)
    assert_like_trace(got, recorded)
    assert {channel_of(e)["id"] for e in got} == {channel["id"]}
    ended = sim.channel(channel["id"])
    assert (ended.hangup_reason, ended.hangup_cause, ended.end) == (None, 16, "app_hangup")


# --- per-call digest identity through dynamic configuration -----------------------------


@pytest.mark.parametrize("scenario", ["e_digest_dynamic", "e_digest_dynamic_wrong_secret"])
async def test_digest_dynamic_like_trace(harness: MakeHarness, scenario: str) -> None:
    recorded, rest, summary = trace(scenario)
    username = next(f["value"] for f in rest[0]["body"]["fields"] if f["attribute"] == "username")
    sim, ari = await harness(accounts={username: summary["sipp_expected_password"]})
    put_auth, put_endpoint, originate, *later = rest

    for call in (put_auth, put_endpoint):  # PUT answers: every attribute, recorded values
        status, body = await ari.call("PUT", call["path"], body=call["body"])
        assert (status, body) == (call["status"], call["response"])
    status, channel = await ari.call("POST", "/channels", originate["params"], originate["body"])
    assert status == 200
    assert channel["name"].startswith("PJSIP/" + originate["params"]["endpoint"].split("@")[1])

    if summary["wrong_secret"]:
        got = await ari.until(is_type("ChannelDestroyed"))
    else:
        got = await ari.until(is_type("StasisStart"))
        status, body = await ari.call(
            "GET", f"/channels/{channel['id']}/variable", later[0]["params"]
        )
        assert (status, body) == (200, {"value": channel["protocol_id"]})
        await sim.far_end_hangup(channel["id"])
        got += await ari.until(is_type("ChannelDestroyed"))
    got += await drain(sim, ari)
    assert_like_trace(got, recorded)

    for call in [c for c in later if c["method"] == "DELETE"]:
        status, _ = await ari.call("DELETE", call["path"])
        assert status == call["status"] == 204
    assert sim.dynamic_objects == {}


# --- two legs in a mixing bridge --------------------------------------------------------


async def test_f_bridge_like_trace(harness: MakeHarness) -> None:
    recorded, rest, _ = trace("f_bridge")
    sim, ari = await harness()
    # both INVITEs go out before the 180s come back; leg 1 answers first (as recorded)
    sim.script("87654321", Script(setup_ms=200, answer_after_ms=100))
    sim.script("87654322", Script(setup_ms=200, answer_after_ms=120))
    ids: dict[str, str] = {}  # recorded channel / bridge id -> ours

    def ours(text: str) -> str:
        for old, new in ids.items():
            text = text.replace(old, new)
        return text

    for call in rest:
        method, path = call["method"], ours(call["path"])
        params = {k: ours(v) for k, v in (call["params"] or {}).items()}
        if (method, path) == ("POST", "/bridges"):
            await sim.wait_for(lambda: sum(c.in_stasis for c in sim.channels.values()) == 2)
        status, body = await ari.call(method, path, params or None, call["body"])
        assert status == call["status"], (method, path)
        expected = call["response"]
        if (method, path) in (("POST", "/channels"), ("POST", "/bridges")):
            ids[expected["id"]] = body["id"]
        if method == "GET" and path.startswith("/bridges/"):
            assert body["channels"] == [ids[c] for c in expected["channels"]]
            volatile = ("id", "channels", "creationtime")
            assert {k: v for k, v in body.items() if k not in volatile} == {
                k: v for k, v in expected.items() if k not in volatile
            }
        if method == "GET" and path.startswith("/channels/"):
            # leg b after leg a hung up: still Up, still in Stasis, alone in the bridge
            assert body["state"] == expected["state"] == "Up"
            assert body["dialplan"] == expected["dialplan"]

    got = await ari.until(is_type("BridgeDestroyed"))
    got += await drain(sim, ari)
    assert_like_trace(got, recorded)
    assert [channel_of(e).get("id") for e in got] == [
        ids.get(channel_of(e).get("id", ""), channel_of(e).get("id")) for e in recorded
    ]
    assert [e["bridge"]["channels"] for e in got if "bridge" in e] == [
        [ids[c] for c in e["bridge"]["channels"]] for e in recorded if "bridge" in e
    ]
    assert sim.channels == {} and sim.bridges == {}


# --- inbound ani_2way_<CLD> calls -------------------------------------------------------


@pytest.mark.parametrize(
    ("scenario", "sip_final"),
    [
        ("g_inbound_busy", 486),
        ("g_inbound_noring_busy", 486),
        ("g_inbound_rejected", 403),
        ("g_inbound_congestion", 503),
        ("g_inbound_normal", 603),
        ("g_inbound_code21", 403),
        ("g_inbound_answer", None),
    ],
)
async def test_inbound_like_trace(
    harness: MakeHarness, scenario: str, sip_final: int | None
) -> None:
    recorded, rest, summary = trace(scenario)
    sim, ari = await harness()
    caller = summary["caller"]

    channel_id = await sim.inbound_call(
        caller["number"], "ani_2way_12345", caller_name=caller["name"]
    )
    got = await ari.until(is_type("StasisStart"))
    start = got[0]["channel"]
    assert got[0]["args"] == summary["stasis_args"]
    assert (start["caller"], start["dialplan"]) == (summary["caller"], summary["dialplan"])
    for call in rest:
        status, _ = await ari.call(
            call["method"],
            call["path"].replace(summary["channel_id"], channel_id),
            call["params"],
        )
        assert status == call["status"]
    if scenario == "g_inbound_answer":
        assert sim.channels[channel_id].state == "Up"
        await sim.far_end_hangup(channel_id)  # the caller sends BYE
    got += await ari.until(is_type("StasisEnd"))
    got += await drain(sim, ari)  # and no ChannelDestroyed: the channel left the app
    assert_like_trace(got, recorded)

    ended = sim.channel(channel_id)
    assert ended.ended and channel_id not in sim.channels
    assert ended.sip_final == sip_final
    assert ended.rang == any(c["path"].endswith("/ring") for c in rest)
    assert ended.hangup_reason == ((rest[-1]["params"] or {}).get("reason") if rest else None)


# --- the version knob: versions/asterisk-{16,20,22} -------------------------------------


def version_probe(version: int) -> tuple[dict[str, list[Event]], dict[str, Any]]:
    folder = TRACES / "versions" / f"asterisk-{version}"
    by_probe: dict[str, list[Event]] = {}
    for event in load_events(folder / "events.jsonl"):
        probe = event.pop("_probe")
        event.pop("_t", None)
        by_probe.setdefault(probe, []).append(event)
    return by_probe, json.loads((folder / "summary.json").read_text())


@pytest.mark.parametrize("version", [16, 20, 22])
async def test_versions_noanswer_and_far_end_bye(harness: MakeHarness, version: int) -> None:
    recorded, _ = version_probe(version)
    sim, ari = await harness(version=version)

    # the probes ran with their own order of Dial(RINGING) / ChannelStateChange(Ringing)
    def ringing_first(probe: str) -> bool:
        kinds = [(e["type"], e.get("dialstatus")) for e in recorded[probe]]
        return kinds.index(("Dial", "RINGING")) < kinds.index(("ChannelStateChange", None))

    sim.script("1", Script(action="noanswer", dial_ringing_first=ringing_first("ring_timeout_3s")))
    sim.script(
        "2",
        Script(answer_after_ms=20, dial_ringing_first=ringing_first("answered_sipp_bye")),
    )
    start = next(e for e in recorded["answered_sipp_bye"] if e["type"] == "StasisStart")
    params = {"app": APP, "appArgs": ",".join(start["args"]), "callerId": "4930123456"}

    await ari.call(
        "POST", "/channels", {**params, "endpoint": "PJSIP/1@softswitch", "timeout": "1"}
    )
    got = await ari.until(is_type("ChannelDestroyed"))
    assert_like_trace(got, recorded["ring_timeout_3s"])

    _, answered = await ari.call("POST", "/channels", {**params, "endpoint": "PJSIP/2@softswitch"})
    got = await ari.until(is_type("StasisStart"))
    await sim.far_end_hangup(answered["id"])
    got += await ari.until(is_type("ChannelDestroyed"))
    got += await drain(sim, ari)
    assert_like_trace(got, recorded["answered_sipp_bye"])

    destroyed = got[-1]
    if version == 16:
        assert (destroyed["cause"], "tech_cause" in destroyed) == (16, False)
    else:
        assert destroyed["cause"] == 0


@pytest.mark.parametrize("version", [16, 20, 22])
@pytest.mark.parametrize(
    ("probe", "script"),
    [("busy_486", Script(action="busy")), ("notfound_404", Script(action="reject404"))],
)
async def test_versions_failures(
    harness: MakeHarness, version: int, probe: str, script: Script
) -> None:
    recorded, _ = version_probe(version)
    sim, ari = await harness(version=version)
    sim.script("1", script)
    await ari.call(
        "POST",
        "/channels",
        {"endpoint": "PJSIP/1@softswitch", "app": APP, "callerId": "4930123456"},
    )
    got = await ari.until(is_type("ChannelDestroyed"))
    got += await drain(sim, ari)
    assert_like_trace(got, recorded[probe])


@pytest.mark.parametrize("version", [16, 20, 22])
async def test_versions_dynamic_config(harness: MakeHarness, version: int) -> None:
    """The PUT answers of the probe (auth: 6 or 12 attributes; endpoint: 123 or 138)."""
    _, summary = version_probe(version)
    probe = summary["dynconfig"]
    _, ari = await harness(version=version, accounts={"902": "lab-902"})
    auth = [
        {"attribute": "auth_type", "value": "md5"},
        {"attribute": "username", "value": "902"},
        {"attribute": "realm", "value": "softswitch.lab"},
        {"attribute": "md5_cred", "value": "163c50af43e8747f0f39bb0feda9bf87"},
    ]
    status, body = await ari.call("PUT", f"{DYNAMIC}/auth/p1", body={"fields": auth})
    assert [status, body] == probe["put_auth_md5"]
    endpoint = [
        {"attribute": k, "value": v}
        for k, v in [
            ("transport", "transport-udp"),
            ("context", "from-softswitch"),
            ("disallow", "all"),
            ("allow", "ulaw,alaw"),
            ("direct_media", "no"),
            ("aors", "softswitch"),
            ("outbound_auth", "p1"),
            ("media_address", "127.0.0.1"),
            ("bind_rtp_to_media_address", "yes"),
            ("rtp_symmetric", "yes"),
        ]
    ]
    status, body = await ari.call("PUT", f"{DYNAMIC}/endpoint/p1", body={"fields": endpoint})
    assert [status, body] == probe["put_endpoint"]
    status, body = await ari.call("GET", f"{DYNAMIC}/endpoint/softswitch")
    assert status == 200
    assert sorted(f["attribute"] for f in body) == probe["get_endpoint_attrs"]

    bad = [*auth[:3], {"attribute": "md5_cred", "value": "abc"}]
    status, body = await ari.call("PUT", f"{DYNAMIC}/auth/p1bad", body={"fields": bad})
    assert [status, body] == probe["put_auth_md5_badlen"]
    digest = [
        {"attribute": "auth_type", "value": "digest"},
        *auth[1:3],
        {"attribute": "password_digest", "value": "MD5:163c50af43e8747f0f39bb0feda9bf87"},
    ]
    status, body = await ari.call("PUT", f"{DYNAMIC}/auth/p1dig", body={"fields": digest})
    assert [status, body] == probe["put_auth_digest_pwdigest"]
    status, body = await ari.call(
        "PUT",
        f"{DYNAMIC}/endpoint/softswitch",
        body={"fields": [{"attribute": "context", "value": "other"}]},
    )
    assert [status, body] == probe["update_config_endpoint"]
    status, body = await ari.call("DELETE", f"{DYNAMIC}/endpoint/softswitch")
    assert [status, body] == probe["delete_config_endpoint"]
    status, body = await ari.call("GET", f"{DYNAMIC}/auth/nosuch")
    assert [status, body] == probe["get_missing"]


@pytest.mark.parametrize("version", [16, 20, 22])
async def test_versions_info_ping_application(harness: MakeHarness, version: int) -> None:
    _, summary = version_probe(version)
    _, ari = await harness(version=version)
    status, info = await ari.call("GET", "/asterisk/info")
    assert status == summary["info"]["status"]
    assert {k: sorted(v) for k, v in info.items()} == summary["info"]["keys"]
    assert info["system"]["version"] == summary["version"].split()[-1]
    status, app = await ari.call("GET", f"/applications/{APP}")
    assert (status, sorted(app)) == (
        summary["application"]["status"],
        summary["application"]["keys"],
    )
    status, ping = await ari.call("GET", "/asterisk/ping")
    assert (status, sorted(ping)) == (summary["ping"], ["asterisk_id", "ping", "timestamp"])
