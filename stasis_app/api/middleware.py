"""Everything under /v1: token and rate limit first, then every error as a JSON body.

An unexpected exception becomes ``500 {"error": "internal"}`` with no detail, and is logged
(method and path only: never a body or a header, which may hold secrets).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware

from stasis_app.api.auth import Guard
from stasis_app.api.errors import INTERNAL_STATUS, ApiError, RateLimited, Unauthorized

log = logging.getLogger(__name__)

PREFIX = "/v1"

_HTTP_KINDS = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}


def error_response(exc: ApiError) -> web.Response:
    headers = {}
    if isinstance(exc, Unauthorized):
        headers[hdrs.WWW_AUTHENTICATE] = 'Bearer realm="twoway-callback"'
    elif isinstance(exc, RateLimited):
        headers[hdrs.RETRY_AFTER] = str(max(1, math.ceil(exc.retry_after)))
    return web.json_response(exc.body(), status=exc.http_status, headers=headers)


def _http_error(exc: web.HTTPException) -> web.Response:
    # aiohttp's own refusals (no such route, wrong method, body over client_max_size).
    headers = {hdrs.ALLOW: exc.headers[hdrs.ALLOW]} if hdrs.ALLOW in exc.headers else {}
    body = {"error": _HTTP_KINDS.get(exc.status, "bad_request"), "message": exc.reason}
    return web.json_response(body, status=exc.status, headers=headers)


def json_api_middleware(guard: Guard, scopes: Mapping[web.AbstractRoute, str]) -> Middleware:
    """``scopes``: the scope a token needs for each route (filled as routes are added)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path != PREFIX and not request.path.startswith(PREFIX + "/"):
            return await handler(request)
        try:
            client = guard.admit(
                request.headers.get(hdrs.AUTHORIZATION), address=request.remote, allow_basic=False
            )
            scope = scopes.get(request.match_info.route)
            if scope is not None:
                client.require(scope)
            return await handler(request)
        except ApiError as exc:
            return error_response(exc)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return _http_error(exc)
        except Exception as exc:
            log.error(
                "api request failed: %s",
                type(exc).__name__,
                exc_info=exc,
                extra={"action": "api_error", "method": request.method, "path": request.path},
            )
            return web.json_response({"error": "internal"}, status=INTERNAL_STATUS)

    return middleware
