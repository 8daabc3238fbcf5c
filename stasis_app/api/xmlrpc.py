"""XML-RPC at /xmlrpc: callback.create, callback.get, callback.cancel, system.listMethods.

Every answer is HTTP 200 with a methodResponse: a result, or a fault whose code says what went
wrong (table in ``api.errors``: 1 invalid params, 2 not found, 3 conflict, 4 unauthorized,
5 internal, 6 malformed request, 7 no such method, 8 rate limited, 9 body too large,
10 refused by the destination policy, 11 the token lacks the method's scope).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import hdrs, web

from stasis_app.api.auth import Client, Guard
from stasis_app.api.body import read_body
from stasis_app.api.errors import INTERNAL_FAULT, ApiError, InvalidInput, NoSuchMethod, Problem
from stasis_app.api.operations import Callbacks
from stasis_app.api.xmlrpc_wire import dump_fault, dump_result, from_wire, parse_call

log = logging.getLogger(__name__)

Method = Callable[..., Awaitable[Any]]


class XmlRpcEndpoint:
    def __init__(self, callbacks: Callbacks, guard: Guard, max_body: int) -> None:
        self._guard = guard
        self._max_body = max_body
        self._callbacks = callbacks
        # name -> (implementation, the parameters it takes (for the fault string), its scope)
        self._methods: dict[str, tuple[Method, tuple[str, ...], str | None]] = {
            "callback.create": (self._create, ("struct",), "create"),
            "callback.get": (callbacks.get, ("id",), "read"),
            "callback.cancel": (callbacks.cancel, ("id",), "cancel"),
            "system.listMethods": (self._list_methods, (), None),
        }

    async def handle(self, request: web.Request) -> web.Response:
        try:
            client = self._guard.admit(
                request.headers.get(hdrs.AUTHORIZATION), address=request.remote, allow_basic=True
            )
            method, params = parse_call(await read_body(request, self._max_body))
            body = dump_result(await self._call(client, method, params))
        except ApiError as exc:
            body = dump_fault(exc.fault_code, exc.fault_string())
        except Exception as exc:
            log.error(
                "xml-rpc request failed: %s",
                type(exc).__name__,
                exc_info=exc,
                extra={"action": "api_error", "method": "POST", "path": request.path},
            )
            body = dump_fault(INTERNAL_FAULT, "internal error")
        return web.Response(body=body, content_type="text/xml", charset="utf-8")

    async def _call(self, client: Client, name: str, params: tuple[Any, ...]) -> Any:
        if name not in self._methods:
            raise NoSuchMethod(f"no method {name[:64]!r}: see system.listMethods")
        implementation, takes, scope = self._methods[name]
        if scope is not None:
            client.require(scope)
        if len(params) != len(takes):
            wanted = ", ".join(takes) or "no parameters"
            raise InvalidInput(
                [Problem("params", f"{name} takes ({wanted}), got {len(params)} parameter(s)")]
            )
        return await implementation(*params)

    async def _create(self, struct: object) -> Any:
        if isinstance(struct, dict):
            struct = {name: from_wire(value) for name, value in struct.items()}
        return await self._callbacks.create(struct)

    async def _list_methods(self) -> list[str]:
        return sorted(self._methods)
