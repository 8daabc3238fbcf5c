"""The service's own HTTP side: API tokens for a non-loopback API, and whether its listeners
(API, and metrics when separate) can bind here."""

from __future__ import annotations

import errno
import socket

import aiohttp

from stasis_app.api.routes import refuse_open_api
from stasis_app.config import Settings, is_loopback, parse_listen
from stasis_app.errors import ConfigError
from stasis_app.ops.report import Check, Report


async def run(report: Report, settings: Settings) -> None:
    async with report.check("api") as check:
        _tokens(check, settings)
    async with report.check("http listener") as check:
        await _listener(check, settings.http_listen, "TWOWAY_HTTP_LISTEN", report.timeout)
    async with report.check("metrics") as check:
        if not settings.metrics_listen:
            check.ok(f"/metrics, /healthz, /readyz on TWOWAY_HTTP_LISTEN={settings.http_listen}")
        else:
            await _listener(check, settings.metrics_listen, "TWOWAY_METRICS_LISTEN", report.timeout)


def _tokens(check: Check, settings: Settings) -> None:
    try:
        refuse_open_api(settings)  # exactly what `run` refuses
    except ConfigError as exc:
        check.fail(
            f"`run` refuses to start: {exc}",
            "set TWOWAY_API_TOKENS (see docs/api.md), or bind the API to 127.0.0.1",
        )
        return
    tokens = len(settings.api_token_list)
    if tokens:
        check.ok(f"{tokens} API token(s) set; API on {settings.http_listen}")
    else:
        check.warn(
            f"no API tokens: the API on {settings.http_listen} takes calls from any local user",
            "set TWOWAY_API_TOKENS (comma-separated) unless only trusted users log in here",
        )


async def _listener(check: Check, listen: str, setting: str, timeout: float) -> None:
    host, port = parse_listen(listen)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        with socket.socket(infos[0][0], socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp binds
            sock.bind(infos[0][4])
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            check.fail(
                f"{setting}={listen}: cannot bind: {exc.strerror}", "an address of this host"
            )
        elif await _ours(host, port, timeout):
            check.warn(
                f"{setting}={listen}: a twoway-callback already serves there",
                "fine if it is this site's running service; else give this one another port",
            )
        else:
            check.fail(f"{setting}={listen}: in use by another program", "pick a free port")
        return
    exposure = "" if is_loopback(host) else " (not loopback: firewall it, it has no auth)"
    check.ok(f"{setting}={listen} is free{exposure}")


async def _ours(host: str, port: int, timeout: float) -> bool:
    """Whether the program on that port serves the service's metrics."""
    target = f"[{host}]" if ":" in host else host
    if target in ("0.0.0.0", "[::]"):  # noqa: S104 - a wildcard bind is reached on loopback
        target = "127.0.0.1"
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
            session.get(f"http://{target}:{port}/metrics") as resp,
        ):
            return resp.status == 200 and "twoway_build_info" in await resp.text()
    except (aiohttp.ClientError, TimeoutError):
        return False
