"""The two small interfaces the call flow uses: a piece of ARI and a piece of the store.

The real ones are ``stasis_app.ari.AriRest`` and ``stasis_app.store.requests.RequestStore``;
the unit tests pass in-memory fakes (``tests/callflow_fakes.py``). ARI failures are the
``domain.ari_errors`` classes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from stasis_app.domain.channels import Bridge, Channel
from stasis_app.domain.request import CallbackRequest, Outcome


class AriPort(Protocol):
    async def originate(
        self,
        *,
        endpoint: str,
        channel_id: str,
        app: str,
        app_args: Sequence[str],
        caller_id: str | None,
        timeout: int,
        variables: Mapping[str, str],
    ) -> Channel: ...

    async def hangup(self, channel_id: str, *, reason: str | None = None) -> bool: ...

    async def ring(self, channel_id: str) -> None: ...

    async def get_channel(self, channel_id: str) -> Channel: ...

    async def ring_stop(self, channel_id: str) -> None: ...

    async def create_bridge(
        self, bridge_id: str, *, bridge_type: str = "mixing", name: str | None = None
    ) -> Bridge: ...

    async def add_channels(self, bridge_id: str, channel_ids: Sequence[str]) -> None: ...

    async def destroy_bridge(self, bridge_id: str) -> bool: ...

    async def get_bridge(self, bridge_id: str) -> Bridge: ...

    async def get_config(
        self, config_class: str, object_type: str, object_id: str
    ) -> dict[str, str]: ...

    async def put_config(
        self, config_class: str, object_type: str, object_id: str, fields: Mapping[str, str]
    ) -> None: ...

    async def delete_config(self, config_class: str, object_type: str, object_id: str) -> bool: ...


class StorePort(Protocol):
    async def start_attempt(
        self, req: CallbackRequest, call_id: str, channel_id: str
    ) -> float | None: ...

    async def leg_a_answered(
        self,
        req: CallbackRequest,
        sip_call_id: str | None,
        twoway_call_id: str,
        leg_b_channel_id: str,
    ) -> bool: ...

    async def bridged(
        self, req: CallbackRequest, bridge_id: str, leg_b_sip_call_id: str | None
    ) -> bool: ...

    async def finish(self, req: CallbackRequest, outcome: Outcome) -> bool: ...

    async def retry(self, req: CallbackRequest, outcome: Outcome, delay: float) -> bool: ...

    async def release(self, req: CallbackRequest) -> bool: ...
