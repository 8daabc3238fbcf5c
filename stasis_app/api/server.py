"""Builds and serves the aiohttp application on TWOWAY_HTTP_LISTEN."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

import asyncpg
from aiohttp import web

from stasis_app.api.health import Readiness, add_health_routes
from stasis_app.api.routes import add_api_routes
from stasis_app.config import Settings, parse_listen

log = logging.getLogger(__name__)

HTTP_SHUTDOWN_TIMEOUT = 5.0


def build_apps(
    readiness: Readiness, pool: asyncpg.Pool, settings: Settings
) -> list[tuple[web.Application, str]]:
    """The applications to serve and where: one, or two with TWOWAY_METRICS_LISTEN."""
    api = web.Application(client_max_size=settings.api_max_body)
    add_api_routes(api, pool, settings)
    if not settings.metrics_listen:
        add_health_routes(api, readiness)
        return [(api, settings.http_listen)]
    health = web.Application()
    add_health_routes(health, readiness)
    return [(api, settings.http_listen), (health, settings.metrics_listen)]


@contextlib.asynccontextmanager
async def serving(app: web.Application, listen: str) -> AsyncIterator[str]:
    """Serve ``app``; yield its base URL (the real port when 0 was asked for)."""
    host, port = parse_listen(listen)
    # In-flight API requests get a few seconds at shutdown; aiohttp's default of 60 s would hold
    # the whole stop (and systemd's stop timeout) behind one idle keep-alive client.
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=HTTP_SHUTDOWN_TIMEOUT)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1] if runner.addresses else port
    url = f"http://{host if ':' not in host else f'[{host}]'}:{bound}"
    log.info("http server listening", extra={"action": "http_listen", "url": url})
    try:
        yield url
    finally:
        await runner.cleanup()
