"""Both legs answered: put them in a mixing bridge, then watch the call until it ends."""

from __future__ import annotations

from stasis_app.callflow import outcomes, recovery, timing, uncertain
from stasis_app.callflow.call import Call
from stasis_app.callflow.ids import Ids
from stasis_app.callflow.inbox import Fenced
from stasis_app.callflow.legs import Leg
from stasis_app.domain.ari_errors import AriConflict, AriError, AriUnavailable
from stasis_app.domain.request import LegName, Outcome, Result, Status


async def talk(call: Call, ids: Ids) -> Outcome:
    leg_a, leg_b = call.legs[LegName.A], call.legs[LegName.B]
    bridge_id = ids.bridge(call.req.id, call.req.attempts + 1)
    call.bridge_id = bridge_id  # before the request: one made unseen is destroyed too
    try:
        await _create(call, bridge_id)
        await _add(call, bridge_id, [leg_a.channel_id, leg_b.channel_id])
    except AriError as exc:
        # A leg that hung up while we were bridging: its events may lag the REST answer.
        deadline = call.now() + timing.SETTLE
        while not (leg_a.gone or leg_b.gone):
            if await call.inbox.next(deadline) is None:
                # No event (they may be lost with the WebSocket): ask Asterisk about the legs.
                await recovery.poll(call, [leg_a, leg_b])
                if not (leg_a.gone or leg_b.gone):
                    return _bridge_failed(call, exc)
        return outcomes.ended_by(leg_a, leg_b)
    await call.quietly(call.ari.ring_stop(leg_a.channel_id))
    if not await call.store.bridged(call.req, bridge_id, leg_b.protocol_id):
        raise Fenced
    call.phase = Status.BRIDGED
    call.log.debug("bridged", extra={"action": "bridged", "bridge_id": bridge_id})
    return await watch(call, leg_a, leg_b)


async def _create(call: Call, bridge_id: str) -> None:
    """A create without a definite answer is resolved by looking the bridge up, and sent
    again while Asterisk says there is none (within ``timing.RESOLVE``)."""
    deadline = call.now() + timing.RESOLVE
    while True:
        try:
            await call.ari.create_bridge(bridge_id, bridge_type="mixing", name=bridge_id)
            return
        except AriConflict:
            return  # the id is ours: an earlier create of it was acted on after all
        except AriUnavailable:
            if await uncertain.look_up(call, bridge_id, lambda: call.ari.get_bridge(bridge_id)):
                return
            if call.now() >= deadline:
                raise


async def _add(call: Call, bridge_id: str, channel_ids: list[str]) -> None:
    """An add without a definite answer: look at the bridge, add whoever is not in it."""
    deadline = call.now() + timing.RESOLVE
    missing = channel_ids
    while missing:
        try:
            await call.ari.add_channels(bridge_id, missing)
            return
        except AriUnavailable:
            bridge = await uncertain.look_up(
                call, bridge_id, lambda: call.ari.get_bridge(bridge_id)
            )
            missing = [c for c in channel_ids if bridge is None or c not in bridge.channels]
            if missing and call.now() >= deadline:
                raise


def _bridge_failed(call: Call, exc: AriError) -> Outcome:
    """Refused: the request failed. No definite answer (after RESOLVE): not the row's fault,
    tried again while attempts are left."""
    reason = f"bridge failed: {exc}"
    if isinstance(exc, AriUnavailable):
        return outcomes.our_side(reason, attempts=call.attempts, max_attempts=call.max_attempts)
    return Outcome(status=Status.FAILED, result=Result.ERROR, reason=reason)


async def watch(call: Call, leg_a: Leg, leg_b: Leg) -> Outcome:
    """Until a party hangs up or TWOWAY_MAX_CALL_DURATION is reached."""
    deadline = call.now() + call.cfg.max_call_duration
    while not (leg_a.gone or leg_b.gone):
        item = await call.inbox.next(call.wake(deadline))
        if item is None and call.now() >= deadline:
            return outcomes.max_duration()
        if item is None:
            await recovery.poll(call, [leg_a, leg_b])
    return outcomes.ended_by(leg_a, leg_b)
