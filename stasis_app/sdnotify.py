"""systemd's notify protocol (``Type=notify``, ``WatchdogSec=``) without a dependency.

A datagram of ``KEY=VALUE`` lines to the AF_UNIX socket named by ``$NOTIFY_SOCKET`` (a path, or
``@name`` for the abstract namespace). Outside systemd the variable is unset and every function
here is a no-op, so the service runs the same under a terminal, Docker or tests.

Where ``cli.cmd_run`` uses it::

    async with sdnotify.watchdog():                      # pings until the process is done
        async with running_service(settings) as service:
            async with sdnotify.lifecycle(service.readiness):
                await _wait_for_signal()                 # READY=1 once DB, LISTEN, ARI are up;
                                                         # STOPPING=1 when this block is left

The watchdog wraps the whole service, shutdown grace included, so a slow but healthy shutdown
is never killed for a missed ping; a blocked event loop stops the pings and systemd restarts us.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Callable, Mapping

log = logging.getLogger(__name__)

READY = "READY=1"
STOPPING = "STOPPING=1"
WATCHDOG = "WATCHDOG=1"

# How often announce_ready() looks at the readiness checks while something is still down.
READY_POLL = 0.2

Checks = Callable[[], Mapping[str, bool]]


def _address(env: Mapping[str, str]) -> str | None:
    """The socket address from ``$NOTIFY_SOCKET``: a path, or ``@name`` → ``\\0name``."""
    value = env.get("NOTIFY_SOCKET", "")
    if value.startswith("@"):
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None  # unset, or a transport we don't speak (e.g. vsock): behave as outside systemd


def notify(*assignments: str, env: Mapping[str, str] | None = None) -> bool:
    """Send ``KEY=VALUE`` assignments in one datagram; True if one was sent.

    Never raises and never blocks: the socket is non-blocking, and a failure (systemd gone,
    queue full) is logged and dropped, since supervision must not take the service down.
    """
    address = _address(os.environ if env is None else env)
    if address is None or not assignments:
        return False
    payload = "\n".join(assignments).encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.setblocking(False)
            sock.sendto(payload, address)
    except OSError as exc:
        log.warning("sd_notify failed: %s", exc, extra={"action": "sd_notify_error"})
        return False
    return True


def watchdog_interval(env: Mapping[str, str] | None = None) -> float | None:
    """Seconds between watchdog pings (half of ``$WATCHDOG_USEC``), or None when not enabled.

    Like sd_watchdog_enabled(3): ``$WATCHDOG_PID``, when set, must be this process, so a child
    that inherited the environment does not ping for its parent.
    """
    env = os.environ if env is None else env
    pid = env.get("WATCHDOG_PID", "")
    if pid and pid != str(os.getpid()):
        return None
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    return usec / 2 / 1_000_000


async def ping_watchdog(interval: float, env: Mapping[str, str] | None = None) -> None:
    """Send WATCHDOG=1 every ``interval`` seconds, forever (cancel to stop).

    It runs on the event loop on purpose: a loop blocked for longer than ``WatchdogSec`` sends
    no pings, and systemd restarts the service.
    """
    while True:
        notify(WATCHDOG, env=env)
        await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def watchdog(env: Mapping[str, str] | None = None) -> AsyncIterator[float | None]:
    """Ping the systemd watchdog while inside; yields the interval (None: watchdog not enabled)."""
    interval = watchdog_interval(env)
    if interval is None:
        yield None
        return
    task = asyncio.create_task(ping_watchdog(interval, env), name="sd-watchdog")
    try:
        yield interval
    finally:
        await _cancel(task)


async def announce_ready(
    checks: Checks, env: Mapping[str, str] | None = None, poll: float = READY_POLL
) -> None:
    """Send READY=1 once every readiness check is true (e.g. ``Service.readiness``).

    Until then STATUS= names what is still down, which ``systemctl status`` shows.
    """
    waiting: list[str] | None = None
    while True:
        down = sorted(name for name, up in checks().items() if not up)
        if not down:
            notify(READY, "STATUS=running", env=env)
            log.info("ready", extra={"action": "sd_ready"})
            return
        if down != waiting:
            notify("STATUS=waiting for " + ", ".join(down), env=env)
            waiting = down
        await asyncio.sleep(poll)


@contextlib.asynccontextmanager
async def lifecycle(
    checks: Checks, env: Mapping[str, str] | None = None, poll: float = READY_POLL
) -> AsyncIterator[None]:
    """READY=1 in the background once ``checks`` pass; STOPPING=1 when the block is left."""
    task = asyncio.create_task(announce_ready(checks, env, poll), name="sd-ready")
    try:
        yield
    finally:
        await _cancel(task)
        notify(STOPPING, "STATUS=stopping", env=env)


async def _cancel(task: asyncio.Task[None]) -> None:
    """Cancel and reap ``task``; a cancellation of the caller itself still propagates."""
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
