"""``/healthz`` (the process answers), ``/readyz`` (DB, LISTEN and ARI up) and ``/metrics``."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from stasis_app.metrics import REGISTRY

Readiness = Callable[[], dict[str, bool]]
READINESS_KEY: web.AppKey[Readiness] = web.AppKey("readiness")


async def healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "alive"})


async def readyz(request: web.Request) -> web.Response:
    checks = request.app[READINESS_KEY]()
    ready = all(checks.values())
    body = {
        "ready": ready,
        "checks": checks,
        "down": sorted(name for name, up in checks.items() if not up),
    }
    return web.json_response(body, status=200 if ready else 503)


async def metrics(_request: web.Request) -> web.Response:
    # CONTENT_TYPE_LATEST carries a charset parameter, which aiohttp wants separately.
    content_type, _, charset = CONTENT_TYPE_LATEST.partition("; charset=")
    return web.Response(
        body=generate_latest(REGISTRY), content_type=content_type, charset=charset or None
    )


def add_health_routes(app: web.Application, readiness: Readiness) -> None:
    app[READINESS_KEY] = readiness
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
