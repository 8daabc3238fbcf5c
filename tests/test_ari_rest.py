"""AriRest and the error classes against a tiny aiohttp server on real loopback."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import pickle
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pydantic import SecretStr

from stasis_app.ari import (
    AriClient,
    AriConflict,
    AriError,
    AriNotFound,
    AriRest,
    AriUnavailable,
    Bridge,
    Channel,
)
from stasis_app.ari.errors import error_for_status
from stasis_app.ari.http import normalise_base_url
from stasis_app.config import Settings
from stasis_app.errors import ConfigError, TwowayError

USER = "twoway"
PASSWORD = "s3cr3t-Pa55word"
HA1 = "18c0fa43c19628c233b37de62e60e004"

CHANNEL_JSON = {
    "id": "cb-1-a1",
    "name": "PJSIP/softswitch-00000001",
    "state": "Down",
    "protocol_id": "a2640d9b-7768-4053-aa87-c4b43af8c462",
    "caller": {"name": "Callback", "number": "4930123456"},
    "connected": {"name": "Callback", "number": "4930123456"},
    "accountcode": "",
    "dialplan": {
        "context": "from-softswitch",
        "exten": "s",
        "priority": 1,
        "app_name": "AppDial2",
        "app_data": "(Outgoing Line)",
    },
    "creationtime": "2026-11-26T05:58:50.759+0000",
    "language": "en",
}
BRIDGE_JSON = {
    "id": "br-1",
    "technology": "simple_bridge",
    "bridge_type": "mixing",
    "bridge_class": "stasis",
    "creator": "Stasis",
    "name": "",
    "channels": [],
    "creationtime": "t",
    "video_mode": "talker",
}

Reply = tuple[int, Any] | Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    authorization: str | None


@dataclass
class FakeAri:
    """Routes ``(METHOD, path-under-/ari)`` to canned replies; records what it saw."""

    replies: dict[tuple[str, str], Reply] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        path = request.path.removeprefix("/ari")
        self.seen.append(
            Seen(
                request.method,
                path,
                dict(request.query),
                json.loads(raw) if raw else None,
                request.headers.get("Authorization"),
            )
        )
        reply = self.replies.get((request.method, path))
        if reply is None:
            return web.json_response({"message": "Resource not found"}, status=404)
        if callable(reply):
            return await reply(request)
        status, body = reply
        if body is None:
            return web.Response(status=status)
        if isinstance(body, str):
            return web.Response(status=status, text=body, content_type="text/html")
        return web.json_response(body, status=status)


@pytest.fixture
async def fake() -> AsyncIterator[FakeAri]:
    fake = FakeAri()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    fake.url = f"http://127.0.0.1:{port}"
    yield fake
    await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def make_rest(
    session: aiohttp.ClientSession, url: str, *, timeout: float = 2.0, observer: Any = None
) -> AriRest:
    return AriRest(
        session, url, user=USER, password=SecretStr(PASSWORD), timeout=timeout, observer=observer
    )


def expected_auth() -> str:
    return "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # closed again: nothing listens there


# --- request shapes -----------------------------------------------------------------------------


async def test_originate_sends_query_params_and_variables_body(
    fake: FakeAri, session: aiohttp.ClientSession
) -> None:
    fake.replies[("POST", "/channels")] = (200, CHANNEL_JSON)
    rest = make_rest(session, fake.url)
    channel = await rest.originate(
        endpoint="PJSIP/87654321@softswitch",
        channel_id="cb-1-a1",
        app="twoway-callback",
        app_args=["outbound", "1", "a"],
        caller_id="Callback <+4930123456>",
        timeout=30,
        variables={"PJSIP_HEADER(add,X-Callback-Call-ID)": "abc-1"},
    )
    assert channel == Channel.from_json(CHANNEL_JSON)
    assert channel.protocol_id == CHANNEL_JSON["protocol_id"]
    [seen] = fake.seen
    assert seen.authorization == expected_auth()
    assert seen.query == {
        "endpoint": "PJSIP/87654321@softswitch",
        "app": "twoway-callback",
        "appArgs": "outbound,1,a",
        "callerId": "Callback <+4930123456>",
        "timeout": "30",
        "channelId": "cb-1-a1",
    }
    assert seen.body == {"variables": {"PJSIP_HEADER(add,X-Callback-Call-ID)": "abc-1"}}
    assert "api_key" not in seen.query


async def test_originate_without_caller_id_or_variables(
    fake: FakeAri, session: aiohttp.ClientSession
) -> None:
    fake.replies[("POST", "/channels")] = (200, CHANNEL_JSON)
    rest = make_rest(session, fake.url)
    await rest.originate(
        endpoint="PJSIP/1@t",
        channel_id="x",
        app="a",
        app_args=(),
        caller_id=None,
        timeout=-1,
        variables={},
    )
    [seen] = fake.seen
    assert "callerId" not in seen.query
    assert seen.query["appArgs"] == ""
    assert seen.query["timeout"] == "-1"
    assert seen.body is None


async def test_originate_rejects_bad_app_args(session: aiohttp.ClientSession) -> None:
    rest = make_rest(session, "http://127.0.0.1:1")
    with pytest.raises(ValueError, match="comma"):
        await rest.originate(
            endpoint="e",
            channel_id="x",
            app="a",
            app_args=["a,b"],
            caller_id=None,
            timeout=1,
            variables={},
        )
    with pytest.raises(TypeError):
        await rest.originate(
            endpoint="e",
            channel_id="x",
            app="a",
            app_args="ab",
            caller_id=None,
            timeout=1,
            variables={},
        )


async def test_channel_operations(fake: FakeAri, session: aiohttp.ClientSession) -> None:
    cid = "cb-1-a1"
    fake.replies.update(
        {
            ("DELETE", f"/channels/{cid}"): (204, None),
            ("POST", f"/channels/{cid}/answer"): (204, None),
            ("POST", f"/channels/{cid}/ring"): (204, None),
            ("DELETE", f"/channels/{cid}/ring"): (204, None),
            ("GET", f"/channels/{cid}"): (200, {**CHANNEL_JSON, "state": "Up"}),
            ("GET", "/channels"): (200, [CHANNEL_JSON, {**CHANNEL_JSON, "id": "cb-1-b1"}]),
            ("GET", f"/channels/{cid}/variable"): (200, {"value": "call-id-1"}),
        }
    )
    rest = make_rest(session, fake.url)
    assert await rest.hangup(cid, reason="busy") is True
    assert await rest.hangup("gone") is False
    await rest.answer(cid)
    await rest.ring(cid)
    await rest.ring_stop(cid)
    assert (await rest.get_channel(cid)).state == "Up"
    assert [c.id for c in await rest.list_channels()] == [cid, "cb-1-b1"]
    assert await rest.get_variable(cid, "CHANNEL(pjsip,call-id)") == "call-id-1"
    assert [(s.method, s.path, s.query) for s in fake.seen] == [
        ("DELETE", f"/channels/{cid}", {"reason": "busy"}),
        ("DELETE", "/channels/gone", {}),
        ("POST", f"/channels/{cid}/answer", {}),
        ("POST", f"/channels/{cid}/ring", {}),
        ("DELETE", f"/channels/{cid}/ring", {}),
        ("GET", f"/channels/{cid}", {}),
        ("GET", "/channels", {}),
        ("GET", f"/channels/{cid}/variable", {"variable": "CHANNEL(pjsip,call-id)"}),
    ]


async def test_ids_cannot_change_the_path(fake: FakeAri, session: aiohttp.ClientSession) -> None:
    rest = make_rest(session, fake.url)
    assert await rest.hangup("../bridges/br-1") is False
    assert fake.seen[0].path == "/channels/../bridges/br-1"  # one segment, decoded by the server
    assert fake.seen[0].method == "DELETE"


async def test_bridge_operations(fake: FakeAri, session: aiohttp.ClientSession) -> None:
    fake.replies.update(
        {
            ("POST", "/bridges"): (200, BRIDGE_JSON),
            ("POST", "/bridges/br-1/addChannel"): (204, None),
            ("GET", "/bridges/br-1"): (200, {**BRIDGE_JSON, "channels": ["a", "b"]}),
            ("GET", "/bridges"): (200, [BRIDGE_JSON]),
            ("DELETE", "/bridges/br-1"): (204, None),
        }
    )
    rest = make_rest(session, fake.url)
    assert await rest.create_bridge("br-1", name="cb-1") == Bridge(id="br-1", bridge_type="mixing")
    await rest.add_channels("br-1", ["a", "b"])
    assert (await rest.get_bridge("br-1")).channels == ("a", "b")
    assert await rest.list_bridges() == [Bridge(id="br-1", bridge_type="mixing")]
    assert await rest.destroy_bridge("br-1") is True
    assert await rest.destroy_bridge("br-2") is False
    assert fake.seen[0].query == {"type": "mixing", "bridgeId": "br-1", "name": "cb-1"}
    assert fake.seen[1].query == {"channel": "a,b"}
    with pytest.raises(TypeError):
        await rest.add_channels("br-1", "ab")


async def test_dynamic_config_roundtrip_never_exposes_the_credential(
    fake: FakeAri, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    path = "/asterisk/config/dynamic/res_pjsip/auth/auth-1"
    echo = [
        {"attribute": "md5_cred", "value": HA1},
        {"attribute": "username", "value": "902"},
        {"attribute": "password_digest", "value": f"MD5:{HA1}"},
    ]
    fake.replies.update(
        {
            ("PUT", path): (200, echo),
            ("GET", path): (200, echo),
            ("DELETE", path): (204, None),
            ("GET", "/asterisk/config/dynamic/res_pjsip/endpoint/softswitch"): (
                200,
                [
                    {"attribute": "context", "value": "from-softswitch"},
                    {"attribute": "aors", "value": "softswitch"},
                ],
            ),
        }
    )
    rest = make_rest(session, fake.url)
    fields = {"auth_type": "md5", "username": "902", "realm": "softswitch.lab", "md5_cred": HA1}
    await rest.put_config("res_pjsip", "auth", "auth-1", fields)  # returns nothing on purpose
    body = {"fields": [{"attribute": k, "value": v} for k, v in fields.items()]}
    assert fake.seen[0].body == body
    assert await rest.get_config("res_pjsip", "endpoint", "softswitch") == {
        "context": "from-softswitch",
        "aors": "softswitch",
    }
    assert await rest.delete_config("res_pjsip", "auth", "auth-1") is True
    assert await rest.delete_config("res_pjsip", "auth", "auth-2") is False
    assert HA1 not in caplog.text


async def test_config_error_message_is_scrubbed_of_secrets(
    fake: FakeAri, session: aiohttp.ClientSession
) -> None:
    path = "/asterisk/config/dynamic/res_pjsip/auth/bad"
    fake.replies[("PUT", path)] = (400, {"message": f"bad value '{HA1}' for md5_cred"})
    rest = make_rest(session, fake.url)
    with pytest.raises(AriError) as info:
        await rest.put_config("res_pjsip", "auth", "bad", {"md5_cred": HA1, "username": "902"})
    assert type(info.value) is AriError
    assert info.value.status == 400
    assert HA1 not in str(info.value)
    assert "***" in info.value.message


async def test_ping_info_and_ping_fallback(fake: FakeAri, session: aiohttp.ClientSession) -> None:
    rest = make_rest(session, fake.url)
    fake.replies[("GET", "/asterisk/info")] = (200, {"system": {"version": "16.1.0"}})
    await rest.ping()  # no /asterisk/ping before 16.2: falls back to info
    assert [(s.path, s.query) for s in fake.seen] == [
        ("/asterisk/ping", {}),
        ("/asterisk/info", {"only": "system"}),
    ]
    fake.replies[("GET", "/asterisk/ping")] = (200, {"ping": "pong"})
    await rest.ping()
    assert (await rest.info())["system"] == {"version": "16.1.0"}


# --- error mapping ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (404, AriNotFound),
        (409, AriConflict),
        (500, AriUnavailable),
        (503, AriUnavailable),
        (400, AriError),
        (401, AriError),
        (403, AriError),
        (422, AriError),
    ],
)
async def test_status_maps_to_exception(
    fake: FakeAri, session: aiohttp.ClientSession, status: int, cls: type[AriError]
) -> None:
    fake.replies[("GET", "/channels/x")] = (status, {"message": "Channel not found"})
    rest = make_rest(session, fake.url)
    with pytest.raises(cls) as info:
        await rest.get_channel("x")
    err = info.value
    assert type(err) is cls
    assert isinstance(err, TwowayError)
    assert (err.status, err.method, err.path, err.message) == (
        status,
        "GET",
        "/channels/x",
        "Channel not found",
    )
    assert "Channel not found" in str(err)
    assert PASSWORD not in str(err)
    assert PASSWORD not in repr(err)


async def test_non_json_error_body_uses_the_reason(
    fake: FakeAri, session: aiohttp.ClientSession
) -> None:
    fake.replies[("GET", "/bridges/b")] = (502, "<html>Bad Gateway from a proxy</html>")
    with pytest.raises(AriUnavailable) as info:
        await make_rest(session, fake.url).get_bridge("b")
    assert info.value.status == 502
    assert info.value.message == "Bad Gateway"


async def test_garbage_success_body_is_unavailable(
    fake: FakeAri, session: aiohttp.ClientSession
) -> None:
    fake.replies[("POST", "/channels")] = (200, "<html>not json</html>")
    with pytest.raises(AriUnavailable, match="not JSON"):
        await make_rest(session, fake.url).originate(
            endpoint="e",
            channel_id="x",
            app="a",
            app_args=(),
            caller_id=None,
            timeout=1,
            variables={},
        )
    fake.replies[("GET", "/channels")] = (200, {"not": "a list"})
    with pytest.raises(AriUnavailable, match="shape"):
        await make_rest(session, fake.url).list_channels()
    fake.replies[("GET", "/channels/y")] = (200, {"name": "no id"})
    with pytest.raises(AriUnavailable, match="without an id"):
        await make_rest(session, fake.url).get_channel("y")


async def test_connection_refused_is_unavailable(session: aiohttp.ClientSession) -> None:
    calls: list[tuple[str, float, int | None]] = []
    rest = make_rest(
        session, f"http://127.0.0.1:{free_port()}", observer=lambda *a: calls.append(a)
    )
    with pytest.raises(AriUnavailable) as info:
        await rest.hangup("x")
    err = info.value
    assert err.status is None
    assert (err.method, err.path) == ("DELETE", "/channels/x")
    assert "cannot connect" in err.message
    assert PASSWORD not in str(err)
    assert [(op, status) for op, _, status in calls] == [("hangup", None)]


async def test_timeout_is_unavailable(fake: FakeAri, session: aiohttp.ClientSession) -> None:
    never = asyncio.Event()

    async def hang(request: web.Request) -> web.StreamResponse:
        await never.wait()
        return web.Response(status=204)

    fake.replies[("POST", "/channels/x/answer")] = hang
    rest = make_rest(session, fake.url, timeout=0.2)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(AriUnavailable, match="timed out") as info:
        await rest.answer("x")
    assert loop.time() - started < 2.0
    assert info.value.status is None
    never.set()


async def test_observer_sees_every_call_and_cannot_break_it(
    fake: FakeAri, session: aiohttp.ClientSession
) -> None:
    calls: list[tuple[str, float, int | None]] = []
    fake.replies[("GET", "/channels")] = (200, [])
    rest = make_rest(session, fake.url, observer=lambda *a: calls.append(a))
    assert await rest.list_channels() == []
    assert await rest.hangup("nope") is False
    assert [(op, status) for op, _, status in calls] == [("list_channels", 200), ("hangup", 404)]
    assert all(seconds >= 0 for _, seconds, _ in calls)

    def broken(op: str, seconds: float, status: int | None) -> None:
        raise RuntimeError("metrics bug")

    rest.observer = broken
    assert await rest.list_channels() == []


async def test_logs_never_hold_password_query_or_body(
    fake: FakeAri, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake.replies[("POST", "/channels")] = (200, CHANNEL_JSON)
    rest = make_rest(session, fake.url)
    await rest.originate(
        endpoint="PJSIP/4915199999@softswitch",
        channel_id="c",
        app="a",
        app_args=["x"],
        caller_id="<4930123456>",
        timeout=5,
        variables={"SECRETVAR": "top-secret-value"},
    )
    with pytest.raises(AriNotFound):
        await rest.get_channel("gone")
    # our loggers only: the fake server's access log prints the query, as Asterisk's would
    text = "\n".join(
        r.getMessage() + repr(r.__dict__) for r in caplog.records if r.name.startswith("stasis_app")
    )
    assert "POST /channels" in text
    for secret in (
        PASSWORD,
        "4915199999",
        "4930123456",
        "top-secret-value",
        expected_auth().split()[1],
    ):
        assert secret not in text


# --- errors and URLs ----------------------------------------------------------------------------


def test_error_classes_never_render_a_password() -> None:
    for cls in (AriError, AriNotFound, AriConflict, AriUnavailable):
        err = cls("Object not found", status=404, method="GET", path="/channels/c1")
        assert str(err) == "GET /channels/c1: 404: Object not found"
        assert PASSWORD not in str(err) and PASSWORD not in repr(err)
        clone = pickle.loads(pickle.dumps(err))
        assert type(clone) is cls
        assert (clone.status, clone.path) == (404, "/channels/c1")
        assert clone.message == "Object not found"
    assert str(AriUnavailable("timed out after 2 s", method="GET", path="/x")) == (
        "GET /x: no response: timed out after 2 s"
    )
    assert len(AriError("x" * 10_000).message) <= 200
    assert isinstance(error_for_status(599, "", method="GET", path="/"), AriUnavailable)


def test_base_url_normalisation_strips_credentials(caplog: pytest.LogCaptureFixture) -> None:
    assert normalise_base_url("http://127.0.0.1:8088") == "http://127.0.0.1:8088"
    assert normalise_base_url("http://127.0.0.1:8088/") == "http://127.0.0.1:8088"
    assert normalise_base_url("http://127.0.0.1:8088/ari/") == "http://127.0.0.1:8088"
    assert normalise_base_url("https://pbx.example/asterisk/ari") == "https://pbx.example/asterisk"
    caplog.set_level(logging.WARNING)
    cleaned = normalise_base_url(f"http://{USER}:{PASSWORD}@127.0.0.1:8088/?api_key=u:p")
    assert cleaned == "http://127.0.0.1:8088"
    assert PASSWORD not in caplog.text
    with pytest.raises(ValueError, match="absolute"):
        normalise_base_url("127.0.0.1:8088")


async def test_ari_client_from_settings(fake: FakeAri) -> None:
    fake.replies[("GET", "/asterisk/ping")] = (200, {"ping": "pong"})
    settings = Settings(
        ari_url=fake.url + "/", ari_user=USER, ari_password=SecretStr(PASSWORD), ari_timeout=2.0
    )
    client = AriClient(settings)
    with pytest.raises(RuntimeError):
        _ = client.rest
    async with client as ari:
        await ari.rest.ping()
        stream = ari.event_stream(on_event=lambda e: None, on_connect=_noop, on_disconnect=_nop)
        assert not stream.connected
        assert ari.app == "twoway-callback"
    assert fake.seen[0].authorization == expected_auth()
    assert PASSWORD not in repr(client) and PASSWORD not in repr(stream)
    with pytest.raises(ConfigError):
        AriClient(Settings(ari_url=""))
    async with AriClient(Settings(ari_url=""), base_url=fake.url) as ari:
        await ari.rest.ping()


async def _noop() -> None:
    return None


def _nop() -> None:
    return None
