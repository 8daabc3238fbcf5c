"""ARI REST calls over one aiohttp session.

Every call goes through ``AriRest._request``: one place for auth, timeout, error mapping, debug
logging and the metrics hook. Only operations that exist since Asterisk 16 are used (``ping``
is 16.2+ and falls back to ``/asterisk/info`` before that).

Nothing here logs a query string or a body: originate variables, hangup reasons and, above all,
the dynamic config of an auth object (``md5_cred``, echoed back by Asterisk) stay out of logs
and exceptions.
"""

from __future__ import annotations

import asyncio
import contextlib
import json as jsonlib
import logging
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, Final
from urllib.parse import quote

import aiohttp
from pydantic import SecretStr

from stasis_app.ari.errors import AriNotFound, AriUnavailable, error_for_status
from stasis_app.ari.http import basic_auth_header, describe_transport_error, normalise_base_url
from stasis_app.domain.channels import Bridge, Channel

log = logging.getLogger(__name__)

Observer = Callable[[str, float, int | None], None]
"""Metrics hook: (operation name, seconds, HTTP status or None on a transport error)."""

# Config attributes whose values are credentials: scrubbed from any error message we build.
SECRET_ATTRIBUTES: Final = frozenset(
    {"md5_cred", "password", "password_digest", "oauth_secret", "refresh_token"}
)

_INVALID: Final = object()  # sentinel: a body that is not JSON


def _seg(value: str) -> str:
    """One path segment, percent-quoted so an id can never change the path."""
    return quote(value, safe="")


class AriRest:
    """Typed ARI REST operations. Raises ``AriError`` subclasses, never aiohttp exceptions."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        *,
        user: str,
        password: str | SecretStr,
        timeout: float,
        observer: Observer | None = None,
        max_connections: int | None = None,
    ) -> None:
        self._session = session
        # Requests beyond the connection pool wait here, before their timeout starts: waiting
        # for a free connection is not Asterisk failing to answer (no "unknown outcome").
        self._slots: contextlib.AbstractAsyncContextManager[Any] = (
            asyncio.Semaphore(max_connections) if max_connections else contextlib.nullcontext()
        )
        self._ari = normalise_base_url(base_url) + "/ari"
        self._headers: Final = {"Authorization": basic_auth_header(user, password)}
        self._timeout_s = timeout
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self.observer = observer

    def __repr__(self) -> str:
        return f"AriRest({self._ari!r})"

    # --- the one way out ----------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        op: str,
        secrets: Collection[str] = (),
    ) -> Any:
        """Send one request; return the decoded JSON body (None for an empty body).

        ``path`` is relative to ``/ari`` and is the only part of the request that may appear in
        logs and exceptions. ``secrets`` are scrubbed from any error message.
        """
        async with self._slots:
            return await self._send(method, path, params=params, json=json, op=op, secrets=secrets)

    async def _send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None,
        json: Any,
        op: str,
        secrets: Collection[str],
    ) -> Any:
        start = time.perf_counter()
        try:
            async with self._session.request(
                method,
                self._ari + path,
                params=params,
                json=json,
                headers=self._headers,
                timeout=self._timeout,
                allow_redirects=False,  # ARI never redirects; a redirect must not carry auth
            ) as resp:
                status = resp.status
                reason = resp.reason or ""
                body = await resp.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            elapsed = time.perf_counter() - start
            self._observe(op, elapsed, None)
            description = describe_transport_error(exc, self._timeout_s)
            log.debug(
                "ARI %s %s failed after %.1f ms: %s",
                method,
                path,
                elapsed * 1000,
                description,
                extra={"action": "ari_request", "op": op, "status": None},
            )
            raise AriUnavailable(description, method=method, path=path) from exc
        elapsed = time.perf_counter() - start
        self._observe(op, elapsed, status)
        log.debug(
            "ARI %s %s -> %d in %.1f ms",
            method,
            path,
            status,
            elapsed * 1000,
            extra={"action": "ari_request", "op": op, "status": status},
        )

        data: Any = None
        if body:
            try:
                data = jsonlib.loads(body)
            except ValueError:
                data = _INVALID
        if status >= 300:
            message = data.get("message") if isinstance(data, dict) else None
            if not isinstance(message, str):
                message = reason
            for secret in secrets:
                if secret:
                    message = message.replace(secret, "***")
            raise error_for_status(status, message, method=method, path=path)
        if data is _INVALID:
            raise AriUnavailable(
                "response body is not JSON", status=status, method=method, path=path
            )
        return data

    def _observe(self, op: str, seconds: float, status: int | None) -> None:
        if self.observer is None:
            return
        try:
            self.observer(op, seconds, status)
        except Exception:  # a metrics bug must not fail a call
            log.warning("ARI observer failed", exc_info=True, extra={"action": "ari_observer"})

    @staticmethod
    def _object(data: Any, method: str, path: str) -> Mapping[str, Any]:
        if not isinstance(data, dict):
            raise AriUnavailable("unexpected response shape", method=method, path=path)
        return data

    @staticmethod
    def _list(data: Any, method: str, path: str) -> list[Any]:
        if not isinstance(data, list):
            raise AriUnavailable("unexpected response shape", method=method, path=path)
        return data

    def _channel(self, data: Any, method: str, path: str) -> Channel:
        try:
            return Channel.from_json(self._object(data, method, path))
        except ValueError as exc:
            raise AriUnavailable(str(exc), method=method, path=path) from None

    def _bridge(self, data: Any, method: str, path: str) -> Bridge:
        try:
            return Bridge.from_json(self._object(data, method, path))
        except ValueError as exc:
            raise AriUnavailable(str(exc), method=method, path=path) from None

    # --- channels -----------------------------------------------------------------------------

    async def originate(
        self,
        *,
        endpoint: str,
        channel_id: str,
        app: str,
        app_args: Sequence[str],
        caller_id: str | None,
        timeout: int,  # the ring timeout Asterisk applies (-1: none), not an asyncio timeout
        variables: Mapping[str, str],
    ) -> Channel:
        """``POST /channels`` into our Stasis app with our own channel id.

        Register the leg before awaiting this: its events can arrive before the response.
        """
        if isinstance(app_args, str):
            raise TypeError("app_args must be a sequence of strings, not a string")
        for arg in app_args:
            if "," in arg:  # Stasis() splits its arguments on commas
                raise ValueError("an app argument must not contain a comma")
        params = {
            "endpoint": endpoint,
            "app": app,
            "appArgs": ",".join(app_args),
            "timeout": str(timeout),
            "channelId": channel_id,
        }
        if caller_id is not None:
            params["callerId"] = caller_id
        body = {"variables": dict(variables)} if variables else None
        data = await self._request("POST", "/channels", params=params, json=body, op="originate")
        return self._channel(data, "POST", "/channels")

    async def hangup(self, channel_id: str, *, reason: str | None = None) -> bool:
        """``DELETE /channels/{id}``; ``False`` when the channel was already gone.

        Use named reasons (busy, rejected, congestion, ...): ``reason_code`` is ignored on 16.
        """
        params = {"reason": reason} if reason else None
        try:
            await self._request(
                "DELETE", f"/channels/{_seg(channel_id)}", params=params, op="hangup"
            )
        except AriNotFound:
            return False
        return True

    async def answer(self, channel_id: str) -> None:
        await self._request("POST", f"/channels/{_seg(channel_id)}/answer", op="answer")

    async def ring(self, channel_id: str) -> None:
        await self._request("POST", f"/channels/{_seg(channel_id)}/ring", op="ring")

    async def ring_stop(self, channel_id: str) -> None:
        await self._request("DELETE", f"/channels/{_seg(channel_id)}/ring", op="ring_stop")

    async def get_channel(self, channel_id: str) -> Channel:
        path = f"/channels/{_seg(channel_id)}"
        return self._channel(await self._request("GET", path, op="get_channel"), "GET", path)

    async def list_channels(self) -> list[Channel]:
        data = self._list(
            await self._request("GET", "/channels", op="list_channels"), "GET", "/channels"
        )
        return [self._channel(item, "GET", "/channels") for item in data]

    async def get_variable(self, channel_id: str, name: str) -> str:
        """A channel variable or function, e.g. ``CHANNEL(pjsip,call-id)`` (works on 16+)."""
        path = f"/channels/{_seg(channel_id)}/variable"
        data = self._object(
            await self._request("GET", path, params={"variable": name}, op="get_variable"),
            "GET",
            path,
        )
        value = data.get("value")
        return value if isinstance(value, str) else ""

    # --- bridges ------------------------------------------------------------------------------

    async def create_bridge(
        self, bridge_id: str, *, bridge_type: str = "mixing", name: str | None = None
    ) -> Bridge:
        params = {"type": bridge_type, "bridgeId": bridge_id}
        if name is not None:
            params["name"] = name
        data = await self._request("POST", "/bridges", params=params, op="create_bridge")
        return self._bridge(data, "POST", "/bridges")

    async def add_channels(self, bridge_id: str, channel_ids: Sequence[str]) -> None:
        if isinstance(channel_ids, str):
            raise TypeError("channel_ids must be a sequence of ids, not a string")
        await self._request(
            "POST",
            f"/bridges/{_seg(bridge_id)}/addChannel",
            params={"channel": ",".join(channel_ids)},
            op="add_channels",
        )

    async def destroy_bridge(self, bridge_id: str) -> bool:
        """``DELETE /bridges/{id}``; ``False`` when it was already gone."""
        try:
            await self._request("DELETE", f"/bridges/{_seg(bridge_id)}", op="destroy_bridge")
        except AriNotFound:
            return False
        return True

    async def get_bridge(self, bridge_id: str) -> Bridge:
        path = f"/bridges/{_seg(bridge_id)}"
        return self._bridge(await self._request("GET", path, op="get_bridge"), "GET", path)

    async def list_bridges(self) -> list[Bridge]:
        data = self._list(
            await self._request("GET", "/bridges", op="list_bridges"), "GET", "/bridges"
        )
        return [self._bridge(item, "GET", "/bridges") for item in data]

    # --- dynamic configuration (sorcery) ------------------------------------------------------

    @staticmethod
    def _config_path(config_class: str, object_type: str, object_id: str) -> str:
        return (
            f"/asterisk/config/dynamic/{_seg(config_class)}/{_seg(object_type)}/{_seg(object_id)}"
        )

    async def get_config(
        self, config_class: str, object_type: str, object_id: str
    ) -> dict[str, str]:
        """attribute → value of a sorcery object (all attributes, as this Asterisk knows them).

        For an auth object the result holds its credential: do not log it.
        """
        path = self._config_path(config_class, object_type, object_id)
        data = self._list(await self._request("GET", path, op="get_config"), "GET", path)
        result: dict[str, str] = {}
        for item in data:
            if isinstance(item, dict):
                attribute, value = item.get("attribute"), item.get("value")
                if isinstance(attribute, str):
                    result[attribute] = value if isinstance(value, str) else str(value)
        return result

    async def put_config(
        self,
        config_class: str,
        object_type: str,
        object_id: str,
        fields: Mapping[str, str],
    ) -> None:
        """Create or update a memory sorcery object. The response (which echoes ``md5_cred``
        for an auth object) is deliberately dropped."""
        path = self._config_path(config_class, object_type, object_id)
        body = {"fields": [{"attribute": k, "value": v} for k, v in fields.items()]}
        secrets = [v for k, v in fields.items() if k in SECRET_ATTRIBUTES]
        await self._request("PUT", path, json=body, op="put_config", secrets=secrets)

    async def delete_config(self, config_class: str, object_type: str, object_id: str) -> bool:
        """``False`` when the object did not exist."""
        path = self._config_path(config_class, object_type, object_id)
        try:
            await self._request("DELETE", path, op="delete_config")
        except AriNotFound:
            return False
        return True

    # --- asterisk -----------------------------------------------------------------------------

    async def ping(self) -> None:
        """Raise unless Asterisk answers. ``/asterisk/ping`` is 16.2+; older 16 gets ``info``."""
        try:
            await self._request("GET", "/asterisk/ping", op="ping")
        except AriNotFound:
            await self._request("GET", "/asterisk/info", params={"only": "system"}, op="ping")

    async def application(self, name: str) -> dict[str, Any] | None:
        """``GET /applications/{name}`` (13+): the Stasis app while one is registered, else None."""
        path = f"/applications/{_seg(name)}"
        try:
            data = await self._request("GET", path, op="application")
        except AriNotFound:
            return None
        return dict(self._object(data, "GET", path))

    async def info(self, only: str | None = None) -> dict[str, Any]:
        """``GET /asterisk/info`` (``only``: build, system, config, status)."""
        params = {"only": only} if only else None
        data = await self._request("GET", "/asterisk/info", params=params, op="info")
        return dict(self._object(data, "GET", "/asterisk/info"))


__all__ = ["SECRET_ATTRIBUTES", "AriRest", "Observer"]
