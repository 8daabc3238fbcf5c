"""One claimed request, start to end: leg A → leg B → mixing bridge → outcome.

A session consumes the ARI events of its own channels from one queue, so events of one request
are handled strictly in order. Every wait has a deadline: no state can hang.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from stasis_app import metrics
from stasis_app.callflow.causes import LegFailure, callback_result, classify, destination_result
from stasis_app.callflow.identity import IdentityObjects
from stasis_app.callflow.ids import BRIDGE, Ids
from stasis_app.callflow.limits import RateLimiter
from stasis_app.callflow.plan import CallPlan, InvalidRequest, LegPlan, plan_call
from stasis_app.callflow.ports import AriPort, StorePort
from stasis_app.domain.ari_errors import AriError, AriNotFound
from stasis_app.domain.channels import (
    ChannelDestroyed,
    ChannelHangupRequest,
    ChannelStateChange,
    Dial,
    Event,
    StasisEnd,
    StasisStart,
)
from stasis_app.domain.request import CallbackRequest, LegName, Outcome, Result, Status

log = logging.getLogger(__name__)

# Beyond the ring timeout we hand to Asterisk: how long to wait for its verdict ourselves.
GUARD = 10.0
# How long to wait for ChannelDestroyed (final causes) after hanging up.
TEARDOWN = 10.0
# Recovered legs may belong to the lost instance's Stasis app, whose events nobody receives:
# look them up by id this often instead of waiting for events.
RECOVERED_POLL = 1.0
# How long a failed bridging waits for the hangup events that may explain it.
SETTLE = 2.0


@dataclass(frozen=True, slots=True)
class _Stop:
    """Queued like an event, so a stop is handled in order with the rest."""

    why: str  # CANCEL | SHUTDOWN


@dataclass(frozen=True, slots=True)
class _Vanished:
    """A leg is gone without events (found missing when resyncing after a reconnect)."""

    channel_id: str


CANCEL = "cancel"
SHUTDOWN = "shutdown"
_Item = Event | _Stop | _Vanished


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


@dataclass
class Leg:
    name: LegName
    channel_id: str
    timeout: float
    originated_at: float
    rang: bool = False
    answered_at: float | None = None
    ended_at: float | None = None
    destroyed: bool = False
    hung_up_by_us: bool = False
    cause: int | None = None
    sip_code: int | None = None
    protocol_id: str | None = None
    confirmed_at: float | None = None  # originate answered 200: Asterisk has the channel
    vanished: bool = False

    @property
    def gone(self) -> bool:
        return self.ended_at is not None

    @property
    def duration(self) -> float | None:
        if self.answered_at is None:
            return None
        return max(0.0, (self.ended_at or self.answered_at) - self.answered_at)


class _UserHangup(Exception):
    """Leg A hung up while leg B was ringing."""


class Fenced(Exception):
    """The row is no longer ours to write (cancelled, or the lease was lost)."""


class _ShuttingDown(Exception):
    """The service stops: hang up and record what the call reached."""


# _dial_leg_a's answer when a shutdown sent the row back to the queue before dialling.
_RELEASED = Outcome(status=Status.PENDING, result=Result.ERROR, reason="released at shutdown")


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
        self.req = req
        self.recovered = recovered
        self._ari = ari
        self._store = store
        self._identities = identities
        self._limiter = limiter
        self._ids = ids
        self._cfg = config
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._legs: dict[str, Leg] = {}
        self._identity_keys: list[str] = []
        self._stopping: str | None = None
        self._stopped = asyncio.Event()
        self._bridge_id: str | None = None
        self._loop = asyncio.get_running_loop()
        self._log = _RequestLog(log, {"request_id": req.id})
        self._call_id = ""
        self.dialled = False
        self.phase = Status.CALLING  # calling | connecting | bridged: the live-requests gauge

    # -- inputs ---------------------------------------------------------------------------------

    def deliver(self, event: Event) -> None:
        self._queue.put_nowait(event)

    def cancel(self) -> None:
        self.stop(CANCEL)

    def stop(self, why: str) -> None:
        """Cancel (the row was cancelled) or shut down (the service stops)."""
        if self._stopping is None:
            self._stopping = why
            self._stopped.set()
            self._queue.put_nowait(_Stop(why))

    def vanished(self, channel_ids: set[str], listed_at: float) -> None:
        """Resync after a reconnect: legs missing from ``channel_ids`` ended unseen.

        Only legs Asterisk had confirmed before the list was asked for: one still being
        originated may simply not be in it yet.
        """
        for leg in self._legs.values():
            if (
                not leg.destroyed
                and leg.confirmed_at is not None
                and leg.confirmed_at < listed_at
                and leg.channel_id not in channel_ids
            ):
                self._queue.put_nowait(_Vanished(leg.channel_id))

    # -- the flow --------------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            outcome = await self._call()
        except Fenced:
            outcome = Outcome(status=Status.CANCELLED, result=Result.CANCELLED, reason="cancelled")
        except _ShuttingDown:
            outcome = self._shutdown_outcome()
        except Exception as exc:
            self._log.exception("call flow error", extra={"action": "error"})
            outcome = Outcome(
                status=Status.FAILED,
                result=Result.ERROR,
                reason=f"internal error: {type(exc).__name__}",
            )
        finally:
            await self._teardown()
        if outcome is None:
            return
        outcome = self._with_leg_values(outcome)
        await self._write(outcome)

    async def _call(self) -> Outcome | None:
        """The call; None when the row went back to the queue undialled (shutdown)."""
        if self.recovered:
            return await self._recover()
        try:
            plan = plan_call(self.req, needs_secret=self._cfg.dynamic_identity)
        except InvalidRequest as exc:
            self._log.warning("invalid request: %s", exc, extra={"action": "invalid_request"})
            return Outcome(status=Status.FAILED, result=Result.INVALID_REQUEST, reason=str(exc))
        leg_a_outcome = await self._dial_leg_a(plan)
        if leg_a_outcome is _RELEASED:
            return None
        if leg_a_outcome is not None:
            return leg_a_outcome
        leg_b_outcome = await self._dial_leg_b(plan)
        if leg_b_outcome is not None:
            return leg_b_outcome
        return await self._talk()

    async def _dial_leg_a(self, plan: CallPlan) -> Outcome | None:
        channel_id = self._ids.channel(self.req.id, self.req.attempts + 1, LegName.A)
        call_id = self.req.call_id or str(uuid.uuid4())
        await self._pace()
        if self._stopping == CANCEL:
            raise Fenced
        if self._stopping == SHUTDOWN:
            await self._store.release(self.req)  # not dialled: back to the queue at once
            self._log.info("released undialled", extra={"action": "release"})
            return _RELEASED
        # Counted (and call_id written back) before anything can fail: retries stay bounded.
        pickup = await self._store.start_attempt(self.req, call_id, channel_id)
        if pickup is None:
            raise Fenced
        metrics.PICKUP.observe(pickup)
        self.dialled = True
        self._call_id = call_id
        leg = await self._place(LegName.A, channel_id, plan.leg_a, call_id, self._cfg.leg_a_timeout)
        if isinstance(leg, str):
            return self._leg_a_failed(LegFailure.FAILED, leg)
        failure = await self._await_answer(leg)
        return None if failure is None else self._leg_a_failed(*failure)

    async def _dial_leg_b(self, plan: CallPlan) -> Outcome | None:
        leg_a = self._legs[LegName.A]
        channel_id = self._ids.channel(self.req.id, self.req.attempts + 1, LegName.B)
        twoway_call_id = self.req.twoway_call_id or f"{self._call_id}-2way"
        if not await self._store.leg_a_answered(
            self.req, leg_a.protocol_id, twoway_call_id, channel_id
        ):
            raise Fenced
        self.phase = Status.CONNECTING
        await self._quietly(self._ari.ring(leg_a.channel_id))  # ringback while B is dialled
        # No CPS wait here: the user has answered and hears ringback; TWOWAY_MAX_CPS paces
        # new callbacks (leg A), so the trunk sees at most twice that many INVITEs a second.
        leg = await self._place(
            LegName.B, channel_id, plan.leg_b, twoway_call_id, self._cfg.leg_b_timeout
        )
        if isinstance(leg, str):
            return self._leg_b_failed(LegFailure.FAILED, leg)
        try:
            failure = await self._await_answer(leg, hangup_watch=leg_a)
        except _UserHangup:
            metrics.LEG_OUTCOMES.labels(LegName.B, "cancelled").inc()
            return Outcome(
                status=Status.FAILED,
                result=Result.USER_HANGUP,
                reason="caller hung up before the destination answered",
            )
        return None if failure is None else self._leg_b_failed(*failure)

    async def _await_answer(
        self, leg: Leg, hangup_watch: Leg | None = None
    ) -> tuple[LegFailure, str] | None:
        """Until ``leg`` answers (None) or fails (why). Every wait is bounded.

        Raises Fenced on a cancel, _UserHangup when ``hangup_watch`` hangs up first.
        """
        while leg.answered_at is None:
            item = await self._next(leg.originated_at + leg.timeout + GUARD)
            if hangup_watch is not None and hangup_watch.gone:
                raise _UserHangup
            if item is None:
                await self._hangup(leg)
                return (
                    LegFailure.NO_ANSWER if leg.rang else LegFailure.FAILED,
                    "no verdict from Asterisk before the ring timeout",
                )
            if leg.destroyed:
                failure = classify(
                    leg.cause,
                    rang=leg.rang,
                    timeout=leg.timeout,
                    elapsed=(leg.ended_at or 0) - leg.originated_at,
                )
                return failure, _cause_text(leg)
        metrics.ANSWER_DELAY.labels(leg.name).observe(leg.answered_at - leg.originated_at)
        metrics.LEG_OUTCOMES.labels(leg.name, "answered").inc()
        self._log.info(
            "leg answered",
            extra={"action": "leg_answered", "leg": leg.name, "channel_id": leg.channel_id},
        )
        return None

    async def _talk(self) -> Outcome:
        leg_a, leg_b = self._legs[LegName.A], self._legs[LegName.B]
        bridge_id = self._ids.bridge(self.req.id, self.req.attempts + 1)
        try:
            await self._ari.create_bridge(bridge_id, bridge_type="mixing", name=bridge_id)
            self._bridge_id = bridge_id
            await self._ari.add_channels(bridge_id, [leg_a.channel_id, leg_b.channel_id])
        except AriError as exc:
            # A leg that hung up while we were bridging: its events may lag the REST answer.
            deadline = self._loop.time() + SETTLE
            while not (leg_a.gone or leg_b.gone):
                if await self._next(deadline) is None:
                    return Outcome(
                        status=Status.FAILED, result=Result.ERROR, reason=f"bridge failed: {exc}"
                    )
            return self._ended_by(leg_a, leg_b)
        await self._quietly(self._ari.ring_stop(leg_a.channel_id))
        if not await self._store.bridged(self.req, bridge_id, leg_b.protocol_id):
            raise Fenced
        self.phase = Status.BRIDGED
        self._log.info("bridged", extra={"action": "bridged", "bridge_id": bridge_id})
        return await self._watch_bridged(leg_a, leg_b)

    async def _watch_bridged(self, leg_a: Leg, leg_b: Leg) -> Outcome:
        deadline = self._loop.time() + self._cfg.max_call_duration
        while not (leg_a.gone or leg_b.gone):
            item = await self._next(self._wake(deadline))
            if item is None and self._loop.time() >= deadline:
                return Outcome(
                    status=Status.COMPLETED,
                    result=Result.ANSWERED,
                    reason="max call duration reached",
                )
            if item is None:
                await self._poll_recovered([leg_a, leg_b])
        return self._ended_by(leg_a, leg_b)

    def _wake(self, deadline: float) -> float:
        """``deadline``, or sooner in a recovered session (its legs are looked up by id)."""
        if not self.recovered:
            return deadline
        return min(deadline, self._loop.time() + RECOVERED_POLL)

    async def _poll_recovered(self, legs: list[Leg]) -> None:
        for leg in legs:
            if not leg.destroyed:
                try:
                    await self._look_up(leg)
                except AriError as exc:
                    self._log.warning(
                        "look-up failed: %s",
                        exc,
                        extra={"action": "ari_error", "channel_id": leg.channel_id},
                    )

    async def _recover(self) -> Outcome | None:
        """A live row of a lost instance. Never dial again while one of its legs may live:
        look its channels up by their deterministic ids first.

        A bridged call whose legs both survived is adopted and finished normally (the
        conversation goes on undisturbed); anything else still live is hung up, because the
        step it was in (ringing, connecting) cannot be resumed reliably without its events.
        """
        req = self.req
        self.phase = req.status
        legs = [(LegName.A, req.leg_a_channel_id), (LegName.B, req.leg_b_channel_id)]
        for name, channel_id in legs:
            if channel_id is not None:
                leg = self._legs[name] = Leg(
                    name=name, channel_id=channel_id, timeout=0, originated_at=self._loop.time()
                )
                await self._look_up(leg)
        # A bridge the lost instance created but had not recorded yet: its id is deterministic
        # (from the leg-A id, whatever the lost instance's prefix); destroying it is harmless.
        self._bridge_id = req.bridge_id or _bridge_of(req.leg_a_channel_id)
        self._log.warning(
            "recovering a request of a lost instance",
            extra={"action": "recover", "status": req.status},
        )
        if req.status == Status.CALLING and LegName.A not in self._legs:
            await self._store.release(req)  # claimed but never dialled
            return None
        live = [leg for leg in self._legs.values() if not leg.destroyed]
        if req.status == Status.BRIDGED and len(live) == 2:
            for leg in live:
                leg.answered_at = self._loop.time()
            return await self._watch_bridged(live[0], live[1])
        if req.status == Status.BRIDGED:
            return Outcome(
                status=Status.COMPLETED,
                result=Result.ANSWERED,
                reason="ended while the service instance was lost",
            )
        return self._retry_or_fail(
            Result.ERROR,
            "service instance lost during the call; its live legs were hung up",
            retry=True,
        )

    async def _look_up(self, leg: Leg) -> None:
        try:
            channel = await self._ari.get_channel(leg.channel_id)
        except AriNotFound:
            leg.destroyed = True
            leg.ended_at = self._loop.time()
            return
        leg.confirmed_at = self._loop.time()
        leg.protocol_id = channel.protocol_id

    # -- outcomes --------------------------------------------------------------------------------

    def _shutdown_outcome(self) -> Outcome:
        reason = "hung up at service shutdown"
        if self.phase == Status.BRIDGED:
            return Outcome(status=Status.COMPLETED, result=Result.ANSWERED, reason=reason)
        return self._retry_or_fail(Result.ERROR, reason, retry=True)

    def _ended_by(self, leg_a: Leg, leg_b: Leg) -> Outcome:
        if leg_a.vanished or leg_b.vanished:
            reason = "call lost while ARI was disconnected (Asterisk restart?)"
        else:
            first = leg_a if (leg_a.ended_at or 1e18) <= (leg_b.ended_at or 1e18) else leg_b
            reason = f"{'caller' if first is leg_a else 'destination'} hung up"
        return Outcome(status=Status.COMPLETED, result=Result.ANSWERED, reason=reason)

    def _leg_a_failed(self, failure: LegFailure, reason: str) -> Outcome:
        metrics.LEG_OUTCOMES.labels(LegName.A, failure.value).inc()
        return self._retry_or_fail(callback_result(failure), reason, retry=True)

    def _leg_b_failed(self, failure: LegFailure, reason: str) -> Outcome:
        metrics.LEG_OUTCOMES.labels(LegName.B, failure.value).inc()
        return self._retry_or_fail(
            destination_result(failure), reason, retry=self._cfg.retry_on_destination_failure
        )

    def _retry_or_fail(self, result: Result, reason: str, *, retry: bool) -> Outcome:
        attempts = self.req.attempts + (1 if self.dialled else 0)
        max_attempts = self.req.max_attempts or self._cfg.max_attempts
        status = Status.PENDING if retry and attempts < max_attempts else Status.FAILED
        return Outcome(status=status, result=result, reason=reason)

    def _with_leg_values(self, outcome: Outcome) -> Outcome:
        leg_a, leg_b = self._legs.get(LegName.A), self._legs.get(LegName.B)
        return replace(
            outcome,
            leg_a_cause=leg_a.cause if leg_a else None,
            leg_a_sip_code=leg_a.sip_code if leg_a else None,
            leg_b_cause=leg_b.cause if leg_b else None,
            leg_b_sip_code=leg_b.sip_code if leg_b else None,
            leg_a_duration=leg_a.duration if leg_a else None,
            leg_b_duration=leg_b.duration if leg_b else None,
        )

    def retry_delay(self) -> float:
        """TWOWAY_RETRY_DELAY (or the row's) before the first retry, doubling, capped."""
        base = _seconds(self.req.retry_delay, self._cfg.retry_delay)
        attempts = max(1, self.req.attempts + 1)
        delay: float = base * 2.0 ** (attempts - 1)
        return min(delay, max(self._cfg.retry_delay_max, base))

    async def _write(self, outcome: Outcome) -> None:
        self._log.info(
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
        if outcome.status == Status.PENDING and await self._store.retry(
            self.req, outcome, self.retry_delay()
        ):
            metrics.RETRIES.inc()
            return
        if outcome.status == Status.PENDING:  # cancelled meanwhile: finish keeps 'cancelled'
            outcome = replace(outcome, status=Status.FAILED)
        if await self._store.finish(self.req, outcome):
            metrics.FINISHED.labels(outcome.status, outcome.result).inc()
            if outcome.result == Result.ANSWERED and outcome.leg_b_duration is not None:
                metrics.TALK_TIME.observe(outcome.leg_b_duration)

    # -- legs ------------------------------------------------------------------------------------

    async def _pace(self) -> None:
        """Wait for a TWOWAY_MAX_CPS token, or until the session is stopped."""
        token = asyncio.ensure_future(self._limiter.acquire())
        stopped = asyncio.ensure_future(self._stopped.wait())
        await asyncio.wait((token, stopped), return_when=asyncio.FIRST_COMPLETED)
        for waiter in (token, stopped):
            waiter.cancel()

    async def _endpoint(self, leg: LegPlan) -> str:
        if not self._cfg.dynamic_identity or leg.ha1 is None:
            return self._cfg.trunk_endpoint
        key = await self._identities.acquire(leg.auth_user, leg.ha1)
        self._identity_keys.append(key)
        return self._identities.endpoint_id(key)

    async def _place(
        self, name: LegName, channel_id: str, plan: LegPlan, call_id: str, timeout: float
    ) -> Leg | str:
        """Identity objects, then the originate: the leg, or why it could not be placed."""
        try:
            endpoint = await self._endpoint(plan)
        except AriError as exc:
            return f"identity objects refused: {exc}"
        leg = await self._originate(name, channel_id, endpoint, plan, call_id, timeout)
        return leg if leg is not None else "originate refused by Asterisk"

    async def _originate(
        self,
        name: LegName,
        channel_id: str,
        endpoint: str,
        plan: LegPlan,
        call_id: str,
        timeout: float,
    ) -> Leg | None:
        # Registered before the REST call: its events may arrive before the response.
        leg = self._legs[name] = Leg(
            name=name, channel_id=channel_id, timeout=timeout, originated_at=self._loop.time()
        )
        variables: dict[str, str] = {}
        if self._cfg.call_id_header:
            variables[f"PJSIP_HEADER(add,{self._cfg.call_id_header})"] = call_id
        try:
            await self._ari.originate(
                endpoint=f"PJSIP/{plan.number}@{endpoint}",
                channel_id=channel_id,
                app=self._cfg.app,
                app_args=["callback", str(self.req.id), name],
                caller_id=f"<{plan.caller_id}>",
                timeout=max(1, round(timeout)),
                variables=variables,
            )
        except AriError as exc:
            self._log.warning(
                "originate failed: %s",
                exc,
                extra={"action": "originate_failed", "leg": name, "channel_id": channel_id},
            )
            # A timed-out request may still have created the channel: make sure it is gone.
            await self._hangup(leg)
            leg.ended_at = leg.ended_at or self._loop.time()
            return None
        leg.confirmed_at = self._loop.time()
        metrics.ORIGINATED.labels(name).inc()
        self._log.info(
            "originated", extra={"action": "originate", "leg": name, "channel_id": channel_id}
        )
        return leg

    async def _hangup(self, leg: Leg) -> None:
        if leg.destroyed or leg.hung_up_by_us:
            return
        leg.hung_up_by_us = True
        try:
            if not await self._ari.hangup(leg.channel_id):  # 404: no such channel (any more)
                self._observe_queued()  # its last events may be here already: keep the causes
                leg.destroyed = True
                leg.ended_at = leg.ended_at or self._loop.time()
        except AriError as exc:
            self._log.warning(
                "hangup failed: %s",
                exc,
                extra={"action": "hangup_failed", "channel_id": leg.channel_id},
            )

    async def _teardown(self) -> None:
        """Hang up what is live, destroy the bridge, collect final causes, free identities."""
        live = [leg for leg in self._legs.values() if not leg.destroyed]
        for leg in live:
            await self._hangup(leg)
        if self._bridge_id is not None:
            await self._quietly(self._ari.destroy_bridge(self._bridge_id))
        deadline = self._loop.time() + TEARDOWN
        while any(not leg.destroyed and leg.hung_up_by_us for leg in live):
            if await self._next(self._wake(deadline), stoppable=False) is None:
                if self._loop.time() >= deadline:
                    break
                await self._poll_recovered([leg for leg in live if leg.hung_up_by_us])
        now = self._loop.time()
        for leg in live:
            leg.ended_at = leg.ended_at or now
        for key in self._identity_keys:
            await self._identities.release(key)
        self._identity_keys.clear()

    async def _next(self, deadline: float, *, stoppable: bool = True) -> _Item | None:
        """The next item, after updating leg state; None at the deadline.

        A stop raises (Fenced for a cancel, _ShuttingDown) unless ``stoppable`` is False.
        """
        if self._queue.empty():
            if deadline <= self._loop.time():
                return None
            try:  # a deadline on the await itself: no task per event, unlike wait_for
                async with asyncio.timeout_at(deadline):
                    item = await self._queue.get()
            except TimeoutError:
                return None
        else:
            item = self._queue.get_nowait()
        if isinstance(item, _Stop):
            if stoppable:
                raise Fenced if item.why == CANCEL else _ShuttingDown
        else:
            self._observe(item)
        return item

    def _observe_queued(self) -> None:
        """Apply every event already queued, without waiting; stops stay queued."""
        stops: list[_Item] = []
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if isinstance(item, _Stop):
                stops.append(item)
            else:
                self._observe(item)
        for stop in stops:
            self._queue.put_nowait(stop)

    def owns(self, channel_id: str) -> bool:
        return any(leg.channel_id == channel_id for leg in self._legs.values())

    def _observe(self, event: Event | _Vanished) -> None:
        leg = self._leg_of(event.channel_id)
        if leg is None:
            return
        now = self._loop.time()
        if isinstance(event, _Vanished):
            leg.destroyed = leg.vanished = True
            leg.ended_at = leg.ended_at or now
        elif isinstance(event, Dial):
            leg.rang = leg.rang or event.dialstatus == "RINGING"
        elif isinstance(event, ChannelStateChange):
            leg.rang = leg.rang or event.channel.state == "Ringing"
        elif isinstance(event, StasisStart):
            leg.answered_at = now
            leg.protocol_id = event.channel.protocol_id
        elif isinstance(event, ChannelHangupRequest):
            if not event.soft and event.cause:  # soft 32 is our own hangup, not a cause
                leg.cause = event.cause
            leg.sip_code = event.tech_cause or leg.sip_code
            leg.ended_at = leg.ended_at or now
        elif isinstance(event, StasisEnd):
            leg.ended_at = leg.ended_at or now
        elif isinstance(event, ChannelDestroyed):
            leg.destroyed = True
            leg.cause = event.cause
            leg.sip_code = event.tech_cause or leg.sip_code
            leg.ended_at = leg.ended_at or now

    def _leg_of(self, channel_id: str | None) -> Leg | None:
        for leg in self._legs.values():
            if leg.channel_id == channel_id:
                return leg
        return None

    async def _quietly(self, call: Any) -> None:
        """Best-effort ARI calls (ringback, bridge cleanup): log, never abort the flow."""
        try:
            await call
        except AriError as exc:
            self._log.warning("ARI call failed: %s", exc, extra={"action": "ari_error"})


class _RequestLog(logging.LoggerAdapter[logging.Logger]):
    """Puts the request id on every line, merged with the line's own fields."""

    def process(self, msg: str, kwargs: Any) -> tuple[str, Any]:
        kwargs["extra"] = {**(self.extra or {}), **kwargs.get("extra", {})}
        return msg, kwargs


def _bridge_of(leg_a_channel_id: str | None) -> str | None:
    """``<prefix>-<id>-<attempt>a`` -> ``<prefix>-<id>-<attempt>br`` (see callflow.ids)."""
    if leg_a_channel_id is None or not leg_a_channel_id.endswith(LegName.A):
        return None
    return leg_a_channel_id[: -len(LegName.A)] + BRIDGE


def _cause_text(leg: Leg) -> str:
    if leg.vanished:
        return "channel vanished while ARI was disconnected"
    text = f"cause {leg.cause}" if leg.cause is not None else "no cause"
    if leg.sip_code:
        text += f", SIP {leg.sip_code}"
    return text


def _seconds(value: timedelta | None, default: float) -> float:
    return value.total_seconds() if value is not None else default
