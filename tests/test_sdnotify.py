"""sd_notify against real AF_UNIX datagram sockets, as systemd listens for them.

Every wait is a bounded receive of the datagram the code under test must send: no sleeps.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from stasis_app import sdnotify
from tests.conftest import ServiceFactory

WAIT = 5.0  # upper bound of any receive; a passing test returns as soon as the datagram is there


class Listener:
    """The systemd side: a bound datagram socket and the NOTIFY_SOCKET value naming it."""

    def __init__(self, sock: socket.socket, notify_socket: str) -> None:
        self.sock = sock
        self.env = {"NOTIFY_SOCKET": notify_socket}

    def recv(self) -> str:
        self.sock.settimeout(WAIT)
        return self.sock.recv(4096).decode()

    async def arecv(self) -> str:
        self.sock.setblocking(False)
        loop = asyncio.get_running_loop()
        data = await asyncio.wait_for(loop.sock_recv(self.sock, 4096), WAIT)
        return data.decode()


@pytest.fixture
def path_listener(tmp_path: Path) -> Iterator[Listener]:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        yield Listener(sock, str(path))


@pytest.fixture
def abstract_listener() -> Iterator[Listener]:
    name = f"twoway-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        yield Listener(sock, "@" + name)


@pytest.fixture(params=["path", "abstract"])
def listener(request: pytest.FixtureRequest) -> Listener:
    fixture: Listener = request.getfixturevalue(f"{request.param}_listener")
    return fixture


@pytest.mark.parametrize("state", [sdnotify.READY, sdnotify.WATCHDOG, sdnotify.STOPPING])
def test_each_state_reaches_the_socket(listener: Listener, state: str) -> None:
    assert sdnotify.notify(state, env=listener.env)
    assert listener.recv() == state


def test_assignments_share_one_datagram(listener: Listener) -> None:
    assert sdnotify.notify(sdnotify.READY, "STATUS=running", env=listener.env)
    assert listener.recv() == "READY=1\nSTATUS=running"


def test_unset_variable_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert not sdnotify.notify(sdnotify.READY)
    assert not sdnotify.notify(sdnotify.READY, env={})
    assert not sdnotify.notify(sdnotify.READY, env={"NOTIFY_SOCKET": ""})


def test_reads_the_process_environment(
    monkeypatch: pytest.MonkeyPatch, path_listener: Listener
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", path_listener.env["NOTIFY_SOCKET"])
    assert sdnotify.notify(sdnotify.READY)
    assert path_listener.recv() == "READY=1"


def test_unknown_transport_is_a_no_op() -> None:
    assert not sdnotify.notify(sdnotify.READY, env={"NOTIFY_SOCKET": "vsock:2:1234"})


def test_gone_socket_is_reported_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert not sdnotify.notify(
        sdnotify.READY, env={"NOTIFY_SOCKET": str(tmp_path / "missing.sock")}
    )
    assert "sd_notify failed" in caplog.text


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
    ],
)
def test_watchdog_interval_is_half_of_watchdog_usec(
    env: dict[str, str], expected: float | None
) -> None:
    assert sdnotify.watchdog_interval(env) == expected


async def test_watchdog_pings_while_the_loop_runs(listener: Listener) -> None:
    env = {**listener.env, "WATCHDOG_USEC": "20000"}  # every 10 ms
    async with sdnotify.watchdog(env) as interval:
        assert interval == pytest.approx(0.01)
        assert [await listener.arecv() for _ in range(3)] == [sdnotify.WATCHDOG] * 3


async def test_watchdog_not_enabled_sends_nothing(listener: Listener) -> None:
    async with sdnotify.watchdog(listener.env) as interval:
        assert interval is None
    # Datagrams arrive in order: a marker first means nothing was sent before it.
    sdnotify.notify("X_MARKER=1", env=listener.env)
    assert await listener.arecv() == "X_MARKER=1"


async def test_ready_waits_for_every_check_then_stopping(listener: Listener) -> None:
    checks = {"database": True, "listen": False, "ari": False}
    async with sdnotify.lifecycle(lambda: checks, listener.env, poll=0.01):
        assert await listener.arecv() == "STATUS=waiting for ari, listen"
        checks["listen"] = True
        assert await listener.arecv() == "STATUS=waiting for ari"
        checks["ari"] = True
        assert await listener.arecv() == "READY=1\nSTATUS=running"
    assert await listener.arecv() == "STOPPING=1\nSTATUS=stopping"


async def test_stopping_before_ready_never_claims_ready(listener: Listener) -> None:
    async with sdnotify.lifecycle(lambda: {"ari": False}, listener.env, poll=0.01):
        assert await listener.arecv() == "STATUS=waiting for ari"
    assert await listener.arecv() == "STOPPING=1\nSTATUS=stopping"


async def test_lifecycle_outside_systemd_is_silent() -> None:
    async with sdnotify.watchdog({}), sdnotify.lifecycle(lambda: {"ari": True}, {}, poll=0.01):
        pass


async def test_ready_once_the_real_service_is_up(
    start_service: ServiceFactory, path_listener: Listener
) -> None:
    """How cli.cmd_run uses it: Service.readiness (database, LISTEN, ARI) gates READY=1."""
    service = await start_service()
    async with sdnotify.lifecycle(service.readiness, path_listener.env, poll=0.01):
        messages = [await path_listener.arecv()]
        while not messages[-1].startswith(sdnotify.READY):
            assert messages[-1].startswith("STATUS=waiting for "), messages
            messages.append(await path_listener.arecv())
        assert all(service.readiness().values())
    assert await path_listener.arecv() == "STOPPING=1\nSTATUS=stopping"
