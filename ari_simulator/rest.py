"""The ARI REST subset, under ``/ari``: thin handlers over the core (core.py, bridges.py,
dynconfig.py). Errors are raised as AriHttpError and rendered by the middleware."""

from __future__ import annotations

import platform
from typing import Any

from aiohttp import web

from ari_simulator.core import Pbx
from ari_simulator.errors import AriHttpError
from ari_simulator.events import timestamp
from ari_simulator.middleware import json_response, no_content, read_json
from ari_simulator.originate import Originate

VERSION_STRINGS = {16: "16.30.1", 20: "20.20.1", 22: "22.10.1"}
_MODULES = (
    ("app_stasis.so", "Stasis dialplan application"),
    ("chan_pjsip.so", "PJSIP Channel Driver"),
    ("res_ari.so", "Asterisk RESTful Interface"),
    ("res_pjsip.so", "Basic SIP resource"),
    ("res_sorcery_memory.so", "Sorcery In-Memory Object Wizard"),
    ("res_stasis.so", "Stasis application support"),
)


def _params(request: web.Request, body: Any) -> dict[str, str]:
    """Query parameters, overridden by scalar members of a JSON body (Asterisk's
    ``*_parse_body``: any query parameter may come in the body)."""
    params = dict(request.query)
    if isinstance(body, dict):
        for key, value in body.items():
            if isinstance(value, str | int | float) and not isinstance(value, bool):
                params[key] = str(value)
    return params


def _int(value: str | None, default: int) -> int:
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        return 0  # atoi(), as Asterisk's generated parser


def _list(value: str | None, name: str) -> list[str]:
    items = [v for v in (value or "").split(",") if v]
    if not items:
        raise AriHttpError(400, f"Missing required field {name}")
    return items


class AriRoutes:
    def __init__(self, pbx: Pbx) -> None:
        self.pbx = pbx

    def routes(self) -> list[web.RouteDef]:
        ch = "/ari/channels/{channel_id}"
        br = "/ari/bridges/{bridge_id}"
        dyn = "/ari/asterisk/config/dynamic/{config_class}/{object_type}/{object_id}"
        return [
            web.get("/ari/channels", self.list_channels),
            web.post("/ari/channels", self.originate),
            web.post("/ari/channels/create", self.not_implemented),
            web.get(ch, self.get_channel),
            web.post(ch, self.originate_with_id),
            web.delete(ch, self.hangup),
            web.post(ch + "/answer", self.answer),
            web.post(ch + "/ring", self.ring),
            web.delete(ch + "/ring", self.ring_stop),
            web.get(ch + "/variable", self.get_variable),
            web.post(ch + "/variable", self.set_variable),
            web.get("/ari/bridges", self.list_bridges),
            web.post("/ari/bridges", self.create_bridge),
            web.get(br, self.get_bridge),
            web.post(br, self.create_bridge_with_id),
            web.delete(br, self.destroy_bridge),
            web.post(br + "/addChannel", self.add_channel),
            web.post(br + "/removeChannel", self.remove_channel),
            web.get(dyn, self.get_object),
            web.put(dyn, self.put_object),
            web.delete(dyn, self.delete_object),
            web.get("/ari/asterisk/info", self.info),
            web.get("/ari/asterisk/ping", self.ping),
            web.get("/ari/asterisk/modules", self.modules),
            web.get("/ari/applications", self.list_applications),
            web.get("/ari/applications/{name}", self.get_application),
        ]

    async def not_implemented(self, request: web.Request) -> web.Response:
        raise AriHttpError(501, "Method not implemented")

    # --- channels ------------------------------------------------------------------------

    async def list_channels(self, request: web.Request) -> web.Response:
        return json_response([ch.snapshot() for ch in self.pbx.channels.values()])

    async def get_channel(self, request: web.Request) -> web.Response:
        return json_response(self.pbx.channel(request.match_info["channel_id"]).snapshot())

    async def originate(self, request: web.Request) -> web.Response:
        return await self._originate(request, None)

    async def originate_with_id(self, request: web.Request) -> web.Response:
        return await self._originate(request, request.match_info["channel_id"])

    async def _originate(self, request: web.Request, channel_id: str | None) -> web.Response:
        body = await read_json(request)
        params = _params(request, body)
        variables = body.get("variables") if isinstance(body, dict) else None
        if variables is not None and not (
            isinstance(variables, dict) and all(isinstance(v, str) for v in variables.values())
        ):
            raise AriHttpError(400, "Only string values in the 'variables' object allowed")
        req = Originate(
            endpoint=params.get("endpoint", ""),
            app=params.get("app") or None,
            app_args=params.get("appArgs", ""),
            extension=params.get("extension") or None,
            caller_id=params.get("callerId", ""),
            timeout=_int(params.get("timeout"), 30),
            channel_id=channel_id or params.get("channelId") or None,
            variables=variables or {},
        )
        return json_response(self.pbx.originate(req).snapshot())

    async def hangup(self, request: web.Request) -> web.Response:
        q = request.query
        self.pbx.app_hangup(
            request.match_info["channel_id"], q.get("reason") or None, q.get("reason_code")
        )
        return no_content()

    async def answer(self, request: web.Request) -> web.Response:
        self.pbx.answer(request.match_info["channel_id"])
        return no_content()

    async def ring(self, request: web.Request) -> web.Response:
        self.pbx.ring(request.match_info["channel_id"], True)
        return no_content()

    async def ring_stop(self, request: web.Request) -> web.Response:
        self.pbx.ring(request.match_info["channel_id"], False)
        return no_content()

    async def get_variable(self, request: web.Request) -> web.Response:
        value = self.pbx.get_var(
            request.match_info["channel_id"], request.query.get("variable", "")
        )
        return json_response({"value": value})

    async def set_variable(self, request: web.Request) -> web.Response:
        params = _params(request, await read_json(request))
        self.pbx.set_var(
            request.match_info["channel_id"],
            params.get("variable", ""),
            params.get("value", ""),
        )
        return no_content()

    # --- bridges -------------------------------------------------------------------------

    async def list_bridges(self, request: web.Request) -> web.Response:
        return json_response([b.snapshot() for b in self.pbx.bridges.items.values()])

    async def get_bridge(self, request: web.Request) -> web.Response:
        return json_response(self.pbx.bridges.get(request.match_info["bridge_id"]).snapshot())

    async def create_bridge(self, request: web.Request) -> web.Response:
        params = _params(request, await read_json(request))
        bridge = self.pbx.bridges.create(
            params.get("bridgeId") or None, params.get("type") or None, params.get("name", "")
        )
        return json_response(bridge.snapshot())

    async def create_bridge_with_id(self, request: web.Request) -> web.Response:
        params = _params(request, await read_json(request))
        bridge = self.pbx.bridges.create_or_update(
            request.match_info["bridge_id"], params.get("type") or None, params.get("name", "")
        )
        return json_response(bridge.snapshot())

    async def destroy_bridge(self, request: web.Request) -> web.Response:
        self.pbx.bridges.destroy(request.match_info["bridge_id"])
        return no_content()

    async def add_channel(self, request: web.Request) -> web.Response:
        bridge_id = request.match_info["bridge_id"]
        self.pbx.bridges.get(bridge_id)  # 404 before any channel check, as Asterisk
        channels = _list(request.query.get("channel"), "channel")
        self.pbx.bridges.add(bridge_id, channels)
        return no_content()

    async def remove_channel(self, request: web.Request) -> web.Response:
        bridge_id = request.match_info["bridge_id"]
        self.pbx.bridges.get(bridge_id)
        channels = _list(request.query.get("channel"), "channel")
        self.pbx.bridges.remove(bridge_id, channels)
        return no_content()

    # --- dynamic configuration -----------------------------------------------------------

    @staticmethod
    def _object_key(request: web.Request) -> tuple[str, str, str]:
        m = request.match_info
        return m["config_class"], m["object_type"], m["object_id"]

    async def get_object(self, request: web.Request) -> web.Response:
        return json_response(self.pbx.config.get(*self._object_key(request)))

    async def put_object(self, request: web.Request) -> web.Response:
        body = await read_json(request)
        return json_response(self.pbx.config.put(*self._object_key(request), body))

    async def delete_object(self, request: web.Request) -> web.Response:
        self.pbx.config.delete(*self._object_key(request))
        return no_content()

    # --- asterisk, applications ----------------------------------------------------------

    async def info(self, request: web.Request) -> web.Response:
        cfg = self.pbx.cfg
        started = self.pbx.startup_time
        info: dict[str, Any] = {
            "build": {
                "os": platform.system(),
                "kernel": platform.release(),
                "machine": platform.machine(),
                "options": "OPTIONAL_API",
                "date": started[:19].replace("T", " ") + " UTC",
                "user": "root",
            },
            "system": {"version": VERSION_STRINGS[cfg.version], "entity_id": cfg.asterisk_id},
            "config": {
                "name": "",
                "default_language": "en",
                "setid": {"user": "", "group": ""},
            },
            "status": {"startup_time": started, "last_reload_time": started},
        }
        only = [part for part in request.query.get("only", "").split(",") if part]
        if only:
            info = {key: value for key, value in info.items() if key in only}
        return json_response(info)

    async def ping(self, request: web.Request) -> web.Response:
        return json_response(
            {"ping": "pong", "timestamp": timestamp(), "asterisk_id": self.pbx.cfg.asterisk_id}
        )

    async def modules(self, request: web.Request) -> web.Response:
        return json_response(
            [
                {
                    "name": name,
                    "description": description,
                    "use_count": 0,
                    "status": "Running",
                    "support_level": "core",
                }
                for name, description in _MODULES
            ]
        )

    def _application(self, name: str) -> dict[str, Any]:
        pbx = self.pbx
        return {
            "name": name,
            "channel_ids": [
                ch.id for ch in pbx.channels.values() if ch.app == name and ch.subscribed
            ],
            "bridge_ids": [b.id for b in pbx.bridges.items.values() if name in b.apps],
            "endpoint_ids": [],
            "device_names": [],
            "events_allowed": [],
            "events_disallowed": [],
        }

    def _known(self, name: str) -> dict[str, Any] | None:
        """The app as ARI shows it, or None. Asterisk forgets an app whose WebSocket closed as
        soon as nothing is subscribed to it (res_stasis cleanup: no handler, no forwards)."""
        if not self.pbx.apps.registered(name):
            return None
        app = self._application(name)
        if self.pbx.apps.active(name) or app["channel_ids"] or app["bridge_ids"]:
            return app
        return None

    async def list_applications(self, request: web.Request) -> web.Response:
        known = (self._known(name) for name in list(self.pbx.apps.apps))
        return json_response([app for app in known if app is not None])

    async def get_application(self, request: web.Request) -> web.Response:
        app = self._known(request.match_info["name"])
        if app is None:
            raise AriHttpError(404, "Application not found")
        return json_response(app)
