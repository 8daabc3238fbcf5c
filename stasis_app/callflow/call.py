"""One call's shared state: the row, the ports, the legs and the inbox that each step works on."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from stasis_app.callflow import timing
from stasis_app.callflow.inbox import Inbox
from stasis_app.callflow.legs import Legs
from stasis_app.callflow.ports import AriPort, StorePort
from stasis_app.domain.ari_errors import AriError
from stasis_app.domain.request import CallbackRequest, Status

# The logger name call lines have always carried (operators filter on it).
log = logging.getLogger("stasis_app.callflow.session")


@dataclass(frozen=True, slots=True)
class CallConfig:
    app: str
    leg_a_timeout: float
    leg_b_timeout: float
    max_call_duration: float
    max_attempts: int
    retry_delay: float
    retry_delay_max: float
    retry_on_destination_failure: bool
    call_id_header: str
    dynamic_identity: bool
    trunk_endpoint: str
    # How long after an ARI request went unanswered (timed out) Asterisk may still act on it
    # (an originate creating its channel late): "it does not exist" is believed only after.
    late_act: float = 0.0


class Call:
    def __init__(
        self,
        req: CallbackRequest,
        *,
        ari: AriPort,
        store: StorePort,
        config: CallConfig,
        recovered: bool,
    ) -> None:
        self.req = req
        self.ari = ari
        self.store = store
        self.cfg = config
        self.recovered = recovered
        self.loop = asyncio.get_running_loop()
        self.legs = Legs()
        self.inbox = Inbox(self.legs)
        self.log = RequestLog(log, {"request_id": req.id})
        self.bridge_id: str | None = None  # set once it may exist: teardown destroys it
        self.call_id = ""
        self.dialled = False  # this attempt was recorded: it counts
        self.phase = Status.CALLING  # calling | connecting | bridged: the live-requests gauge

    def now(self) -> float:
        return self.loop.time()

    @property
    def attempts(self) -> int:
        """Attempts made, this one included once it was dialled."""
        return self.req.attempts + (1 if self.dialled else 0)

    @property
    def max_attempts(self) -> int:
        return self.req.max_attempts or self.cfg.max_attempts

    def wake(self, deadline: float) -> float:
        """``deadline``, or sooner in a recovered session (its legs are looked up by id)."""
        if not self.recovered:
            return deadline
        return min(deadline, self.now() + timing.RECOVERED_POLL)

    async def quietly(self, request: Awaitable[Any]) -> None:
        """Best-effort ARI calls (ringback, bridge cleanup): log, never abort the flow."""
        try:
            await request
        except AriError as exc:
            self.log.warning("ARI call failed: %s", exc, extra={"action": "ari_error"})


class RequestLog(logging.LoggerAdapter[logging.Logger]):
    """Puts the request id on every line, merged with the line's own fields."""

    def process(self, msg: str, kwargs: Any) -> tuple[str, Any]:
        kwargs["extra"] = {**(self.extra or {}), **kwargs.get("extra", {})}
        return msg, kwargs
