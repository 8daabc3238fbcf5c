"""What to do after every ARI (re)connect: Asterisk does not replay missed events."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from stasis_app.callflow.engine import CallEngine
from stasis_app.callflow.identity import IdentityObjects
from stasis_app.domain.channels import Channel

log = logging.getLogger(__name__)


class ResyncAri(Protocol):
    async def info(self, only: str | None = None) -> dict[str, Any]: ...

    async def list_channels(self) -> list[Channel]: ...


class Resync:
    def __init__(self, ari: ResyncAri, engine: CallEngine, identities: IdentityObjects) -> None:
        self._ari = ari
        self._engine = engine
        self._identities = identities
        self._startup_time: object = None

    async def __call__(self) -> None:
        listed_at = asyncio.get_running_loop().time()
        info = await self._ari.info("status")
        startup_time = info.get("status", {}).get("startup_time")
        if self._startup_time is not None and startup_time != self._startup_time:
            # Memory sorcery objects died with the old Asterisk: recreate them on demand.
            log.warning("Asterisk restarted", extra={"action": "asterisk_restarted"})
            self._identities.forget_all()
        self._startup_time = startup_time
        channels = await self._ari.list_channels()
        self._engine.resync({channel.id for channel in channels}, listed_at)
