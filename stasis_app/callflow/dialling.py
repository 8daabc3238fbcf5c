"""Dialling one leg: pace, record the attempt, set up the identity, originate, await the answer."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

from stasis_app import metrics
from stasis_app.callflow import outcomes, recovery, timing, uncertain
from stasis_app.callflow.call import Call
from stasis_app.callflow.causes import LegFailure
from stasis_app.callflow.identity import IdentityObjects, IdentityRef
from stasis_app.callflow.ids import Ids
from stasis_app.callflow.inbox import CANCEL, SHUTDOWN, Fenced, LeaseLost
from stasis_app.callflow.legs import Leg
from stasis_app.callflow.limits import RateLimiter
from stasis_app.callflow.plan import CallPlan, LegPlan
from stasis_app.callflow.teardown import hang_up
from stasis_app.domain.ari_errors import AriError, AriUnavailable
from stasis_app.domain.channels import Channel
from stasis_app.domain.request import LegName, Outcome, Result, Status

# dial_leg_a's answer when a shutdown sent the row back to the queue before dialling.
RELEASED = Outcome(status=Status.PENDING, result=Result.ERROR, reason="released at shutdown")


class UserHangup(Exception):
    """Leg A hung up while leg B was ringing."""


@dataclass(frozen=True, slots=True)
class Unplaced:
    """A leg that was not placed: why, and whether Asterisk surely created nothing (a
    transient fault, resolved by asking) rather than refusing it."""

    reason: str
    nothing_created: bool


class Dialler:
    def __init__(
        self, call: Call, *, identities: IdentityObjects, limiter: RateLimiter, ids: Ids
    ) -> None:
        self._call = call
        self._identities = identities
        self._limiter = limiter
        self._ids = ids
        self._identity_refs: list[IdentityRef] = []

    async def leg_a(self, plan: CallPlan) -> Outcome | None:
        """None once leg A answered; RELEASED at a shutdown before dialling; else the outcome."""
        call = self._call
        channel_id = self._ids.channel(call.req.id, call.req.attempts + 1, LegName.A)
        call_id = call.req.call_id or str(uuid.uuid4())
        await self._pace()
        if call.inbox.lease_lost:
            raise LeaseLost
        if call.inbox.stopping == CANCEL:
            raise Fenced
        if call.inbox.stopping == SHUTDOWN:
            await call.store.release(call.req)  # not dialled: back to the queue at once
            call.log.info("released undialled", extra={"action": "release"})
            return RELEASED
        # Counted (and call_id written back) before anything can fail: retries stay bounded.
        pickup = await call.store.start_attempt(call.req, call_id, channel_id)
        if pickup is None:
            raise Fenced
        metrics.PICKUP.observe(pickup)
        call.dialled = True
        call.call_id = call_id
        leg = await self._place(LegName.A, channel_id, plan.leg_a, call_id, call.cfg.leg_a_timeout)
        if isinstance(leg, Unplaced):
            if leg.nothing_created:
                return outcomes.not_placed(leg.reason)
            return self._failed(LegName.A, LegFailure.FAILED, leg.reason)
        failure = await self._await_answer(leg)
        return None if failure is None else self._failed(LegName.A, *failure)

    async def leg_b(self, plan: CallPlan) -> Outcome | None:
        """None once leg B answered; else the outcome (the user may hang up meanwhile)."""
        call = self._call
        leg_a = call.legs[LegName.A]
        channel_id = self._ids.channel(call.req.id, call.req.attempts + 1, LegName.B)
        twoway_call_id = call.req.twoway_call_id or f"{call.call_id}-2way"
        if not await call.store.leg_a_answered(
            call.req, leg_a.protocol_id, twoway_call_id, channel_id
        ):
            raise Fenced
        call.phase = Status.CONNECTING
        await call.quietly(call.ari.ring(leg_a.channel_id))  # ringback while B is dialled
        # No CPS wait here: the user has answered and hears ringback; TWOWAY_MAX_CPS paces
        # new callbacks (leg A), so the trunk sees at most twice that many INVITEs a second.
        leg = await self._place_b(plan, channel_id, twoway_call_id)
        if isinstance(leg, Unplaced):
            if leg.nothing_created:  # our side failed, not the destination: try again later
                return self._our_fault(f"leg B {leg.reason}")
            return self._failed(LegName.B, LegFailure.FAILED, leg.reason)
        try:
            failure = await self._await_answer(leg, hangup_watch=leg_a)
        except UserHangup:
            metrics.LEG_OUTCOMES.labels(LegName.B, "cancelled").inc()
            if leg_a.vanished:  # nobody hung up: Asterisk went away (a restart)
                return self._our_fault(outcomes.LOST_REASON)
            return outcomes.USER_HANGUP
        if failure is not None and leg.vanished:  # Asterisk lost it, not the destination
            return self._our_fault(outcomes.LOST_REASON)
        return None if failure is None else self._failed(LegName.B, *failure)

    async def _place_b(self, plan: CallPlan, channel_id: str, call_id: str) -> Leg | Unplaced:
        """Leg B, placed again (within RESOLVE) while Asterisk surely created nothing: the
        user hears ringback meanwhile, and a transient fault must not end the attempt."""
        call = self._call
        deadline = call.now() + timing.RESOLVE
        while True:
            leg = await self._place(
                LegName.B, channel_id, plan.leg_b, call_id, call.cfg.leg_b_timeout
            )
            if not (isinstance(leg, Unplaced) and leg.nothing_created):
                return leg
            if call.now() >= deadline or call.legs[LegName.A].gone:
                return leg
            await call.inbox.next(call.now() + timing.RESOLVE_FIRST)  # a cancel stops it

    def _our_fault(self, reason: str) -> Outcome:
        """Leg B failed on our side (Asterisk, ARI): tried again while attempts are left."""
        call = self._call
        return outcomes.our_side(reason, attempts=call.attempts, max_attempts=call.max_attempts)

    def _failed(self, name: LegName, failure: LegFailure, reason: str) -> Outcome:
        metrics.LEG_OUTCOMES.labels(name, failure.value).inc()
        call = self._call
        return outcomes.leg_failed(
            name,
            failure,
            reason,
            attempts=call.attempts,
            max_attempts=call.max_attempts,
            retry_on_destination_failure=call.cfg.retry_on_destination_failure,
        )

    async def _await_answer(
        self, leg: Leg, hangup_watch: Leg | None = None
    ) -> tuple[LegFailure, str] | None:
        """Until ``leg`` answers (None) or fails (why). Every wait is bounded.

        Raises Fenced on a cancel, UserHangup when ``hangup_watch`` hangs up first.
        """
        call = self._call
        while leg.answered_at is None:
            item = await call.inbox.next(leg.originated_at + leg.timeout + timing.GUARD)
            if hangup_watch is not None and hangup_watch.gone:
                raise UserHangup
            if item is None:
                # Its events may have been lost with the WebSocket: ask Asterisk first. Gone
                # without ever ringing: lost on our side (a ringing one simply went unanswered).
                channel = await recovery.look_up(call, leg)
                if channel is not None and channel.state == "Up":
                    leg.answered_at = call.now()  # its StasisStart was lost
                    continue
                if leg.destroyed and not leg.rang:
                    leg.vanished = True
                    return outcomes.unanswered(leg)
                await hang_up(call, leg)
                return outcomes.no_verdict(leg)
            if leg.destroyed:
                return outcomes.unanswered(leg)
        metrics.ANSWER_DELAY.labels(leg.name).observe(leg.answered_at - leg.originated_at)
        metrics.LEG_OUTCOMES.labels(leg.name, "answered").inc()
        call.log.debug(
            "leg answered",
            extra={"action": "leg_answered", "leg": leg.name, "channel_id": leg.channel_id},
        )
        return None

    async def _pace(self) -> None:
        """Wait for a TWOWAY_MAX_CPS token, or until the session is stopped."""
        if self._limiter.try_acquire():  # the common case: no waiter tasks
            return
        token = asyncio.ensure_future(self._limiter.acquire())
        stopped = asyncio.ensure_future(self._call.inbox.stopped.wait())
        await asyncio.wait((token, stopped), return_when=asyncio.FIRST_COMPLETED)
        for waiter in (token, stopped):
            waiter.cancel()

    async def _endpoint(self, leg: LegPlan) -> str:
        cfg = self._call.cfg
        if not cfg.dynamic_identity or leg.ha1 is None:
            return cfg.trunk_endpoint
        ref = await self._identities.acquire(leg.auth_user, leg.ha1)
        self._identity_refs.append(ref)
        return self._identities.endpoint_id(ref.key)

    async def release_identities(self) -> None:
        for ref in self._identity_refs:
            await self._identities.release(ref)
        self._identity_refs.clear()

    async def _place(
        self, name: LegName, channel_id: str, plan: LegPlan, call_id: str, timeout: float
    ) -> Leg | Unplaced:
        """Identity objects, then the originate: the leg, or why it was not placed."""
        try:
            endpoint = await self._endpoint(plan)
        except AriUnavailable as exc:  # nothing was dialled (the PUTs are idempotent)
            return Unplaced(f"identity objects: {uncertain.describe(exc)}", nothing_created=True)
        except AriError as exc:
            return Unplaced(f"identity objects refused: {exc}", nothing_created=False)
        return await self._originate(name, channel_id, endpoint, plan, call_id, timeout)

    async def _originate(
        self,
        name: LegName,
        channel_id: str,
        endpoint: str,
        plan: LegPlan,
        call_id: str,
        timeout: float,
    ) -> Leg | Unplaced:
        call = self._call
        # Registered before the REST call: its events may arrive before the response.
        leg = call.legs.add(
            Leg(name=name, channel_id=channel_id, timeout=timeout, originated_at=call.now())
        )
        variables: dict[str, str] = {}
        if call.cfg.call_id_header:
            variables[f"PJSIP_HEADER(add,{call.cfg.call_id_header})"] = call_id
        try:
            await call.ari.originate(
                endpoint=f"PJSIP/{plan.number}@{endpoint}",
                channel_id=channel_id,
                app=call.cfg.app,
                app_args=["callback", str(call.req.id), name],
                caller_id=f"<{plan.caller_id}>",
                timeout=max(1, round(timeout)),
                variables=variables,
            )
        except AriUnavailable as exc:
            return await self._resolve(leg, exc)
        except AriError as exc:  # a definite refusal: no channel
            call.log.warning(
                "originate refused: %s",
                exc,
                extra={"action": "originate_failed", "leg": name, "channel_id": channel_id},
            )
            leg.gone_for_good(call.now())
            return Unplaced(
                f"originate refused by Asterisk: {uncertain.describe(exc)}", nothing_created=False
            )
        return self._placed(leg, confirmed=True)

    async def _resolve(self, leg: Leg, exc: AriUnavailable) -> Leg | Unplaced:
        """An originate without a definite answer: Asterisk may have created the channel.
        Look it up by its id; never hang up a phone that may be ringing on a guess."""
        call = self._call
        call.log.warning(
            "originate without a definite answer, looking the channel up: %s",
            exc,
            extra={"action": "originate_unsure", "leg": leg.name, "channel_id": leg.channel_id},
        )
        try:
            channel = await self._look_up(leg, exc)
        except AriUnavailable:
            # Still no answer: it may exist. Go on as if placed; its events or the guard decide.
            return self._placed(leg, confirmed=False)
        call.inbox.observe_queued()
        if channel is None and not (leg.rang or leg.gone or leg.answered_at is not None):
            leg.gone_for_good(call.now())
            return Unplaced(
                f"originate: {uncertain.describe(exc)}; Asterisk created no channel",
                nothing_created=True,
            )
        # It exists, or existed (its events are here): the attempt goes on.
        return self._placed(leg, confirmed=channel is not None)

    async def _look_up(self, leg: Leg, exc: AriUnavailable) -> Channel | None:
        """The channel; after a request without any reply, "none" only once Asterisk is
        unlikely to act on it any more (``late_act`` after it went unanswered)."""
        call = self._call
        late = call.now() + (call.cfg.late_act if exc.status is None else 0.0)
        delay = timing.RESOLVE_FIRST
        while True:
            channel = await uncertain.look_up(
                call, leg.channel_id, lambda: call.ari.get_channel(leg.channel_id)
            )
            if channel is not None or call.now() >= late:
                return channel
            await asyncio.sleep(min(delay, late - call.now()))
            delay = min(delay * 2, timing.RESOLVE_MAX_DELAY)

    def _placed(self, leg: Leg, *, confirmed: bool) -> Leg:
        call = self._call
        if confirmed:
            leg.confirmed_at = call.now()
        metrics.ORIGINATED.labels(leg.name).inc()
        call.log.debug(
            "originated",
            extra={"action": "originate", "leg": leg.name, "channel_id": leg.channel_id},
        )
        return leg
