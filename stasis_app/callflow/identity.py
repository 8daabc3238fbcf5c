"""Per-call digest identity through ARI dynamic configuration (DESIGN.md, Asterisk fact 6).

For each (auth user, HA1) we PUT a memory ``auth`` object and an ``endpoint`` that copies every
attribute of the trunk endpoint (as this Asterisk reports them: versions differ) with its own
``outbound_auth``. Objects are shared by the calls that use the same identity and deleted when
the last of them is done. Responses are never logged: the auth PUT echoes ``md5_cred``.

References are counted per Asterisk lifetime: after a restart (``forget_all``) the objects are
created again under fresh entries, and a release of a reference taken before it is a no-op, so
a call that outlived the old Asterisk never deletes the endpoint a new call is dialling through.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from dataclasses import dataclass, field

from stasis_app.callflow.ports import AriPort

log = logging.getLogger(__name__)

RES_PJSIP = "res_pjsip"


@dataclass
class _Entry:
    refs: int
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    failed: BaseException | None = None


@dataclass(frozen=True, slots=True, eq=False)
class IdentityRef:
    """One call's hold on an identity; release it once."""

    key: str
    entry: _Entry


class IdentityObjects:
    def __init__(self, ari: AriPort, *, trunk: str, realm: str, prefix: str) -> None:
        self._ari = ari
        self._trunk = trunk
        self._realm = realm
        self._prefix = prefix
        self._template: dict[str, str] | None = None
        self._entries: dict[str, _Entry] = {}
        self._deleting: dict[str, asyncio.Task[None]] = {}

    def key(self, auth_user: str, ha1: str) -> str:
        digest = hashlib.sha256(f"{self._realm}\0{auth_user}\0{ha1}".encode()).hexdigest()
        return digest[:16]

    def endpoint_id(self, key: str) -> str:
        return f"{self._prefix}-ep-{key}"

    def auth_id(self, key: str) -> str:
        return f"{self._prefix}-auth-{key}"

    @property
    def live_objects(self) -> int:
        return len(self._entries)

    async def acquire(self, auth_user: str, ha1: str) -> IdentityRef:
        """Make sure the identity's endpoint exists; return the hold on it (release it later)."""
        key = self.key(auth_user, ha1)
        entry = self._entries.get(key)
        if entry is not None:
            entry.refs += 1
            await entry.ready.wait()
            if entry.failed is not None:
                raise entry.failed
            return IdentityRef(key, entry)
        entry = self._entries[key] = _Entry(refs=1)
        try:
            pending_delete = self._deleting.get(key)
            if pending_delete is not None:
                await asyncio.shield(pending_delete)
            await self._create(key, auth_user, ha1)
        except BaseException as exc:
            entry.failed = exc
            self._entries.pop(key, None)
            raise
        finally:
            entry.ready.set()
        return IdentityRef(key, entry)

    async def release(self, ref: IdentityRef) -> None:
        key, entry = ref.key, ref.entry
        if self._entries.get(key) is not entry:
            return  # taken before an Asterisk restart: that entry is forgotten
        entry.refs -= 1
        if entry.refs > 0:
            return
        del self._entries[key]
        task = asyncio.create_task(self._delete(key))
        self._deleting[key] = task
        task.add_done_callback(lambda _t: self._deleting.pop(key, None))
        await asyncio.shield(task)

    def forget_all(self) -> None:
        """Asterisk restarted: its memory objects are gone, and the trunk may have changed."""
        self._template = None
        self._entries.clear()

    async def _create(self, key: str, auth_user: str, ha1: str) -> None:
        if self._template is None:
            self._template = await self._ari.get_config(RES_PJSIP, "endpoint", self._trunk)
        auth = {"auth_type": "md5", "username": auth_user, "md5_cred": ha1}
        if self._realm:
            auth["realm"] = self._realm
        await self._ari.put_config(RES_PJSIP, "auth", self.auth_id(key), auth)
        endpoint = dict(self._template)
        endpoint["outbound_auth"] = self.auth_id(key)
        await self._ari.put_config(RES_PJSIP, "endpoint", self.endpoint_id(key), endpoint)
        log.info(
            "identity objects created",
            extra={"action": "identity_create", "endpoint": self.endpoint_id(key)},
        )

    async def _delete(self, key: str) -> None:
        # Endpoint first: it refers to the auth object.
        with contextlib.suppress(Exception):
            await self._ari.delete_config(RES_PJSIP, "endpoint", self.endpoint_id(key))
        with contextlib.suppress(Exception):
            await self._ari.delete_config(RES_PJSIP, "auth", self.auth_id(key))
        log.info(
            "identity objects deleted",
            extra={"action": "identity_delete", "endpoint": self.endpoint_id(key)},
        )
