"""EventStream against a tiny aiohttp WebSocket server on real loopback.

No sleeps as synchronisation: every wait is on a queue or event with a bounded timeout.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pydantic import SecretStr

import stasis_app.ari.stream as stream_module
from stasis_app.ari import ChannelDestroyed, Event, EventStream, StasisStart, parse_event

USER = "twoway"
PASSWORD = "ws-Pa55word-xyz"
APP = "twoway-callback"
WAIT = 5.0  # upper bound for anything that should happen "soon"


def event_json(kind: str, channel_id: str, **extra: Any) -> str:
    return json.dumps({"type": kind, "timestamp": "t", "channel": {"id": channel_id}, **extra})


VARSET = json.dumps(
    {"type": "ChannelVarset", "variable": "BRIDGEPEER", "value": "", "channel": {"id": "c1"}}
)


@dataclass
class Handshake:
    query: dict[str, str]
    authorization: str | None


@dataclass
class FakeAsterisk:
    """``/ari/events``: records handshakes, hands each accepted socket to the test."""

    reject_status: int | None = None
    autoping: bool = True  # False: never answers pings, like a dead peer
    greeting: list[str] = field(default_factory=list)  # sent right after accepting
    handshakes: list[Handshake] = field(default_factory=list)
    sockets: asyncio.Queue[tuple[web.Request, web.WebSocketResponse]] = field(
        default_factory=asyncio.Queue
    )
    handshake_seen: asyncio.Queue[int] = field(default_factory=asyncio.Queue)
    url: str = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.handshakes.append(Handshake(dict(request.query), request.headers.get("Authorization")))
        self.handshake_seen.put_nowait(len(self.handshakes))
        if self.reject_status is not None:
            return web.json_response(
                {"message": "Authentication required"}, status=self.reject_status
            )
        ws = web.WebSocketResponse(autoping=self.autoping)
        await ws.prepare(request)
        for text in self.greeting:
            await ws.send_str(text)
        self.sockets.put_nowait((request, ws))
        async for _ in ws:  # read (and, with autoping=False, ignore pings) until closed
            pass
        return ws

    async def next_socket(self) -> tuple[web.Request, web.WebSocketResponse]:
        return await asyncio.wait_for(self.sockets.get(), WAIT)


@pytest.fixture
async def asterisk() -> AsyncIterator[FakeAsterisk]:
    fake = FakeAsterisk()
    app = web.Application()
    app.router.add_get("/ari/events", fake.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    fake.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield fake
    await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


class Recorder:
    """The app side: callbacks that log what happened and let the test wait for it."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        self.connects: asyncio.Queue[int] = asyncio.Queue()
        self.disconnects: asyncio.Queue[int] = asyncio.Queue()
        self.n_connects = 0
        self.n_disconnects = 0
        self.active = 0
        self.max_active = 0
        self.gate: asyncio.Event | None = None  # when set: on_connect waits for it
        self.raise_on: set[str] = set()

    def on_event(self, event: Event) -> None:
        self.log.append(f"event:{event.channel_id}")
        self.events.put_nowait(event)
        if event.channel_id in self.raise_on:
            raise RuntimeError("handler bug")

    async def on_connect(self) -> None:
        self.n_connects += 1
        number = self.n_connects
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            self.log.append(f"connect:{number}")
            if self.gate is not None:
                await self.gate.wait()
            self.log.append(f"resynced:{number}")
        finally:
            self.active -= 1
        self.connects.put_nowait(number)

    def on_disconnect(self) -> None:
        self.n_disconnects += 1
        self.log.append("disconnect")
        self.disconnects.put_nowait(self.n_disconnects)

    async def next_connect(self) -> int:
        return await asyncio.wait_for(self.connects.get(), WAIT)

    async def next_disconnect(self) -> int:
        return await asyncio.wait_for(self.disconnects.get(), WAIT)

    async def next_event(self) -> Event:
        return await asyncio.wait_for(self.events.get(), WAIT)


def make_stream(
    session: aiohttp.ClientSession, url: str, rec: Recorder, **kwargs: Any
) -> EventStream:
    options: dict[str, Any] = {"heartbeat": 5.0, "reconnect_max": 0.5, "connect_timeout": 2.0}
    options.update(kwargs)
    return EventStream(
        session,
        base_url=url,
        user=USER,
        password=SecretStr(PASSWORD),
        app=APP,
        on_event=rec.on_event,
        on_connect=rec.on_connect,
        on_disconnect=rec.on_disconnect,
        **options,
    )


@pytest.fixture
async def running() -> AsyncIterator[Callable[[EventStream], Awaitable[asyncio.Task[None]]]]:
    """Start ``stream.run()`` as a task; close it (bounded) at the end of the test."""
    started: list[tuple[EventStream, asyncio.Task[None]]] = []

    async def start(stream: EventStream) -> asyncio.Task[None]:
        task = asyncio.create_task(stream.run())
        started.append((stream, task))
        return task

    yield start
    for stream, task in started:
        await asyncio.wait_for(stream.close(), WAIT)
        await asyncio.wait_for(task, WAIT)


async def test_connects_with_basic_auth_header_and_delivers_typed_events(
    asterisk: FakeAsterisk, session: aiohttp.ClientSession, running: Any
) -> None:
    asterisk.greeting = [
        VARSET,
        event_json("StasisStart", "c1", args=["outbound", "1"]),
        "garbage",
        event_json("ChannelDestroyed", "c1", cause=17, cause_txt="User busy"),
    ]
    rec = Recorder()
    stream = make_stream(session, asterisk.url + "/ari", rec)
    assert not stream.connected
    await running(stream)
    assert await stream.wait_connected(WAIT)
    assert stream.connected
    assert await rec.next_connect() == 1
    first = await rec.next_event()
    assert isinstance(first, StasisStart)
    assert first.args == ("outbound", "1")
    second = await rec.next_event()
    assert isinstance(second, ChannelDestroyed)
    assert second.cause == 17
    assert rec.events.empty()  # ChannelVarset and garbage dropped
    [handshake] = asterisk.handshakes
    assert handshake.query == {"app": APP}  # no api_key in the URL
    expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    assert handshake.authorization == expected
    assert stream.reconnects == 0


async def test_server_close_is_a_disconnect_and_the_stream_reconnects(
    asterisk: FakeAsterisk,
    session: aiohttp.ClientSession,
    running: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="stasis_app.ari.stream")
    rec = Recorder()
    stream = make_stream(session, asterisk.url, rec)
    await running(stream)
    _, ws = await asterisk.next_socket()
    assert await rec.next_connect() == 1

    await ws.close()  # a clean close
    assert await rec.next_disconnect() == 1
    _, ws2 = await asterisk.next_socket()
    assert await rec.next_connect() == 2  # on_connect awaited again
    assert stream.reconnects == 1
    assert await stream.wait_connected(WAIT)

    await ws2.send_str(event_json("StasisEnd", "c9"))
    assert (await rec.next_event()).channel_id == "c9"
    assert rec.log == [
        "connect:1",
        "resynced:1",
        "disconnect",
        "connect:2",
        "resynced:2",
        "event:c9",
    ]
    actions = [getattr(r, "action", None) for r in caplog.records]
    assert actions.count("ari_ws_connected") == 2
    assert actions.count("ari_ws_disconnected") == 1
    assert PASSWORD not in caplog.text


async def test_abrupt_drop_reconnects(
    asterisk: FakeAsterisk, session: aiohttp.ClientSession, running: Any
) -> None:
    rec = Recorder()
    stream = make_stream(session, asterisk.url, rec)
    await running(stream)
    for n in (1, 2, 3):
        request, _ = await asterisk.next_socket()
        assert await rec.next_connect() == n
        assert request.transport is not None
        request.transport.abort()  # no close frame: like a crashed Asterisk
        assert await rec.next_disconnect() == n
    await asterisk.next_socket()
    assert await rec.next_connect() == 4
    assert stream.reconnects == 3


async def test_dead_peer_is_noticed_by_heartbeat(
    asterisk: FakeAsterisk, session: aiohttp.ClientSession, running: Any
) -> None:
    asterisk.autoping = False  # the server reads but never answers a ping
    rec = Recorder()
    stream = make_stream(session, asterisk.url, rec, heartbeat=0.2)
    await running(stream)
    await asterisk.next_socket()
    assert await rec.next_connect() == 1
    assert await rec.next_disconnect() == 1  # no pong within the heartbeat
    asterisk.autoping = True
    await asterisk.next_socket()
    assert await rec.next_connect() == 2


async def test_events_wait_for_on_connect_but_the_socket_is_read_meanwhile(
    asterisk: FakeAsterisk,
    session: aiohttp.ClientSession,
    running: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asterisk.greeting = [event_json("StasisStart", f"c{i}") for i in range(3)]
    read = asyncio.Event()
    seen = 0

    def counting_parse(raw: str | bytes, wanted: frozenset[str]) -> Event | None:
        nonlocal seen
        seen += 1
        if seen == 3:
            read.set()
        return parse_event(raw, wanted)

    monkeypatch.setattr(stream_module, "parse_event", counting_parse)
    rec = Recorder()
    rec.gate = asyncio.Event()
    stream = make_stream(session, asterisk.url, rec)
    await running(stream)
    await asyncio.wait_for(read.wait(), WAIT)  # the reader consumed all three messages...
    assert rec.log == ["connect:1"]  # ...yet none was delivered while on_connect runs
    rec.gate.set()
    assert await rec.next_connect() == 1
    for i in range(3):
        assert (await rec.next_event()).channel_id == f"c{i}"
    assert rec.log == ["connect:1", "resynced:1", "event:c0", "event:c1", "event:c2"]


async def test_resyncs_never_overlap(
    asterisk: FakeAsterisk, session: aiohttp.ClientSession, running: Any
) -> None:
    rec = Recorder()
    rec.gate = asyncio.Event()
    stream = make_stream(session, asterisk.url, rec)
    await running(stream)
    _, ws = await asterisk.next_socket()
    await ws.close()  # dropped while the first on_connect is still running
    assert await rec.next_disconnect() == 1
    _, ws2 = await asterisk.next_socket()  # reconnected...
    await ws2.send_str(event_json("StasisEnd", "late"))
    assert rec.n_connects == 1  # ...but the second resync waits for the first
    rec.gate.set()
    assert await rec.next_connect() == 1
    assert await rec.next_connect() == 2
    assert (await rec.next_event()).channel_id == "late"
    assert rec.max_active == 1
    assert rec.log == [
        "connect:1",
        "disconnect",
        "resynced:1",
        "connect:2",
        "resynced:2",
        "event:late",
    ]


async def test_a_failing_handler_does_not_stop_the_reader(
    asterisk: FakeAsterisk, session: aiohttp.ClientSession, running: Any
) -> None:
    asterisk.greeting = [event_json("StasisStart", "bad"), event_json("StasisStart", "good")]
    rec = Recorder()
    rec.raise_on = {"bad"}
    stream = make_stream(session, asterisk.url, rec)
    await running(stream)
    assert (await rec.next_event()).channel_id == "bad"
    assert (await rec.next_event()).channel_id == "good"
    assert stream.connected


async def test_failing_on_connect_is_logged_and_events_still_flow(
    asterisk: FakeAsterisk,
    session: aiohttp.ClientSession,
    running: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    asterisk.greeting = [event_json("StasisEnd", "c1")]
    rec = Recorder()

    async def broken() -> None:
        raise RuntimeError("resync failed")

    stream = EventStream(
        session,
        base_url=asterisk.url,
        user=USER,
        password=PASSWORD,
        app=APP,
        on_event=rec.on_event,
        on_connect=broken,
        on_disconnect=rec.on_disconnect,
    )
    await running(stream)
    assert (await rec.next_event()).channel_id == "c1"
    assert any(getattr(r, "action", None) == "ari_on_connect_failed" for r in caplog.records)


async def test_rejected_handshake_keeps_retrying_without_leaking_the_password(
    asterisk: FakeAsterisk, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="stasis_app.ari")
    asterisk.reject_status = 401
    rec = Recorder()
    stream = make_stream(session, asterisk.url, rec, reconnect_max=0.05)
    task = asyncio.create_task(stream.run())
    try:
        async with asyncio.timeout(WAIT):
            while await asterisk.handshake_seen.get() < 3:
                pass
        assert not stream.connected
        assert rec.n_connects == 0
        assert not await stream.wait_connected(0.01)
    finally:
        await asyncio.wait_for(stream.close(), WAIT)
        await asyncio.wait_for(task, WAIT)
    errors = [r for r in caplog.records if getattr(r, "action", None) == "ari_ws_connect_failed"]
    assert errors and errors[0].levelno == logging.ERROR
    assert getattr(errors[0], "status", None) == 401
    assert PASSWORD not in caplog.text


class LogWaiter(logging.Handler):
    """Lets a test await a log record with a given ``action``."""

    def __init__(self, action: str) -> None:
        super().__init__(logging.DEBUG)
        self.action = action
        self.seen = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "action", None) == self.action:
            self.seen.set()


async def test_close_during_backoff_returns_promptly(session: aiohttp.ClientSession) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: connections are refused
    rec = Recorder()
    stream = make_stream(session, f"http://127.0.0.1:{port}", rec, reconnect_max=60.0)
    waiter = LogWaiter("ari_ws_connect_failed")
    logger = logging.getLogger("stasis_app.ari.stream")
    logger.addHandler(waiter)
    level = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        task = asyncio.create_task(stream.run())
        await asyncio.wait_for(waiter.seen.wait(), WAIT)  # refused: now backing off
    finally:
        logger.removeHandler(waiter)
        logger.setLevel(level)
    assert not stream.connected
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.wait_for(stream.close(), WAIT)
    await asyncio.wait_for(task, WAIT)
    assert loop.time() - started < 1.0
    assert rec.n_connects == 0 and rec.n_disconnects == 0
    await stream.close()  # idempotent


async def test_close_while_connected(
    asterisk: FakeAsterisk, session: aiohttp.ClientSession
) -> None:
    rec = Recorder()
    stream = make_stream(session, asterisk.url, rec)
    task = asyncio.create_task(stream.run())
    assert await rec.next_connect() == 1
    with pytest.raises(RuntimeError, match="already running"):
        await stream.run()
    await asyncio.wait_for(stream.close(), WAIT)
    await asyncio.wait_for(task, WAIT)
    assert not stream.connected
    assert rec.n_disconnects == 1
    assert len(asterisk.handshakes) == 1  # no reconnect after close


async def test_cancelling_run_cancels_a_pending_resync(
    asterisk: FakeAsterisk, session: aiohttp.ClientSession
) -> None:
    rec = Recorder()
    rec.gate = asyncio.Event()  # never set
    stream = make_stream(session, asterisk.url, rec)
    task = asyncio.create_task(stream.run())
    assert await stream.wait_connected(WAIT)
    await asterisk.next_socket()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, WAIT)
    assert rec.active == 0  # the blocked on_connect was cancelled, not leaked
    assert not stream.connected


async def test_an_unexpected_error_in_the_reader_reconnects(
    asterisk: FakeAsterisk,
    session: aiohttp.ClientSession,
    running: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls = 0

    def flaky_parse(raw: str | bytes, wanted: frozenset[str]) -> Event | None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("surprise")
        return parse_event(raw, wanted)

    monkeypatch.setattr(stream_module, "parse_event", flaky_parse)
    asterisk.greeting = [event_json("StasisEnd", "c1")]
    rec = Recorder()
    stream = make_stream(session, asterisk.url, rec)
    await running(stream)
    assert await rec.next_disconnect() == 1  # the surprise ended that connection...
    assert (await rec.next_event()).channel_id == "c1"  # ...the next one delivers
    assert rec.n_connects == 2
    assert any(getattr(r, "action", None) == "ari_ws_error" for r in caplog.records)


async def test_close_cancels_every_pending_resync(
    asterisk: FakeAsterisk, session: aiohttp.ClientSession
) -> None:
    rec = Recorder()
    rec.gate = asyncio.Event()  # never set: on_connect hangs
    stream = make_stream(session, asterisk.url, rec)
    task = asyncio.create_task(stream.run())
    _, ws = await asterisk.next_socket()
    await ws.close()
    await asterisk.next_socket()  # second connection; its resync waits behind the first
    await asyncio.wait_for(stream.close(), WAIT)
    await asyncio.wait_for(task, WAIT)
    assert rec.active == 0
    assert not [t for t in asyncio.all_tasks() if (t.get_name() or "").startswith("ari-resync")]
