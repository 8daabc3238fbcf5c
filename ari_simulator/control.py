"""``/_sim/...``: control routes for tests that drive the simulator from another process.

No authentication, not in the request log. Each handler only calls the Simulator's Python API.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ari_simulator.config import Script
from ari_simulator.errors import SimulatorError
from ari_simulator.faults import EventFault, Fault, fault_from_json

if TYPE_CHECKING:
    from ari_simulator.server import Simulator


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)


def _error(exc: Exception, status: int) -> web.Response:
    return _json({"message": str(exc)}, status)


async def _body(request: web.Request) -> Any:
    raw = await request.read()
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise SimulatorError(f"body is not JSON: {exc}") from None


class ControlRoutes:
    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/_sim/requests", self.get_requests),
            web.delete("/_sim/requests", self.clear_requests),
            web.put("/_sim/scripts/{number}", self.put_script),
            web.delete("/_sim/scripts/{number}", self.delete_script),
            web.post("/_sim/inbound", self.inbound),
            web.post("/_sim/channels/{channel_id}/hangup", self.far_end_hangup),
            web.get("/_sim/channels", self.get_channels),
            web.post("/_sim/drop", self.drop),
            web.post("/_sim/restart", self.restart),
            web.post("/_sim/inject", self.inject),
            web.get("/_sim/faults", self.get_faults),
            web.put("/_sim/faults", self.put_faults),
            web.delete("/_sim/faults", self.clear_faults),
        ]

    async def get_requests(self, request: web.Request) -> web.Response:
        return _json([r.to_json() for r in self.sim.requests])

    async def clear_requests(self, request: web.Request) -> web.Response:
        self.sim.clear_requests()
        return web.Response(status=204)

    async def put_script(self, request: web.Request) -> web.Response:
        try:
            script = Script.from_json(await _body(request))
        except SimulatorError as exc:
            return _error(exc, 400)
        self.sim.script(request.match_info["number"], script)
        return web.Response(status=204)

    async def delete_script(self, request: web.Request) -> web.Response:
        self.sim.script(request.match_info["number"], None)
        return web.Response(status=204)

    async def inbound(self, request: web.Request) -> web.Response:
        try:
            body = await _body(request)
            if not isinstance(body, dict) or not {"caller", "exten"} <= body.keys():
                raise SimulatorError('body must be {"caller": ..., "exten": ...}')
            channel_id = await self.sim.inbound_call(
                str(body["caller"]),
                str(body["exten"]),
                caller_name=str(body.get("caller_name", "")),
            )
        except SimulatorError as exc:
            return _error(exc, 400)
        return _json({"channel_id": channel_id})

    async def far_end_hangup(self, request: web.Request) -> web.Response:
        try:
            await self.sim.far_end_hangup(request.match_info["channel_id"])
        except SimulatorError as exc:
            return _error(exc, 404)
        return web.Response(status=204)

    async def get_channels(self, request: web.Request) -> web.Response:
        channels = [ch.to_json() for ch in self.sim.channels.values()]
        if request.query.get("ended") in ("1", "true", "yes"):
            channels += [ch.to_json() for ch in self.sim.ended_channels.values()]
        return _json(channels)

    async def drop(self, request: web.Request) -> web.Response:
        await self.sim.drop_websockets()
        return web.Response(status=204)

    async def restart(self, request: web.Request) -> web.Response:
        await self.sim.restart()
        return web.Response(status=204)

    async def inject(self, request: web.Request) -> web.Response:
        try:
            event = await _body(request)
            if not isinstance(event, dict) or "type" not in event:
                raise SimulatorError('an event is a JSON object with a "type"')
        except SimulatorError as exc:
            return _error(exc, 400)
        await self.sim.inject(event)
        return web.Response(status=204)

    async def get_faults(self, request: web.Request) -> web.Response:
        faults: list[Fault | EventFault] = [*self.sim.faults, *self.sim.event_faults]
        return _json([fault.to_json() for fault in faults])

    async def put_faults(self, request: web.Request) -> web.Response:
        """Replace every fault: a JSON list of fault objects (or one): REST faults
        ``{"method", "path_prefix", "status", "delay_ms", ...}``, event faults
        ``{"event_type", "channel_prefix", "times"}``."""
        try:
            body = await _body(request)
            items = body if isinstance(body, list) else [body]
            faults = [fault_from_json(item) for item in items]
        except SimulatorError as exc:
            return _error(exc, 400)
        self.sim.set_faults(faults)
        return web.Response(status=204)

    async def clear_faults(self, request: web.Request) -> web.Response:
        self.sim.clear_faults()
        return web.Response(status=204)
