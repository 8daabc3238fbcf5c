"""Runs the call sessions of this instance: admits claimed rows, routes events, frees slots."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Mapping
from uuid import UUID

from stasis_app import metrics
from stasis_app.callflow.call import CallConfig
from stasis_app.callflow.identity import IdentityObjects
from stasis_app.callflow.ids import Ids
from stasis_app.callflow.inbox import SHUTDOWN
from stasis_app.callflow.limits import RateLimiter
from stasis_app.callflow.ports import AriPort, StorePort
from stasis_app.callflow.session import CallSession
from stasis_app.domain.channels import ChannelStateChange, Dial, Event, StasisStart
from stasis_app.domain.request import CallbackRequest

log = logging.getLogger(__name__)

CANCEL_PREFIX = "cancel:"
# Events that say a channel is alive (late ChannelDestroyed and the like say nothing new).
LIVE_CHANNEL_EVENTS = (StasisStart, Dial, ChannelStateChange)


class CallEngine:
    def __init__(
        self,
        *,
        ari: AriPort,
        store: StorePort,
        identities: IdentityObjects,
        limiter: RateLimiter,
        ids: Ids,
        config: CallConfig,
        max_concurrent: int,
        on_slot_freed: Callable[[], None] = lambda: None,
    ) -> None:
        self._ari = ari
        self._store = store
        self._identities = identities
        self._limiter = limiter
        self._ids = ids
        self._config = config
        self._max_concurrent = max_concurrent
        self._sessions: dict[int, CallSession] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._orphans: set[str] = set()  # bounded by the calls that go wrong this way
        self._orphan_tasks: set[asyncio.Task[bool]] = set()
        self.on_slot_freed = on_slot_freed
        # Inbound trigger calls (not ours by id) go here; set by the inbound handler.
        self.on_foreign_start: Callable[[StasisStart], None] | None = None

    # -- capacity ------------------------------------------------------------------------------

    @property
    def live(self) -> int:
        return len(self._sessions)

    def free_slots(self) -> int:
        return max(0, self._max_concurrent - len(self._sessions))

    def live_leases(self) -> dict[int, UUID]:
        return {rid: session.req.lease_token for rid, session in self._sessions.items()}

    def count_in_phase(self, phase: str) -> int:
        return sum(1 for session in self._sessions.values() if session.phase == phase)

    def sessions(self) -> list[CallSession]:
        return list(self._sessions.values())

    # -- inputs ---------------------------------------------------------------------------------

    def admit(self, requests: list[CallbackRequest]) -> None:
        metrics.CLAIMED.inc(len(requests))
        self._start(requests, recovered=False)

    def adopt(self, requests: list[CallbackRequest]) -> None:
        """Live rows recovered from a lost instance."""
        self._start(requests, recovered=True)

    def _start(self, requests: list[CallbackRequest], *, recovered: bool) -> None:
        for req in requests:
            if req.id in self._sessions:  # already ours: a second session would orphan it
                continue
            session = CallSession(
                req,
                ari=self._ari,
                store=self._store,
                identities=self._identities,
                limiter=self._limiter,
                ids=self._ids,
                config=self._config,
                recovered=recovered,
            )
            self._sessions[req.id] = session
            task = asyncio.create_task(self._run(session), name=f"callback-{req.id}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def on_event(self, event: Event) -> None:
        channel_id = event.channel_id
        if channel_id is None:
            return
        parsed = self._ids.parse(channel_id)
        if parsed is None:
            if isinstance(event, StasisStart) and self.on_foreign_start is not None:
                self.on_foreign_start(event)
            return
        session = self._sessions.get(parsed.request_id)
        if session is not None and session.owns(channel_id):
            session.deliver(event)
        elif isinstance(event, LIVE_CHANNEL_EVENTS):
            self._hang_up_orphan(channel_id)

    def _hang_up_orphan(self, channel_id: str) -> None:
        """A channel of ours that no session drives (an originate Asterisk acted on after we
        gave up on it): never leave a phone ringing with nobody behind it."""
        if channel_id in self._orphans:
            return
        self._orphans.add(channel_id)
        log.warning(
            "hanging up a channel no call drives",
            extra={"action": "orphan_hangup", "channel_id": channel_id},
        )
        task = asyncio.create_task(self._ari.hangup(channel_id))
        self._orphan_tasks.add(task)
        task.add_done_callback(self._orphan_done)

    def _orphan_done(self, task: asyncio.Task[bool]) -> None:
        self._orphan_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning(
                "orphan hangup failed: %s",
                task.exception(),
                extra={"action": "orphan_hangup_failed"},
            )

    def on_notify(self, payload: str) -> None:
        if not payload.startswith(CANCEL_PREFIX):
            return
        try:
            request_id = int(payload[len(CANCEL_PREFIX) :])
        except ValueError:
            return
        self.cancel_requests({request_id})

    def cancel_requests(self, request_ids: Collection[int]) -> None:
        """Rows cancelled in the table (NOTIFY, or read back by the reconciliation)."""
        for request_id in request_ids:
            session = self._sessions.get(request_id)
            if session is not None and not session.stopping:
                log.info("cancel requested", extra={"action": "cancel", "request_id": request_id})
                session.cancel()

    def leases_lost(self, leases: Mapping[int, UUID], request_ids: Collection[int]) -> None:
        """Rows another instance took over (their lease token changed) while a session of
        ``leases`` (the tokens the check was made with) still drives them."""
        for request_id in request_ids:
            session = self._sessions.get(request_id)
            if session is None or session.req.lease_token != leases.get(request_id):
                continue  # finished meanwhile, or a newer session of ours
            if session.lease_lost():
                metrics.LEASES_LOST.inc()
                log.warning(
                    "lease lost: another instance owns the request, no longer driving it",
                    extra={"action": "lease_lost", "request_id": request_id},
                )

    # -- lifecycle ------------------------------------------------------------------------------

    async def _run(self, session: CallSession) -> None:
        try:
            await session.run()
        except Exception:
            # run() handles its own errors; this is the last net so a slot is never leaked.
            log.exception(
                "session crashed", extra={"action": "error", "request_id": session.req.id}
            )
        finally:
            self._sessions.pop(session.req.id, None)
            self.on_slot_freed()

    async def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait (never cancelling anything) until no session runs; False on timeout."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)
        return all(task.done() for task in self._tasks)

    def resync(self, channel_ids: set[str], listed_at: float) -> None:
        """After an ARI reconnect: legs that ended while we could not hear are gone."""
        for session in self._sessions.values():
            session.vanished(channel_ids, listed_at)

    def hurry(self) -> None:
        """A second signal: no more grace, hang up and record every call now."""
        for session in self.sessions():
            session.stop(SHUTDOWN)

    async def shutdown(self, grace: float) -> None:
        """Release what is not dialled yet at once; let live calls go on for ``grace``
        seconds; then hang up the rest and record how far each got."""
        for session in self.sessions():
            if not session.dialled:
                session.stop(SHUTDOWN)
        if not await self.wait_idle(grace):
            for session in self.sessions():
                session.stop(SHUTDOWN)
            await self.wait_idle()
