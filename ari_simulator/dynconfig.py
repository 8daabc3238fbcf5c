"""ARI dynamic configuration (``/asterisk/config/dynamic``) of res_pjsip sorcery objects.

Objects from pjsip.conf (the trunk endpoint and its aor) are read-only; PUT creates memory
objects, which an Asterisk restart forgets. Messages and statuses follow resource_asterisk.c
and the probes in ``ari-traces/versions``.
"""

from __future__ import annotations

import hashlib
from typing import Any

from ari_simulator.config import SimulatorConfig
from ari_simulator.errors import AriHttpError
from ari_simulator.templates import (
    ENDPOINT_WRITE_ONLY,
    FRESH_ENDPOINT,
    auth_template,
    endpoint_template,
)

Key = tuple[str, str, str]  # (config class, object type, id)
CONFIG_CLASS = "res_pjsip"
OBJECT_TYPES = ("endpoint", "auth", "aor")
_TRUE = frozenset({"yes", "true", "y", "t", "1", "on"})
_AUTH_TYPES_16 = frozenset({"userpass", "md5", "google_oauth"})
_AUTH_TYPES_20 = _AUTH_TYPES_16 | {"digest"}
_AOR_DEFAULTS: dict[str, str] = {
    "contact": "",
    "max_contacts": "0",
    "qualify_frequency": "0",
    "default_expiration": "3600",
    "remove_existing": "false",
}


class _Invalid(Exception):
    """A field the object type does not accept (becomes Asterisk's 400)."""


def md5_hex(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()  # noqa: S324 - SIP digest HA1 is MD5


def auth_ha1(auth: dict[str, str], realm: str) -> str | None:
    """The HA1 Asterisk would answer a challenge for ``realm`` with."""
    kind = auth.get("auth_type", "userpass")
    if kind in ("md5", "digest"):
        return auth.get("md5_cred", "").lower() or None
    if kind == "userpass":
        return md5_hex(f"{auth.get('username', '')}:{realm}:{auth.get('password', '')}")
    return None


class DynamicConfig:
    def __init__(self, cfg: SimulatorConfig) -> None:
        self.version = cfg.version
        self.can_create = cfg.dynamic_config
        self.memory: dict[Key, dict[str, str]] = {}
        trunk = dict(endpoint_template(cfg.version))
        trunk["context"] = cfg.context
        trunk["aors"] = cfg.trunk_endpoint
        self.static: dict[Key, dict[str, str]] = {
            (CONFIG_CLASS, "endpoint", cfg.trunk_endpoint): trunk,
            (CONFIG_CLASS, "aor", cfg.trunk_endpoint): {
                **_AOR_DEFAULTS,
                "contact": "sip:127.0.0.1:5070",
            },
        }

    # --- lookups used by the call engine -------------------------------------------------

    def endpoint(self, name: str) -> dict[str, str] | None:
        return self._find((CONFIG_CLASS, "endpoint", name))

    def auth(self, name: str) -> dict[str, str] | None:
        return self._find((CONFIG_CLASS, "auth", name))

    def clear_memory(self) -> None:
        self.memory.clear()

    # --- REST operations -----------------------------------------------------------------

    def get(self, cls: str, kind: str, obj_id: str) -> list[dict[str, str]]:
        self._check_type(cls, kind)
        found = self._find((cls, kind, obj_id))
        if found is None:
            raise AriHttpError(404, f"Object with id '{obj_id}' not found")
        return _as_fields(found)

    def put(self, cls: str, kind: str, obj_id: str, body: Any) -> list[dict[str, str]]:
        self._check_type(cls, kind)
        key = (cls, kind, obj_id)
        static = key in self.static
        current = self._find(key)
        created = current is None
        fields = _parse_fields(body)
        if fields is None and not created:
            raise AriHttpError(400, f"Fields must be provided to update object '{obj_id}'")
        obj = dict(current) if current is not None else self._fresh(kind)
        try:
            self._apply(kind, obj, fields or [])
        except _Invalid:
            verb = "Creation" if created else "Update"
            raise AriHttpError(
                400, f"{verb} of object '{obj_id}' failed field value validation"
            ) from None
        if static:
            raise AriHttpError(403, f"Cannot update sorcery objects of type '{kind}'")
        if created and not self.can_create:
            raise AriHttpError(403, f"Cannot create sorcery objects of type '{kind}'")
        self.memory[key] = obj
        return _as_fields(obj)

    def delete(self, cls: str, kind: str, obj_id: str) -> None:
        self._check_type(cls, kind)
        key = (cls, kind, obj_id)
        if key in self.static:
            raise AriHttpError(403, f"Could not delete object with id '{obj_id}'")
        if self.memory.pop(key, None) is None:
            raise AriHttpError(404, f"Object with id '{obj_id}' not found")

    # --- helpers -------------------------------------------------------------------------

    def _find(self, key: Key) -> dict[str, str] | None:
        found = self.static.get(key)
        return found if found is not None else self.memory.get(key)

    @staticmethod
    def _check_type(cls: str, kind: str) -> None:
        if cls != CONFIG_CLASS:
            raise AriHttpError(404, f"configClass '{cls}' not found")
        if kind not in OBJECT_TYPES:
            raise AriHttpError(404, f"objectType '{kind}' not found")

    def _fresh(self, kind: str) -> dict[str, str]:
        if kind == "endpoint":
            return {k: FRESH_ENDPOINT.get(k, v) for k, v in endpoint_template(self.version)}
        if kind == "auth":
            return dict(auth_template(self.version))
        return dict(_AOR_DEFAULTS)

    def _apply(self, kind: str, obj: dict[str, str], fields: list[tuple[str, str]]) -> None:
        if kind == "endpoint":
            self._apply_endpoint(obj, fields)
        elif kind == "auth":
            self._apply_auth(obj, fields)
        else:
            obj.update(fields)  # aor: not validated (the app never writes one)

    def _apply_endpoint(self, obj: dict[str, str], fields: list[tuple[str, str]]) -> None:
        template = dict(endpoint_template(self.version))
        for attr, value in fields:
            if attr in ENDPOINT_WRITE_ONLY:
                continue
            if attr not in template:
                raise _Invalid(attr)  # e.g. a 22-only attribute sent to 16
            if template[attr] in ("true", "false"):
                obj[attr] = "true" if value.lower() in _TRUE else "false"
            elif attr == "allow":
                obj[attr] = _codec_list(value)
            else:
                obj[attr] = value

    def _apply_auth(self, obj: dict[str, str], fields: list[tuple[str, str]]) -> None:
        for attr, value in fields:
            if attr not in obj:
                raise _Invalid(attr)
            obj[attr] = value
        kinds = _AUTH_TYPES_20 if self.version >= 20 else _AUTH_TYPES_16
        if obj["auth_type"] not in kinds:
            raise _Invalid("auth_type")
        if obj["md5_cred"] and len(obj["md5_cred"]) != 32:
            raise _Invalid("md5_cred")
        if "password_digest" in obj:  # 20+: the two spellings of one HA1 mirror each other
            digest = obj["password_digest"]
            if digest and ":" not in digest:
                raise _Invalid("password_digest")
            if digest.upper().startswith("MD5:") and not obj["md5_cred"]:
                obj["md5_cred"] = digest[4:]
            if obj["md5_cred"]:
                obj["password_digest"] = f"MD5:{obj['md5_cred']}"


def _as_fields(obj: dict[str, str]) -> list[dict[str, str]]:
    return [{"attribute": k, "value": v} for k, v in obj.items()]


def _parse_fields(body: Any) -> list[tuple[str, str]] | None:
    if body is None:
        return None
    if not isinstance(body, dict):
        raise AriHttpError(400, "Bad request body")
    fields = body.get("fields")
    if fields is None:
        return None
    if not isinstance(fields, list):
        raise AriHttpError(400, "Invalid fields provided")
    parsed: list[tuple[str, str]] = []
    for item in fields:
        if not (
            isinstance(item, dict)
            and isinstance(item.get("attribute"), str)
            and isinstance(item.get("value"), str)
        ):
            raise AriHttpError(400, "Invalid fields provided")
        parsed.append((item["attribute"], item["value"]))
    return parsed


def _codec_list(value: str) -> str:
    """Asterisk prints ``allow=ulaw,alaw`` as ``(ulaw|alaw)``."""
    if value.startswith("("):
        return value
    codecs = [c.strip() for c in value.replace("|", ",").split(",") if c.strip()]
    return f"({'|'.join(codecs)})"
