"""One claimed request, start to end: leg A → leg B → mixing bridge → outcome.

The steps live beside it, one job each: ``legs`` (events folded into leg state), ``dialling``,
``bridging``, ``recovery`` (a lost instance's rows), ``outcomes`` (outcome and retry policy,
pure) and ``teardown``. A session consumes the ARI events of its own channels from one queue
(``inbox``), so events of one request are handled strictly in order. Every wait has a
deadline: no state can hang.
"""

from __future__ import annotations

import contextlib

from stasis_app import metrics
from stasis_app.callflow import bridging, outcomes, recovery
from stasis_app.callflow.call import Call, CallConfig
from stasis_app.callflow.dialling import RELEASED, Dialler
from stasis_app.callflow.identity import IdentityObjects
from stasis_app.callflow.ids import Ids
from stasis_app.callflow.inbox import CANCEL, Fenced, LeaseLost, ShuttingDown
from stasis_app.callflow.limits import RateLimiter
from stasis_app.callflow.outcomes import Recovery
from stasis_app.callflow.plan import InvalidRequest, plan_call
from stasis_app.callflow.ports import AriPort, StorePort
from stasis_app.callflow.teardown import tear_down
from stasis_app.domain.channels import Event
from stasis_app.domain.request import CallbackRequest, LegName, Outcome, Result, Status


class CallSession:
    def __init__(
        self,
        req: CallbackRequest,
        *,
        ari: AriPort,
        store: StorePort,
        identities: IdentityObjects,
        limiter: RateLimiter,
        ids: Ids,
        config: CallConfig,
        recovered: bool = False,
    ) -> None:
        self._call = Call(req, ari=ari, store=store, config=config, recovered=recovered)
        self._ids = ids
        self._dialler = Dialler(self._call, identities=identities, limiter=limiter, ids=ids)
        self._writing = False  # the final write-back has started

    @property
    def req(self) -> CallbackRequest:
        return self._call.req

    @property
    def recovered(self) -> bool:
        return self._call.recovered

    @property
    def dialled(self) -> bool:
        return self._call.dialled

    @property
    def phase(self) -> Status:
        """calling | connecting | bridged: the live-requests gauge."""
        return self._call.phase

    # -- inputs ---------------------------------------------------------------------------------

    def deliver(self, event: Event) -> None:
        self._call.inbox.put(event)

    def cancel(self) -> None:
        self.stop(CANCEL)

    def stop(self, why: str) -> None:
        """Cancel (the row was cancelled) or shut down (the service stops)."""
        self._call.inbox.stop(why)

    @property
    def stopping(self) -> bool:
        inbox = self._call.inbox
        return inbox.stopping is not None or inbox.lease_lost

    def lease_lost(self) -> bool:
        """Another instance took the row over; False when already known, or when the row was
        just written final (its lease ended with it: not a loss)."""
        return not self._writing and self._call.inbox.lose_lease()

    def vanished(self, channel_ids: set[str], listed_at: float) -> None:
        """Resync after a reconnect: legs missing from ``channel_ids`` ended unseen."""
        for gone in self._call.legs.vanished(channel_ids, listed_at):
            self._call.inbox.put(gone)

    def owns(self, channel_id: str) -> bool:
        return self._call.legs.of(channel_id) is not None

    # -- the flow --------------------------------------------------------------------------------

    async def run(self) -> None:
        call = self._call
        outcome: Outcome | None
        try:
            outcome = await self._run_call()
        except LeaseLost:
            outcome = None
        except Fenced:
            outcome = outcomes.CANCELLED
        except ShuttingDown:
            outcome = outcomes.shutdown(
                call.phase, attempts=call.attempts, max_attempts=call.max_attempts
            )
        except Exception as exc:
            call.log.exception("call flow error", extra={"action": "error"})
            outcome = outcomes.internal_error(exc)
        finally:
            # Lease lost: the call is the new owner's; its legs and the identity objects they
            # dial through are left as they are (the objects until Asterisk restarts).
            confirmed = False
            if not call.inbox.lease_lost:
                with contextlib.suppress(LeaseLost):
                    confirmed = await tear_down(call, self._dialler.release_identities)
        if outcome is None or call.inbox.lease_lost:
            return
        if not confirmed:
            # A hang-up Asterisk never confirmed, at shutdown: the row stays live, so the
            # restart (same instance id) looks the channel up and hangs it up.
            call.log.warning(
                "leaving the row live: a hang-up is unconfirmed", extra={"action": "unconfirmed"}
            )
            return
        outcome = outcomes.with_leg_values(
            outcome, call.legs.get(LegName.A), call.legs.get(LegName.B)
        )
        await self._write(outcome)

    async def _run_call(self) -> Outcome | None:
        """The call; None when the row went back to the queue undialled (shutdown)."""
        call = self._call
        if call.recovered:
            return await self._recover()
        try:
            plan = plan_call(call.req, needs_secret=call.cfg.dynamic_identity)
        except InvalidRequest as exc:
            call.log.warning("invalid request: %s", exc, extra={"action": "invalid_request"})
            return Outcome(status=Status.FAILED, result=Result.INVALID_REQUEST, reason=str(exc))
        leg_a_outcome = await self._dialler.leg_a(plan)
        if leg_a_outcome is RELEASED:
            return None
        if leg_a_outcome is not None:
            return leg_a_outcome
        leg_b_outcome = await self._dialler.leg_b(plan)
        if leg_b_outcome is not None:
            return leg_b_outcome
        return await bridging.talk(call, self._ids)

    async def _recover(self) -> Outcome | None:
        """A live row of a lost instance: a bridged call whose legs both survived is adopted
        and finished normally (the conversation goes on undisturbed); anything else still live
        is hung up by the teardown."""
        call = self._call
        await recovery.take_stock(call)
        live = call.legs.live()
        step = outcomes.recovery(
            call.req.status, leg_a_known=LegName.A in call.legs, live_legs=len(live)
        )
        if step is Recovery.RELEASE:
            await call.store.release(call.req)  # claimed but never dialled
            return None
        if step is Recovery.ADOPT:
            for leg in live:
                leg.answered_at = call.now()
            return await bridging.watch(call, live[0], live[1])
        return outcomes.recovered(step, attempts=call.attempts, max_attempts=call.max_attempts)

    async def _write(self, outcome: Outcome) -> None:
        call = self._call
        self._writing = True
        call.log.info(
            "request %s / %s",
            outcome.status,
            outcome.result,
            extra={
                "action": "outcome",
                "status": outcome.status,
                "result": outcome.result,
                "reason": outcome.reason,
            },
        )
        if outcome.status == Status.PENDING:
            delay = outcomes.retry_delay(
                call.req.retry_delay,
                default=call.cfg.retry_delay,
                cap=call.cfg.retry_delay_max,
                attempts=call.req.attempts,
            )
            if await call.store.retry(call.req, outcome, delay):
                metrics.RETRIES.inc()
                return
            outcome = outcomes.unretried(outcome)
        if await call.store.finish(call.req, outcome):
            metrics.FINISHED.labels(outcome.status, outcome.result).inc()
            if outcome.result == Result.ANSWERED and outcome.leg_b_duration is not None:
                metrics.TALK_TIME.observe(outcome.leg_b_duration)
