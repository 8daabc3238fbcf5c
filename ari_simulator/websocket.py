"""``GET /ari/events?app=NAME[,NAME2]``: the event WebSocket of one or more Stasis apps."""

from __future__ import annotations

from aiohttp import web

from ari_simulator.apps import EventSocket
from ari_simulator.core import Pbx
from ari_simulator.middleware import json_response


class EventsRoute:
    def __init__(self, pbx: Pbx) -> None:
        self.pbx = pbx

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/ari/events", self.handle)]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        names = tuple(n for n in request.query.get("app", "").split(",") if n)
        if not names:
            return json_response({"message": "Missing param 'app'"}, 400)
        # Asterisk does not compress frames; aiohttp would, and pay for it at every event
        ws = web.WebSocketResponse(compress=False, autoping=True)
        if not ws.can_prepare(request).ok:
            return json_response({"message": "WebSocket upgrade required"}, 400)
        await ws.prepare(request)
        sock = EventSocket(ws, names)
        self.pbx.apps.attach(sock)
        self.pbx.notify()
        try:
            async for _message in ws:
                pass  # Asterisk ignores what the client sends; pings are answered by aiohttp
        finally:
            self.pbx.apps.detach(sock)
            await sock.stop_writer()
            self.pbx.notify()
        return ws
