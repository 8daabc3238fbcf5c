"""Both legs answered: put them in a mixing bridge, then watch the call until it ends."""

from __future__ import annotations

from stasis_app.callflow import outcomes, recovery, timing
from stasis_app.callflow.call import Call
from stasis_app.callflow.ids import Ids
from stasis_app.callflow.inbox import Fenced
from stasis_app.callflow.legs import Leg
from stasis_app.domain.ari_errors import AriError
from stasis_app.domain.request import LegName, Outcome, Result, Status


async def talk(call: Call, ids: Ids) -> Outcome:
    leg_a, leg_b = call.legs[LegName.A], call.legs[LegName.B]
    bridge_id = ids.bridge(call.req.id, call.req.attempts + 1)
    try:
        await call.ari.create_bridge(bridge_id, bridge_type="mixing", name=bridge_id)
        call.bridge_id = bridge_id
        await call.ari.add_channels(bridge_id, [leg_a.channel_id, leg_b.channel_id])
    except AriError as exc:
        # A leg that hung up while we were bridging: its events may lag the REST answer.
        deadline = call.now() + timing.SETTLE
        while not (leg_a.gone or leg_b.gone):
            if await call.inbox.next(deadline) is None:
                return Outcome(
                    status=Status.FAILED, result=Result.ERROR, reason=f"bridge failed: {exc}"
                )
        return outcomes.ended_by(leg_a, leg_b)
    await call.quietly(call.ari.ring_stop(leg_a.channel_id))
    if not await call.store.bridged(call.req, bridge_id, leg_b.protocol_id):
        raise Fenced
    call.phase = Status.BRIDGED
    call.log.debug("bridged", extra={"action": "bridged", "bridge_id": bridge_id})
    return await watch(call, leg_a, leg_b)


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
