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


def build_app(readiness: Readiness, pool: asyncpg.Pool, settings: Settings) -> web.Application:
    app = web.Application(client_max_size=settings.api_max_body)
    add_health_routes(app, readiness)
    add_api_routes(app, pool, settings)
    return app


@contextlib.asynccontextmanager
async def serving(app: web.Application, listen: str) -> AsyncIterator[str]:
    """Serve ``app``; yield its base URL (the real port when 0 was asked for)."""
    host, port = parse_listen(listen)
    runner = web.AppRunner(app, access_log=None)
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
