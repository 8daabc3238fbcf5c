"""The simulator's behaviour beyond the recorded traces: auth, error shapes, WebSocket
takeover, drop and restart, digest checks, bridges, control routes, the Python API.

Plain aiohttp client; events are awaited with bounded timeouts, never slept for.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from ari_simulator import (
    Script,
    Simulator,
    SimulatorConfig,
    SimulatorError,
    run_simulator,
)

APP = "twoway-callback"
AUTH = {"Authorization": aiohttp.encode_basic_auth("twoway", "twoway")}
DYNAMIC = "/asterisk/config/dynamic/res_pjsip"
Event = dict[str, Any]


class Client:
    """REST over one aiohttp session; event sockets opened on demand."""

    def __init__(self, base_url: str, session: aiohttp.ClientSession) -> None:
        self.base_url = base_url
        self.session = session
        self.sockets: list[EventSocket] = []

    async def call(
        self, method: str, path: str, params: dict[str, str] | None = None, body: Any = None
    ) -> tuple[int, Any]:
        async with self.session.request(
            method, f"{self.base_url}/ari{path}", params=params, json=body
        ) as response:
            text = await response.text()
            return response.status, json.loads(text) if text else None

    async def originate(self, number: str, **params: str) -> dict[str, Any]:
        query = {"endpoint": f"PJSIP/{number}@softswitch", "app": APP, **params}
        status, body = await self.call("POST", "/channels", query)
        assert status == 200, body
        assert isinstance(body, dict)
        return body

    async def events(self, app: str = APP) -> EventSocket:
        ws = await self.session.ws_connect(f"{self.base_url}/ari/events?app={app}")
        sock = EventSocket(ws)
        self.sockets.append(sock)
        return sock


class EventSocket:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.ws:
            if message.type == aiohttp.WSMsgType.TEXT:
                self.queue.put_nowait(json.loads(message.data))
        self.queue.put_nowait(None)  # closed

    async def next(self, timeout: float = 5.0) -> Event | None:
        return await asyncio.wait_for(self.queue.get(), timeout)

    async def until(self, kind: str, timeout: float = 5.0) -> list[Event]:
        got: list[Event] = []
        while True:
            event = await self.next(timeout)
            assert event is not None, f"socket closed before {kind}: {got}"
            got.append(event)
            if event["type"] == kind:
                return got

    async def closed(self, timeout: float = 5.0) -> list[Event]:
        """Events until the server closes the socket."""
        got: list[Event] = []
        while (event := await self.next(timeout)) is not None:
            got.append(event)
        return got

    async def close(self) -> None:
        await self.ws.close()
        await self._reader


def types(events: list[Event]) -> list[str]:
    return [e["type"] for e in events if e["type"] != "ChannelVarset"]


async def quiet(sim: Simulator, sock: EventSocket) -> list[Event]:
    """What arrives before a marker injected now (proves absence without sleeping)."""
    await sim.inject({"type": "Marker"})
    return (await sock.until("Marker"))[:-1]


Make = Callable[..., Awaitable[tuple[Simulator, Client]]]


@pytest.fixture
async def make() -> AsyncIterator[Make]:
    opened: list[tuple[Simulator, aiohttp.ClientSession, Client]] = []

    async def start(**config: Any) -> tuple[Simulator, Client]:
        sim = Simulator(SimulatorConfig(**config))
        base_url = await sim.start()
        session = aiohttp.ClientSession(headers=AUTH)
        client = Client(base_url, session)
        opened.append((sim, session, client))
        return sim, client

    yield start
    for sim, session, client in opened:
        for sock in client.sockets:
            await sock.close()
        await session.close()
        await sim.stop()


async def connected(make: Make, **config: Any) -> tuple[Simulator, Client, EventSocket]:
    sim, client = await make(**config)
    sock = await client.events()
    await sim.wait_for(lambda: sim.app_connected(APP))
    return sim, client, sock


# --- authentication and error shapes -----------------------------------------------------


async def test_auth_basic_and_api_key(make: Make) -> None:
    sim, client = await make()
    async with aiohttp.ClientSession() as anonymous:
        url = f"{client.base_url}/ari/channels"
        async with anonymous.get(url) as response:
            assert response.status == 401
            assert await response.json() == {"message": "Authentication required"}
            assert response.headers["WWW-Authenticate"] == 'Basic realm="Asterisk REST Interface"'
        wrong = {"Authorization": aiohttp.encode_basic_auth("twoway", "nope")}
        async with anonymous.get(url, headers=wrong) as response:
            assert response.status == 401
        async with anonymous.get(url, params={"api_key": "twoway:nope"}) as response:
            assert response.status == 401
        async with anonymous.get(url, params={"api_key": "twoway:twoway"}) as response:
            assert (response.status, await response.json()) == (200, [])
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await anonymous.ws_connect(f"{client.base_url}/ari/events?app={APP}")
        assert refused.value.status == 401
        ws = await anonymous.ws_connect(
            f"{client.base_url}/ari/events?app={APP}&api_key=twoway:twoway"
        )
        await sim.wait_for(lambda: sim.app_connected(APP))
        await ws.close()
    # every ARI request is logged, api_key left out of the query
    assert [(r.method, r.path, r.status) for r in sim.requests] == [
        ("GET", "/channels", 401)
    ] * 3 + [("GET", "/channels", 200)]
    assert all("api_key" not in r.query for r in sim.requests)


@pytest.mark.parametrize(
    ("method", "path", "params", "status", "body"),
    [
        ("GET", "/channels/nosuch", None, 404, {"message": "Channel not found"}),
        ("DELETE", "/channels/nosuch", None, 404, {"message": "Channel not found"}),
        ("POST", "/channels/nosuch/answer", None, 404, {"message": "Channel not found"}),
        (
            "GET",
            "/channels/nosuch/variable",
            {"variable": "X"},
            404,
            {"message": "Provided channel was not found"},
        ),
        ("GET", "/bridges/nosuch", None, 404, {"message": "Bridge not found"}),
        ("DELETE", "/bridges/nosuch", None, 404, {"message": "Bridge not found"}),
        (
            "POST",
            "/bridges/nosuch/addChannel",
            {"channel": "x"},
            404,
            {"message": "Bridge not found"},
        ),
        ("GET", "/applications/nosuch", None, 404, {"message": "Application not found"}),
        ("GET", "/nosuch", None, 404, {"message": "Resource not found"}),
        ("GET", "/channels/x/variables", None, 404, {"message": "Resource not found"}),
        ("DELETE", "/asterisk/info", None, 405, {"message": "Invalid method"}),
        (
            "GET",
            f"{DYNAMIC}/endpoint/nosuch",
            None,
            404,
            {"message": "Object with id 'nosuch' not found"},
        ),
        (
            "GET",
            "/asterisk/config/dynamic/res_nope/auth/x",
            None,
            404,
            {"message": "configClass 'res_nope' not found"},
        ),
        (
            "POST",
            "/channels",
            {"endpoint": "PJSIP/1@nosuch", "app": APP},
            500,
            {"error": "Allocation failed"},  # ast_ari_response_alloc_failed(): not "message"
        ),
        (
            "POST",
            "/channels",
            {"endpoint": "PJSIP/1@softswitch"},
            400,
            {"message": "Application or extension must be specified"},
        ),
        ("POST", "/channels", {"app": APP}, 400, {"message": "Endpoint must be specified"}),
        (
            "POST",
            "/channels",
            {"endpoint": "softswitch", "app": APP},
            400,
            {"message": "Invalid endpoint specified"},
        ),
    ],
)
async def test_error_shapes(
    make: Make,
    method: str,
    path: str,
    params: dict[str, str] | None,
    status: int,
    body: dict[str, str],
) -> None:
    _, client = await make()
    assert await client.call(method, path, params) == (status, body)


async def test_channel_request_errors(make: Make) -> None:
    sim, client, sock = await connected(make)
    sim.script("1", Script(action="noanswer"))
    ringing = await client.originate("1", channelId="leg-1")
    await sock.until("Dial")
    # duplicate id; a channel not in Stasis; a bad hangup reason
    status, body = await client.call(
        "POST", "/channels", {"endpoint": "PJSIP/2@softswitch", "app": APP, "channelId": "leg-1"}
    )
    assert (status, body) == (409, {"message": "Channel with given unique ID already exists"})
    assert await client.call("POST", "/channels/leg-1/answer") == (
        409,
        {"message": "Channel not in Stasis application"},
    )
    assert await client.call("DELETE", "/channels/leg-1", {"reason": "nope"}) == (
        400,
        {"message": "Invalid reason for hangup provided"},
    )
    assert await client.call("GET", "/channels/leg-1/variable") == (
        400,
        {"message": "Variable name is required"},
    )
    assert await client.call("GET", "/channels/leg-1/variable", {"variable": "NOPE"}) == (
        404,
        {"message": "Provided variable was not found"},
    )
    assert await client.call("GET", "/channels/leg-1") == (200, ringing | {"state": "Ringing"})


# --- WebSocket: one per app, drop, restart -----------------------------------------------


async def test_second_websocket_takes_over_the_app(make: Make) -> None:
    sim, client, first = await connected(make)
    second = await client.events()
    await sim.wait_for(lambda: sim.apps[APP].connects == 2)

    channel = await client.originate("1")
    got = await second.until("StasisStart")
    assert types(got) == ["Dial", "ChannelStateChange", "Dial", "StasisStart"]
    assert got[0]["peer"]["id"] == channel["id"]
    assert not first.ws.closed  # still open, just deaf
    await first.close()
    assert first.queue.get_nowait() is None  # nothing but the close


async def test_websocket_answers_pings(make: Make) -> None:
    sim, client = await make()
    async with client.session.ws_connect(
        f"{client.base_url}/ari/events?app={APP}", autoping=False
    ) as ws:
        await ws.ping(b"hi")
        message = await asyncio.wait_for(ws.receive(), 5)
        assert (message.type, message.data) == (aiohttp.WSMsgType.PONG, b"hi")
        assert await client.call("GET", f"/applications/{APP}") == (
            200,
            {
                "name": APP,
                "channel_ids": [],
                "bridge_ids": [],
                "endpoint_ids": [],
                "device_names": [],
                "events_allowed": [],
                "events_disallowed": [],
            },
        )
    await sim.wait_for(lambda: not sim.app_connected(APP))
    # Nothing subscribed to it any more: Asterisk forgets the app (res_stasis cleanup).
    assert await client.call("GET", f"/applications/{APP}") == (
        404,
        {"message": "Application not found"},
    )
    assert await client.call("GET", "/applications") == (200, [])


async def test_drop_keeps_the_app_and_its_channels(make: Make) -> None:
    sim, client, sock = await connected(make)
    sim.script("1", Script(action="noanswer"))
    channel = await client.originate("1", timeout="-1")
    await sock.until("Dial")

    await sim.drop_websockets()
    await sock.closed()
    assert not sim.app_connected(APP)
    # Asterisk keeps the app (and its subscriptions); events meanwhile are lost, not queued
    status, app = await client.call("GET", f"/applications/{APP}")
    assert status == 200 and app["channel_ids"] == [channel["id"]]

    again = await client.events()
    await sim.wait_for(lambda: sim.app_connected(APP))
    assert await client.call("DELETE", f"/channels/{channel['id']}") == (204, None)
    got = await again.until("ChannelDestroyed")
    assert types(got) == ["ChannelHangupRequest", "Dial", "ChannelDestroyed"]
    assert (got[0]["cause"], got[0]["soft"], got[1]["dialstatus"], got[2]["cause"]) == (
        32,
        True,
        "NOANSWER",
        16,
    )
    assert sim.channel(channel["id"]).end == "cancelled"


async def test_restart_forgets_everything_silently(make: Make) -> None:
    sim, client, sock = await connected(make, accounts={"902": "pw"})
    channel = await client.originate("1")
    await sock.until("StasisStart")
    _, bridge = await client.call("POST", "/bridges", {"type": "mixing"})
    await client.call("POST", f"/bridges/{bridge['id']}/addChannel", {"channel": channel["id"]})
    await client.call(
        "PUT", f"{DYNAMIC}/auth/a1", body={"fields": [{"attribute": "username", "value": "902"}]}
    )
    _, before = await client.call("GET", "/asterisk/info")

    await sim.restart()

    assert all(e["type"] != "ChannelDestroyed" for e in await sock.closed())
    assert sim.channels == {} and sim.bridges == {} and sim.dynamic_objects == {}
    assert sim.channel(channel["id"]).end == "restart"
    assert await client.call("GET", "/channels") == (200, [])
    assert await client.call("GET", "/bridges") == (200, [])
    assert (await client.call("GET", f"/applications/{APP}"))[0] == 404
    assert (await client.call("GET", f"{DYNAMIC}/auth/a1"))[0] == 404
    _, after = await client.call("GET", "/asterisk/info")
    assert after["system"] == before["system"]
    assert after["status"]["startup_time"] >= before["status"]["startup_time"]

    again = await client.events()
    await sim.wait_for(lambda: sim.app_connected(APP))
    assert await quiet(sim, again) == []


async def test_originate_without_app_socket_fails_at_answer(make: Make) -> None:
    sim, client = await make()
    # Asterisk accepts the originate; the call dies when Stasis() finds no app
    channel = await client.originate("1")
    ended = await sim.wait_for(lambda: sim.ended_channels.get(channel["id"]))
    assert (ended.answered, ended.end) == (True, "stasis_failed")


# --- far end behaviour -------------------------------------------------------------------


async def test_hangup_after_ms_sends_bye(make: Make) -> None:
    sim, client, sock = await connected(make)
    sim.script("1", Script(answer_after_ms=10, hangup_after_ms=20, protocol_id="call-1@x"))
    channel = await client.originate("1", appArgs="outbound,7")
    assert channel["protocol_id"] == "call-1@x"
    got = await sock.until("ChannelDestroyed")
    start = next(e for e in got if e["type"] == "StasisStart")
    assert start["args"] == ["outbound", "7"]
    hangup = next(e for e in got if e["type"] == "ChannelHangupRequest")
    assert "cause" not in hangup and got[-1]["cause"] == 0
    assert sim.channel(channel["id"]).end == "far_end_hangup"


@pytest.mark.parametrize(("version", "request_cause"), [(16, 16), (20, None), (22, None)])
async def test_far_end_bye_in_a_bridge_is_normal_clearing(
    make: Make, version: int, request_cause: int | None
) -> None:
    # Measured with sipp on 16.30.1 and 22.10.1: a bridged channel whose far end sends BYE
    # is destroyed with cause 16 everywhere (outside a bridge 20/22 say 0, as above).
    sim, client, sock = await connected(make, version=version)
    legs = [await client.originate("1"), await client.originate("2")]
    await sock.until("StasisStart")
    await sock.until("StasisStart")
    await client.call("POST", "/bridges", {"bridgeId": "b1"})
    channels = ",".join(leg["id"] for leg in legs)
    assert await client.call("POST", "/bridges/b1/addChannel", {"channel": channels}) == (
        204,
        None,
    )
    await sim.far_end_hangup(legs[1]["id"])
    got = await sock.until("ChannelDestroyed")
    hangup = next(e for e in got if e["type"] == "ChannelHangupRequest")
    assert hangup.get("cause") == request_cause
    assert types(got)[-4:] == [
        "ChannelHangupRequest",
        "ChannelLeftBridge",
        "StasisEnd",
        "ChannelDestroyed",
    ]
    assert (got[-1]["channel"]["id"], got[-1]["cause"]) == (legs[1]["id"], 16)


async def test_far_end_hangup_needs_an_answered_call(make: Make) -> None:
    sim, client, sock = await connected(make)
    sim.script("1", Script(action="noanswer"))
    channel = await client.originate("1")
    await sock.until("Dial")
    with pytest.raises(SimulatorError):
        await sim.far_end_hangup(channel["id"])
    with pytest.raises(SimulatorError):
        await sim.far_end_hangup("nosuch")


@pytest.mark.parametrize(
    ("action", "cause", "tech_cause", "dialstatus"),
    [("congestion", 34, 503, "CONGESTION"), ("unreachable", 18, 408, "NOANSWER")],
)
async def test_more_failures(
    make: Make, action: str, cause: int, tech_cause: int, dialstatus: str
) -> None:
    sim, client, sock = await connected(make)
    sim.script("1", Script(action=action, ring_ms=10))  # type: ignore[arg-type]
    await client.originate("1")
    got = await sock.until("ChannelDestroyed")
    assert types(got) == [
        "Dial",
        "ChannelStateChange",
        "Dial",
        "ChannelHangupRequest",
        "Dial",
        "ChannelDestroyed",
    ]
    assert (got[-1]["cause"], got[-1]["tech_cause"], got[-2]["dialstatus"]) == (
        cause,
        tech_cause,
        dialstatus,
    )


async def test_ring_timeout_ends_a_slow_answer(make: Make) -> None:
    sim, client, sock = await connected(make)
    sim.script("1", Script(answer_after_ms=5000))
    await client.originate("1", timeout="1")
    got = await sock.until("ChannelDestroyed")
    assert (got[-1]["cause"], got[-1]["tech_cause"]) == (19, 480)


# --- digest check of per-call identities ------------------------------------------------


def ha1(user: str, password: str, realm: str = "softswitch.lab") -> str:
    return hashlib.md5(f"{user}:{realm}:{password}".encode()).hexdigest()


@pytest.mark.parametrize(
    ("auth", "outcome"),
    [
        (
            {
                "auth_type": "md5",
                "username": "902",
                "realm": "softswitch.lab",
                "md5_cred": ha1("902", "secret"),
            },
            "StasisStart",
        ),
        ({"auth_type": "userpass", "username": "902", "password": "secret"}, "StasisStart"),
        ({"auth_type": "md5", "username": "902", "md5_cred": ha1("902", "wrong")}, 403),
        ({"auth_type": "md5", "username": "903", "md5_cred": ha1("903", "secret")}, 403),
        (
            {
                "auth_type": "md5",
                "username": "902",
                "realm": "other",
                "md5_cred": ha1("902", "secret", "other"),
            },
            403,
        ),
        (None, 401),  # outbound_auth names an auth object that does not exist
    ],
)
async def test_digest_check(make: Make, auth: dict[str, str] | None, outcome: object) -> None:
    sim, client, sock = await connected(make, accounts={"902": "secret"})
    if auth is not None:
        fields = [{"attribute": k, "value": v} for k, v in auth.items()]
        assert (await client.call("PUT", f"{DYNAMIC}/auth/a1", body={"fields": fields}))[0] == 200
    _, trunk = await client.call("GET", f"{DYNAMIC}/endpoint/softswitch")
    fields = [f if f["attribute"] != "outbound_auth" else {**f, "value": "a1"} for f in trunk]
    status, _ = await client.call("PUT", f"{DYNAMIC}/endpoint/ep1", body={"fields": fields})
    assert status == 200  # the trunk's GET is a valid template, as on Asterisk
    assert sim.dynamic_objects[("res_pjsip", "endpoint", "ep1")]["outbound_auth"] == "a1"

    channel = await client.originate("1", endpoint="PJSIP/1@ep1")
    assert channel["name"].startswith("PJSIP/ep1-")
    if outcome == "StasisStart":
        await sock.until("StasisStart")
    else:
        got = await sock.until("ChannelDestroyed")
        assert (got[-1]["cause"], got[-1]["tech_cause"]) == (21, outcome)


async def test_static_trunk_without_auth_passes_when_not_challenged(make: Make) -> None:
    _, client, sock = await connected(make)
    await client.originate("1")
    await sock.until("StasisStart")


@pytest.mark.parametrize(
    ("version", "attribute", "status"),
    [(16, "send_aoc", 400), (22, "send_aoc", 200), (22, "no_such_option", 400)],
)
async def test_endpoint_attributes_the_version_knows(
    make: Make, version: int, attribute: str, status: int
) -> None:
    _, client = await make(version=version)
    fields = [{"attribute": "aors", "value": "softswitch"}, {"attribute": attribute, "value": "no"}]
    got, body = await client.call("PUT", f"{DYNAMIC}/endpoint/e1", body={"fields": fields})
    assert got == status
    if status == 400:
        assert body == {"message": "Creation of object 'e1' failed field value validation"}


async def test_dynamic_config_without_memory_wizard(make: Make) -> None:
    _, client = await make(dynamic_config=False)
    fields = [{"attribute": "username", "value": "902"}]
    assert await client.call("PUT", f"{DYNAMIC}/auth/a1", body={"fields": fields}) == (
        403,
        {"message": "Cannot create sorcery objects of type 'auth'"},
    )


# --- inbound, bridges, variables ---------------------------------------------------------


async def test_reason_code_is_ignored_on_16(make: Make) -> None:
    sim, client, sock = await connected(make, version=16)
    channel_id = await sim.inbound_call("4915112345", "ani_2way_12345")
    await sock.until("StasisStart")
    assert await client.call("DELETE", f"/channels/{channel_id}", {"reason_code": "21"}) == (
        204,
        None,
    )
    await sock.until("StasisEnd")
    assert sim.channel(channel_id).sip_final == 603  # 22 answers 403 here


async def test_inbound_without_app_fails_stasis(make: Make) -> None:
    sim, _ = await make()
    channel_id = await sim.inbound_call("4915112345", "ani_2way_12345")
    assert sim.channel(channel_id).end == "stasis_failed"


async def test_bridge_errors_and_destroy_with_members(make: Make) -> None:
    sim, client, sock = await connected(make)
    sim.script("2", Script(action="noanswer"))
    up = await client.originate("1")
    ringing = await client.originate("2")
    await sock.until("StasisStart")
    status, bridge = await client.call("POST", "/bridges", {"bridgeId": "b1", "name": "n"})
    assert (status, bridge["id"], bridge["channels"]) == (200, "b1", [])
    assert (await client.call("POST", "/bridges", {"bridgeId": "b1"}))[0] == 409
    add = "/bridges/b1/addChannel"
    assert await client.call("POST", add, {"channel": "nosuch"}) == (
        400,
        {"message": "Channel not found"},
    )
    assert await client.call("POST", add, {"channel": ringing["id"]}) == (
        422,
        {"message": "Channel not in Stasis application"},
    )
    assert await client.call("POST", add, {"channel": up["id"]}) == (204, None)
    assert sim.channels[up["id"]].bridge_id == "b1"
    assert await client.call("POST", "/bridges/b1/removeChannel", {"channel": up["id"]}) == (
        204,
        None,
    )
    assert await client.call("POST", "/bridges/b1/removeChannel", {"channel": up["id"]}) == (
        422,
        {"message": "Channel not in this bridge"},
    )
    assert await client.call("POST", add, {"channel": up["id"]}) == (204, None)
    assert await client.call("DELETE", "/bridges/b1") == (204, None)
    got = await sock.until("BridgeDestroyed")
    assert types(got)[-5:] == [
        "ChannelEnteredBridge",
        "ChannelLeftBridge",
        "ChannelEnteredBridge",
        "ChannelLeftBridge",
        "BridgeDestroyed",
    ]
    assert sim.channels[up["id"]].state == "Up" and sim.channels[up["id"]].bridge_id is None


async def test_channel_variables(make: Make) -> None:
    _, client, sock = await connected(make)
    channel = await client.originate("1", callerId="4930123456")
    await sock.until("StasisStart")
    path = f"/channels/{channel['id']}/variable"
    assert await client.call("POST", path, {"variable": "FOO", "value": "bar"}) == (204, None)
    event = await sock.next()
    assert event is not None and (event["variable"], event["value"]) == ("FOO", "bar")
    assert await client.call("GET", path, {"variable": "FOO"}) == (200, {"value": "bar"})
    assert await client.call("GET", path, {"variable": "CALLERID(num)"}) == (
        200,
        {"value": "4930123456"},
    )
    assert channel["caller"] == {"name": "", "number": "4930123456"}


# --- control routes, Python API ----------------------------------------------------------


async def test_control_routes(make: Make) -> None:
    sim, client, sock = await connected(make)
    async with aiohttp.ClientSession(base_url=client.base_url) as control:  # no auth
        async with control.put("/_sim/scripts/5", json={"action": "busy"}) as response:
            assert response.status == 204
        async with control.put("/_sim/scripts/6", json={"action": "nope"}) as response:
            assert response.status == 400
        assert sim.scripts["5"] == Script(action="busy")
        await client.originate("5")
        await sock.until("ChannelDestroyed")

        async with control.post(
            "/_sim/inbound", json={"caller": "4915112345", "exten": "ani_2way_12345"}
        ) as response:
            channel_id = (await response.json())["channel_id"]
        await sock.until("StasisStart")
        async with control.get("/_sim/channels") as response:
            [state] = await response.json()
        assert (state["id"], state["state"], state["number"]) == (
            channel_id,
            "Ring",
            "ani_2way_12345",
        )
        async with control.post(f"/_sim/channels/{channel_id}/hangup") as response:
            assert response.status == 204
        await sock.until("StasisEnd")
        async with control.get("/_sim/channels", params={"ended": "1"}) as response:
            assert {c["id"]: c["end"] for c in await response.json()}[channel_id] == (
                "far_end_hangup"
            )
        async with control.post("/_sim/inject", json={"type": "Custom", "x": 1}) as response:
            assert response.status == 204
        event = await sock.next()
        assert event is not None and (event["type"], event["x"], event["application"]) == (
            "Custom",
            1,
            APP,
        )
        async with control.get("/_sim/requests") as response:
            assert [r["path"] for r in await response.json()] == ["/channels"]
        async with control.delete("/_sim/requests") as response:
            assert response.status == 204
        assert sim.requests == []
        async with control.post("/_sim/drop") as response:
            assert response.status == 204
        await sock.closed()
        async with control.post("/_sim/restart") as response:
            assert response.status == 204


async def test_wait_for_times_out(make: Make) -> None:
    sim, _ = await make()
    with pytest.raises(TimeoutError):
        await sim.wait_for(lambda: False, timeout=0.05)


def test_config_validation() -> None:
    with pytest.raises(SimulatorError):
        SimulatorConfig(version=18)
    with pytest.raises(SimulatorError):
        Script(action="hold")  # type: ignore[arg-type]
    with pytest.raises(SimulatorError):
        Script(ring_ms=-1)
    with pytest.raises(SimulatorError):
        Script.from_json({"action": "busy", "unknown": 1})


async def test_run_simulator_serves_until_cancelled() -> None:
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    server = asyncio.create_task(
        run_simulator(SimulatorConfig(), port=0, on_ready=ready.set_result)
    )
    url = await asyncio.wait_for(ready, 5)
    async with (
        aiohttp.ClientSession(headers=AUTH) as session,
        session.get(f"{url}/ari/asterisk/ping") as response,
    ):
        body = await response.json()
    assert (body["ping"], body["asterisk_id"]) == ("pong", "02:fc:00:00:00:01")
    server.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await server


async def test_many_channels(make: Make) -> None:
    """Hundreds of concurrent calls end correctly (timers, not tasks, per channel)."""
    sim, client, sock = await connected(make)
    sim.script("1", Script(answer_after_ms=20, hangup_after_ms=20))
    channels = await asyncio.gather(*(client.originate("1") for _ in range(300)))
    await sim.wait_for(lambda: len(sim.ended_channels) == 300, timeout=30)
    assert len({c["id"] for c in channels}) == 300
    assert {c.end for c in sim.ended_channels.values()} == {"far_end_hangup"}
    destroyed = 0
    while destroyed < 300:
        event = await sock.next()
        assert event is not None
        destroyed += event["type"] == "ChannelDestroyed"
