"""What every ``/ari`` request goes through: authentication, the request log, and turning
errors into Asterisk's JSON answers."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from ari_simulator.errors import AriHttpError
from ari_simulator.faults import Faults
from ari_simulator.model import RequestRecord

ARI_PREFIX = "/ari"
EVENTS_PATH = "/ari/events"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        text=json.dumps(data, separators=(",", ":")),
        status=status,
        content_type="application/json",
    )


def no_content() -> web.Response:
    return web.Response(status=204)


async def read_json(request: web.Request) -> Any:
    """The request body as JSON, None when empty (Asterisk: 400 when it does not parse)."""
    raw = await request.read()
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError:
        raise AriHttpError(400, "Error parsing request body") from None


class AriMiddleware:
    def __init__(
        self,
        user: str,
        password: str,
        record: Callable[[RequestRecord], None],
        faults: Faults | None = None,
    ):
        self._user = user
        self._password = password
        self._basic = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self._record = record
        self._faults = faults if faults is not None else Faults()

    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization")
        if header is not None:  # Basic wins over api_key, as in res_ari.c
            if header == self._basic:
                return True
            return _basic_credentials(header) == (self._user, self._password)
        api_key = request.query.get("api_key")
        if api_key is None:
            return False
        user, sep, password = api_key.partition(":")
        return bool(sep) and user == self._user and password == self._password

    @web.middleware
    async def handle(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if not (path == ARI_PREFIX or path.startswith(ARI_PREFIX + "/")):
            return await handler(request)
        if path == EVENTS_PATH:  # the WebSocket: not a REST request, not logged
            return await handler(request) if self._authorized(request) else _unauthorized()
        if self._authorized(request):
            response = await self._faults.run(
                request, path[len(ARI_PREFIX) :], lambda: self._dispatch(request, handler)
            )
        else:
            response = _unauthorized()
        body = await read_json_quietly(request)
        query = {k: v for k, v in request.query.items() if k != "api_key"}
        self._record(
            RequestRecord(request.method, path[len(ARI_PREFIX) :], query, body, response.status)
        )
        return response

    @staticmethod
    async def _dispatch(request: web.Request, handler: Handler) -> web.StreamResponse:
        if path_ends_with_slash(request.path):
            slashless = request.path[len(ARI_PREFIX) + 1 : -1]
            return json_response(
                {"message": f"ARI URLs do not end with a slash. Try /ari/{slashless}"}, 404
            )
        try:
            return await handler(request)
        except AriHttpError as exc:
            return json_response(exc.body, exc.status)
        except web.HTTPMethodNotAllowed:
            return json_response({"message": "Invalid method"}, 405)
        except web.HTTPNotFound:
            return json_response({"message": "Resource not found"}, 404)


def _unauthorized() -> web.StreamResponse:
    response = json_response({"message": "Authentication required"}, 401)
    response.headers["WWW-Authenticate"] = 'Basic realm="Asterisk REST Interface"'
    return response


def _basic_credentials(header: str) -> tuple[str, str] | None:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def path_ends_with_slash(path: str) -> bool:
    return len(path) > len(ARI_PREFIX) + 1 and path.endswith("/")


async def read_json_quietly(request: web.Request) -> Any:
    """The body for the request log: JSON, else its text, else None."""
    try:
        return await read_json(request)
    except AriHttpError:
        return (await request.read()).decode(errors="replace")
