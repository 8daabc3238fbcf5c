"""The JSON API's handlers (/v1/callbacks). Errors are raised; jsonapi's middleware answers them."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from stasis_app.api.body import read_body
from stasis_app.api.errors import BadRequest
from stasis_app.api.operations import Callbacks


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # json.loads would take NaN and Infinity


def parse_json_object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body.decode("utf-8"), parse_constant=_no_constants)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BadRequest("the body is not valid UTF-8 JSON") from None
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object")
    return data


class CallbackHandlers:
    def __init__(self, callbacks: Callbacks, max_body: int) -> None:
        self._callbacks = callbacks
        self._max_body = max_body

    async def create(self, request: web.Request) -> web.Response:
        data = parse_json_object(await read_body(request, self._max_body))
        created = await self._callbacks.create(data)
        return web.json_response(
            created, status=201, headers={"Location": f"/v1/callbacks/{created['id']}"}
        )

    async def get(self, request: web.Request) -> web.Response:
        return web.json_response(await self._callbacks.get(request.match_info["id"]))

    async def list(self, request: web.Request) -> web.Response:
        query = {name: request.query.getall(name) for name in request.query}
        return web.json_response(await self._callbacks.list(query))

    async def cancel(self, request: web.Request) -> web.Response:
        return web.json_response(await self._callbacks.cancel(request.match_info["id"]))
