"""The ARI client against the ARI simulator (loopback HTTP + WebSocket), as Asterisk 22 and 16."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import pytest
from pydantic import SecretStr

from ari_simulator import Script, Simulator, SimulatorConfig
from stasis_app.ari import (
    AriClient,
    AriError,
    AriNotFound,
    BridgeDestroyed,
    ChannelDestroyed,
    ChannelEnteredBridge,
    ChannelHangupRequest,
    ChannelStateChange,
    Dial,
    Event,
    EventStream,
    StasisEnd,
    StasisStart,
)
from stasis_app.config import Settings

USER = "twoway"
PASSWORD = "sim-ari-Pa55"
APP = "twoway-callback"
REALM = "softswitch.lab"
ACCOUNT, ACCOUNT_SECRET = "902", "secret"
WAIT = 5.0

E = TypeVar("E", bound=Event)


def ha1(user: str, password: str, realm: str = REALM) -> str:
    return hashlib.md5(f"{user}:{realm}:{password}".encode(), usedforsecurity=False).hexdigest()


class Collector:
    """The app side of the stream: keeps every event, lets a test await a condition."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.connects = 0
        self.disconnects = 0
        self._changed = asyncio.Event()

    def on_event(self, event: Event) -> None:
        self.events.append(event)
        self._changed.set()

    async def on_connect(self) -> None:
        self.connects += 1
        self._changed.set()

    def on_disconnect(self) -> None:
        self.disconnects += 1
        self._changed.set()

    async def until(self, predicate: Callable[[], bool], timeout: float = WAIT) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self._changed.clear()  # no await since the check: no lost wake-up
                await self._changed.wait()

    def of(self, channel_id: str) -> list[Event]:
        return [e for e in self.events if e.channel_id == channel_id]

    async def first(self, cls: type[E], channel_id: str, timeout: float = WAIT) -> E:
        await self.until(lambda: any(isinstance(e, cls) for e in self.of(channel_id)), timeout)
        return next(e for e in self.of(channel_id) if isinstance(e, cls))


@pytest.fixture(params=[22, 16], ids=lambda v: f"asterisk{v}")
async def sim(request: pytest.FixtureRequest) -> AsyncIterator[Simulator]:
    simulator = Simulator(
        SimulatorConfig(
            user=USER,
            password=PASSWORD,
            version=request.param,
            realm=REALM,
            accounts={ACCOUNT: ACCOUNT_SECRET},
        )
    )
    await simulator.start(host="127.0.0.1", port=0)
    yield simulator
    await simulator.stop()


@pytest.fixture
async def ari(sim: Simulator) -> AsyncIterator[AriClient]:
    settings = Settings(
        ari_url=sim.base_url,
        ari_user=USER,
        ari_password=SecretStr(PASSWORD),
        ari_app=APP,
        ari_timeout=3.0,
        ari_heartbeat=1.0,
        ari_reconnect_max=0.5,
    )
    async with AriClient(settings) as client:
        yield client


@pytest.fixture
async def live(ari: AriClient) -> AsyncIterator[tuple[EventStream, Collector]]:
    """A connected event stream: the Stasis app exists only while it is connected."""
    collector = Collector()
    stream = ari.event_stream(
        on_event=collector.on_event,
        on_connect=collector.on_connect,
        on_disconnect=collector.on_disconnect,
    )
    task = asyncio.create_task(stream.run())
    assert await stream.wait_connected(WAIT)
    await collector.until(lambda: collector.connects == 1)
    yield stream, collector
    await asyncio.wait_for(stream.close(), WAIT)
    await asyncio.wait_for(task, WAIT)


async def originate(
    ari: AriClient,
    number: str,
    channel_id: str,
    *,
    endpoint: str = "softswitch",
    timeout: int = 10,
    **variables: str,
) -> Any:
    return await ari.rest.originate(
        endpoint=f"PJSIP/{number}@{endpoint}",
        channel_id=channel_id,
        app=APP,
        app_args=["outbound", channel_id],
        caller_id="Callback <4930123456>",
        timeout=timeout,
        variables=variables or {"PJSIP_HEADER(add,X-Callback-Call-ID)": f"cid-{channel_id}"},
    )


def version(sim: Simulator) -> int:
    return sim.cfg.version


async def test_originate_answer_events_in_order_then_hangup(
    ari: AriClient, sim: Simulator, live: tuple[EventStream, Collector]
) -> None:
    _, col = live
    sim.script("4930000001", Script(action="answer", ring_ms=50))
    channel = await originate(ari, "4930000001", "t1-a")
    assert channel.id == "t1-a"
    start = await col.first(StasisStart, "t1-a")
    assert start.args == ("outbound", "t1-a")
    assert start.channel.state == "Up"

    before = col.of("t1-a")
    kinds = [type(e).__name__ for e in before]
    dials = [e.dialstatus for e in before if isinstance(e, Dial)]
    assert kinds[0] == "Dial" and dials[0] == ""
    assert dials[-1] == "ANSWER" and "RINGING" in dials
    assert kinds[-1] == "StasisStart"  # StasisStart only after the answer
    states = [e.channel.state for e in before if isinstance(e, ChannelStateChange)]
    assert states[-1] == "Up"

    if start.channel.protocol_id:
        call_id = await ari.rest.get_variable("t1-a", "CHANNEL(pjsip,call-id)")
        assert call_id == start.channel.protocol_id
    assert (await ari.rest.get_channel("t1-a")).state == "Up"
    assert "t1-a" in [c.id for c in await ari.rest.list_channels()]

    assert await ari.rest.hangup("t1-a") is True
    end = await col.first(ChannelDestroyed, "t1-a")
    assert end.cause == 16
    tail = [type(e).__name__ for e in col.of("t1-a")][len(before) :]
    assert tail == ["ChannelHangupRequest", "StasisEnd", "ChannelDestroyed"]
    assert await ari.rest.hangup("t1-a") is False
    with pytest.raises(AriNotFound):
        await ari.rest.get_channel("t1-a")

    [record] = [r for r in sim.requests if r.method == "POST" and r.path == "/channels"]
    assert record.query["channelId"] == "t1-a"
    assert record.query["appArgs"] == "outbound,t1-a"
    assert "api_key" not in record.query
    assert record.body == {"variables": {"PJSIP_HEADER(add,X-Callback-Call-ID)": "cid-t1-a"}}


async def test_busy_ends_in_channel_destroyed_17_without_stasis_start(
    ari: AriClient, sim: Simulator, live: tuple[EventStream, Collector]
) -> None:
    _, col = live
    sim.script("87654321", Script(action="busy"))
    await originate(ari, "87654321", "t2-a")
    end = await col.first(ChannelDestroyed, "t2-a")
    assert end.cause == 17
    assert end.tech_cause == (None if version(sim) == 16 else 486)
    assert not any(isinstance(e, StasisStart | StasisEnd) for e in col.of("t2-a"))
    dials = [e.dialstatus for e in col.of("t2-a") if isinstance(e, Dial)]
    assert dials[-1] == "BUSY"


async def test_far_end_hangup_causes_differ_by_version(
    ari: AriClient, sim: Simulator, live: tuple[EventStream, Collector]
) -> None:
    _, col = live
    sim.script("4930000003", Script(action="answer"))
    await originate(ari, "4930000003", "t3-a")
    await col.first(StasisStart, "t3-a")
    await sim.far_end_hangup("t3-a")
    end = await col.first(ChannelDestroyed, "t3-a")
    request = next(e for e in col.of("t3-a") if isinstance(e, ChannelHangupRequest))
    if version(sim) == 16:
        assert (request.cause, end.cause) == (16, 16)
    else:
        assert (request.cause, end.cause) == (None, 0)


async def test_dynamic_config_put_get_delete_and_digest(
    ari: AriClient, sim: Simulator, live: tuple[EventStream, Collector]
) -> None:
    _, col = live
    rest = ari.rest
    trunk = await rest.get_config("res_pjsip", "endpoint", "softswitch")
    assert trunk  # the template for per-call endpoints
    secret = ha1(ACCOUNT, ACCOUNT_SECRET)
    await rest.put_config(
        "res_pjsip",
        "auth",
        "auth-t4",
        {"auth_type": "md5", "username": ACCOUNT, "realm": REALM, "md5_cred": secret},
    )
    auth = await rest.get_config("res_pjsip", "auth", "auth-t4")
    assert auth["username"] == ACCOUNT
    assert auth["realm"] == REALM
    await rest.put_config("res_pjsip", "endpoint", "ss-t4", {**trunk, "outbound_auth": "auth-t4"})
    endpoint = await rest.get_config("res_pjsip", "endpoint", "ss-t4")
    assert endpoint["outbound_auth"] == "auth-t4"

    sim.script("4930000004", Script(action="answer"))
    await originate(ari, "4930000004", "t4-a", endpoint="ss-t4")
    await col.first(StasisStart, "t4-a")
    assert await rest.hangup("t4-a")

    # the request log holds the credential we sent (it is a test double), our logs never do
    assert await rest.delete_config("res_pjsip", "endpoint", "ss-t4") is True
    assert await rest.delete_config("res_pjsip", "auth", "auth-t4") is True
    assert await rest.delete_config("res_pjsip", "auth", "auth-t4") is False
    with pytest.raises(AriNotFound):
        await rest.get_config("res_pjsip", "auth", "auth-t4")


async def test_wrong_secret_is_rejected_with_cause_21(
    ari: AriClient, sim: Simulator, live: tuple[EventStream, Collector]
) -> None:
    _, col = live
    rest = ari.rest
    trunk = await rest.get_config("res_pjsip", "endpoint", "softswitch")
    await rest.put_config(
        "res_pjsip",
        "auth",
        "auth-t5",
        {"auth_type": "md5", "username": ACCOUNT, "realm": REALM, "md5_cred": "0" * 32},
    )
    await rest.put_config("res_pjsip", "endpoint", "ss-t5", {**trunk, "outbound_auth": "auth-t5"})
    sim.script("4930000005", Script(action="answer"))
    await originate(ari, "4930000005", "t5-a", endpoint="ss-t5")
    end = await col.first(ChannelDestroyed, "t5-a")
    assert end.cause == 21
    assert not any(isinstance(e, StasisStart) for e in col.of("t5-a"))


async def test_trunk_endpoint_cannot_be_changed(ari: AriClient) -> None:
    with pytest.raises(AriError) as info:
        await ari.rest.put_config("res_pjsip", "endpoint", "softswitch", {"context": "other"})
    assert info.value.status == 403


async def test_bridge_leaves_the_other_leg_up_alone(
    ari: AriClient, sim: Simulator, live: tuple[EventStream, Collector]
) -> None:
    _, col = live
    sim.script("4930000006", Script(action="answer"))
    sim.script("4930000007", Script(action="answer"))
    await originate(ari, "4930000006", "t6-a")
    await originate(ari, "4930000007", "t6-b")
    await col.first(StasisStart, "t6-a")
    await col.first(StasisStart, "t6-b")
    bridge = await ari.rest.create_bridge("t6-br", name="t6")
    assert (bridge.id, bridge.bridge_type) == ("t6-br", "mixing")
    await ari.rest.add_channels("t6-br", ["t6-a", "t6-b"])
    await col.first(ChannelEnteredBridge, "t6-a")
    await col.first(ChannelEnteredBridge, "t6-b")
    assert set((await ari.rest.get_bridge("t6-br")).channels) == {"t6-a", "t6-b"}
    assert "t6-br" in [b.id for b in await ari.rest.list_bridges()]

    assert await ari.rest.hangup("t6-a")
    await col.first(ChannelDestroyed, "t6-a")
    assert (await ari.rest.get_channel("t6-b")).state == "Up"  # alone in the bridge
    assert (await ari.rest.get_bridge("t6-br")).channels == ("t6-b",)
    assert await ari.rest.hangup("t6-b")
    await col.first(ChannelDestroyed, "t6-b")
    assert await ari.rest.destroy_bridge("t6-br") is True
    await col.until(lambda: any(isinstance(e, BridgeDestroyed) for e in col.events))
    assert await ari.rest.destroy_bridge("t6-br") is False


async def test_reconnect_after_dropped_websocket(
    ari: AriClient, sim: Simulator, live: tuple[EventStream, Collector]
) -> None:
    stream, col = live
    await sim.drop_websockets()
    await col.until(lambda: col.disconnects == 1 and col.connects == 2)
    assert stream.reconnects == 1
    assert stream.connected
    # the Stasis app exists again: an originate into it works and its events arrive
    sim.script("4930000008", Script(action="answer"))
    await originate(ari, "4930000008", "t8-a")
    await col.first(StasisStart, "t8-a")
    assert await ari.rest.hangup("t8-a")


async def test_restart_loses_channels_and_the_stream_comes_back(
    ari: AriClient, sim: Simulator, live: tuple[EventStream, Collector]
) -> None:
    stream, col = live
    sim.script("4930000009", Script(action="answer"))
    await originate(ari, "4930000009", "t9-a")
    await col.first(StasisStart, "t9-a")
    await sim.restart()
    await col.until(lambda: col.connects >= 2, timeout=10)
    assert await stream.wait_connected(WAIT)
    assert await ari.rest.list_channels() == []
    await ari.rest.ping()


async def test_inbound_ring_then_reject_busy(
    ari: AriClient, sim: Simulator, live: tuple[EventStream, Collector]
) -> None:
    _, col = live
    channel_id = await sim.inbound_call("4915112345", "ani_2way_12345")
    start = await col.first(StasisStart, channel_id)
    assert start.args == ("ani_2way", "12345")
    assert start.channel.state == "Ring"
    assert start.channel.caller_number == "4915112345"
    await ari.rest.ring(channel_id)
    await ari.rest.ring_stop(channel_id)
    assert await ari.rest.hangup(channel_id, reason="busy") is True
    await col.first(StasisEnd, channel_id)
    hangup = [r for r in sim.requests if r.method == "DELETE" and r.path.endswith(channel_id)]
    assert hangup[0].query == {"reason": "busy"}


async def test_inbound_answer(
    ari: AriClient, sim: Simulator, live: tuple[EventStream, Collector]
) -> None:
    _, col = live
    channel_id = await sim.inbound_call("4915112345", "ani_2way_777")
    await col.first(StasisStart, channel_id)
    await ari.rest.answer(channel_id)
    await col.until(
        lambda: any(
            isinstance(e, ChannelStateChange) and e.channel.state == "Up"
            for e in col.of(channel_id)
        )
    )
    assert await ari.rest.hangup(channel_id)
    await col.first(StasisEnd, channel_id)


async def test_injected_unwanted_events_are_dropped(
    sim: Simulator, live: tuple[EventStream, Collector]
) -> None:
    _, col = live
    await sim.inject(
        {"type": "ChannelVarset", "variable": "X", "value": "1", "channel": {"id": "inj-1"}}
    )
    await sim.inject({"type": "ChannelDtmfReceived", "digit": "5", "channel": {"id": "inj-1"}})
    await sim.inject({"type": "StasisEnd", "timestamp": "t", "channel": {"id": "inj-1"}})
    end = await col.first(StasisEnd, "inj-1")
    assert end.timestamp == "t"
    assert col.of("inj-1") == [end]  # same socket, in order: the first two were dropped
